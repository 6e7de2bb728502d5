import { lstat, readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { parseContext } from '../../labeling/context';
import { readLabelOfOpened, readLabels, removeLabel, writeLabel, writeLabels } from './file-labels';
import { entriesHeldBy, entriesUnder, type HolderKind, type JournalData, type JournalEntry } from './label-journal';
import { checkPathSyntax, openRelabelTarget, PathRefusedError, type PathPolicyConfig, type Requester } from './path-policy';

/**
 * Applies labels to disk with the journal as the source of truth: the original label is journaled and
 * persisted BEFORE a file is touched, so a crash at any point can be undone by restoring from the journal.
 */
export interface RelabelContext {
  readonly journal: JournalData;
  /** Writes the journal durably (atomic file); called before any label changes on disk. */
  readonly persist: () => Promise<void>;
  readonly config: PathPolicyConfig;
  readonly requester: Requester;
  /** VM ids that are running now: only their private holds block other requests. */
  readonly isRunning: (vmId: string) => boolean;
}

export class LabelConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabelConflictError';
  }
}

function assertValidLabel(label: string): void {
  const ctx = parseContext(label);
  if (!ctx.range) throw new Error(`label ${label} has no MLS/MCS level`);
}

/** libvirt's "already in use" rule: a file a running VM holds privately cannot take another label. */
function conflictFor(ctx: RelabelContext, entry: JournalEntry | undefined, holder: string, label: string): string | undefined {
  if (!entry || entry.holder === holder) return undefined;
  if (entry.kind === 'private' && ctx.isRunning(entry.holder) && entry.applied !== label) {
    return `${entry.path} is already in use by VM ${entry.holder} with label ${entry.applied}`;
  }
  return undefined;
}

/** Labels one file (a private image, a char device, kernel…) for `holder`; returns the label set. */
export async function labelFile(ctx: RelabelContext, holder: string, kind: HolderKind, target: string, label: string): Promise<JournalEntry> {
  assertValidLabel(label);
  const opened = await openRelabelTarget(target, { config: ctx.config, requester: ctx.requester });
  try {
    const existing = ctx.journal.entries[target];
    const conflict = conflictFor(ctx, existing, holder, label);
    if (conflict) throw new LabelConflictError(conflict);
    const sameInode = existing && existing.dev === opened.stat.dev && existing.ino === opened.stat.ino;
    const original = sameInode ? existing.original : await readLabelOfOpened(opened.fdPath);
    const entry: JournalEntry = {
      path: target, dev: opened.stat.dev, ino: opened.stat.ino, original, applied: label, kind, holder, at: new Date().toISOString(),
    };
    ctx.journal.entries[target] = entry;
    await ctx.persist();
    await writeLabel(opened.fdPath, label);
    const now = await readLabelOfOpened(opened.fdPath);
    if (now !== label) throw new Error(`label of ${target} reads back as ${now ?? '(none)'} instead of ${label}`);
    return entry;
  } finally {
    await opened.handle.close();
  }
}

export interface RestoreResult {
  readonly restored: string[];
  /** Files whose inode changed or that vanished: left alone, entry dropped. */
  readonly skipped: { path: string; reason: string }[];
}

async function restoreEntries(ctx: RelabelContext, entries: readonly JournalEntry[]): Promise<RestoreResult> {
  const restored: string[] = [];
  const skipped: { path: string; reason: string }[] = [];
  for (const entry of entries) {
    try {
      const opened = await openRelabelTarget(entry.path, { config: ctx.config, requester: { uid: 0 }, allowDirectory: true });
      try {
        if (opened.stat.dev !== entry.dev || opened.stat.ino !== entry.ino) {
          skipped.push({ path: entry.path, reason: 'the file was replaced since it was labeled' });
        } else {
          if (entry.original === null) await removeLabel(opened.fdPath);
          else await writeLabel(opened.fdPath, entry.original);
          restored.push(entry.path);
        }
      } finally {
        await opened.handle.close();
      }
    } catch (err) {
      if (!(err instanceof PathRefusedError)) throw err;
      skipped.push({ path: entry.path, reason: err.message });
    }
    delete ctx.journal.entries[entry.path];
  }
  await ctx.persist();
  return { restored, skipped };
}

/** Puts back the original labels of everything `holder` (a VM) holds. */
export function restoreHolder(ctx: RelabelContext, holder: string): Promise<RestoreResult> {
  return restoreEntries(ctx, entriesHeldBy(ctx.journal, holder).filter((e) => e.kind === 'private'));
}

/** Puts back the original labels of shared/read-only content at or below `root`. */
export function restoreContent(ctx: RelabelContext, root: string): Promise<RestoreResult> {
  checkPathSyntax(root);
  const entries = entriesUnder(ctx.journal, root);
  const held = entries.find((e) => e.kind === 'private' && ctx.isRunning(e.holder));
  if (held) throw new LabelConflictError(`${held.path} is held privately by running VM ${held.holder}; stop it first`);
  return restoreEntries(ctx, entries);
}

interface TreeItem {
  path: string;
  dev: number;
  ino: number;
}

/** Walks a tree without following symlinks (they are skipped: their targets are not ours to label). */
async function walkTree(root: string, items: TreeItem[], skipped: string[]): Promise<void> {
  const st = await lstat(root);
  items.push({ path: root, dev: st.dev, ino: st.ino });
  if (!st.isDirectory()) return;
  for (const dirent of await readdir(root, { withFileTypes: true })) {
    const child = path.join(root, dirent.name);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(dirent.name)) throw new PathRefusedError(child, 'a file name in the tree contains control characters');
    if (dirent.isSymbolicLink()) skipped.push(child);
    else if (dirent.isDirectory()) await walkTree(child, items, skipped);
    else if (dirent.isFile()) {
      const cst = await lstat(child);
      items.push({ path: child, dev: cst.dev, ino: cst.ino });
    } else skipped.push(child);
  }
}

export interface TreeResult {
  readonly labeled: number;
  readonly skippedSymlinksAndSpecial: string[];
}

/**
 * Labels a file or a whole tree as shared read-write or read-only content. Nothing changes if any file
 * in it is held privately by a running VM. Originals are journaled first, then applied in batches.
 */
export async function labelContentTree(
  ctx: RelabelContext, root: string, kind: 'shared' | 'readonly', label: string, onProgress?: (done: number, total: number) => void,
): Promise<TreeResult> {
  assertValidLabel(label);
  // Opening the root applies every path rule (location, owner, no symlink anywhere in it).
  const opened = await openRelabelTarget(root, { config: ctx.config, requester: ctx.requester, allowDirectory: true });
  await opened.handle.close();
  const items: TreeItem[] = [];
  const skipped: string[] = [];
  await walkTree(root, items, skipped);
  for (const item of items) {
    const conflict = conflictFor(ctx, ctx.journal.entries[item.path], root, label);
    if (conflict) throw new LabelConflictError(conflict);
  }
  const originals = await readLabels(items.map((i) => i.path));
  const at = new Date().toISOString();
  for (const item of items) {
    const existing = ctx.journal.entries[item.path];
    const keepOriginal = existing && existing.dev === item.dev && existing.ino === item.ino;
    ctx.journal.entries[item.path] = {
      path: item.path, dev: item.dev, ino: item.ino,
      original: keepOriginal ? existing.original : (originals.get(item.path) ?? null),
      applied: label, kind, holder: root, at,
    };
  }
  await ctx.persist();
  await writeLabels(items.map((i) => ({ path: i.path, label })), onProgress);
  return { labeled: items.length, skippedSymlinksAndSpecial: skipped };
}
