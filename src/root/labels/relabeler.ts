import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { staticLabelProblem } from '../../core/selinux/context';
import { faultPoint } from '../helper/fault-points';
import { isProcessAlive, processStartTime } from '../../host/state-lock';
import { readLabelOfOpened, removeLabel, writeLabel } from '../../security/selinux/file-labels';
import { entriesHeldBy, entriesUnder, recordOwner, TREE_LOG_NAME, treesTouching, type HolderKind, type JournalData, type JournalEntry, type TreeRecord, type TreeWalker } from './label-journal';
import { labelHex, labelTree, restoreTree } from './label-tree-tool';
import { openLabelTarget } from '../../host/block-devices';
import { checkPathSyntax, isUnder, openRelabelTarget, PathRefusedError, treeGrants, type OpenedTarget, type PathPolicyConfig, type Requester } from '../../host/path-policy';

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
  /** Where the logs of tree relabels live (root-only, beside the journal). */
  readonly treeLogDir: string;
}

/**
 * Runs `fn` under the host-wide state lock with the journal as it is then. Tree walks take it only to
 * record intent and results: a walk of a million files must not hold every other helper up. A plain
 * context (already under the lock) runs every step in it.
 */
export type RelabelTransact = <T>(fn: (ctx: RelabelContext) => Promise<T>) => Promise<T>;

const transactOf = (ctx: RelabelContext | RelabelTransact): RelabelTransact =>
  typeof ctx === 'function' ? ctx : <T>(fn: (c: RelabelContext) => Promise<T>) => fn(ctx);

function selfAsWalker(op: TreeWalker['op']): TreeWalker {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? 'unknown', op };
}

/** A tree that a live helper is walking now and that overlaps `target` (above or below it). */
function busyTree(ctx: RelabelContext, target: string, below: boolean): TreeRecord | undefined {
  return Object.values(ctx.journal.trees ?? {}).find((t) =>
    t.walker !== undefined && (isUnder(target, t.root) || (below && isUnder(t.root, target))) && isProcessAlive(t.walker));
}

function refuseBusy(ctx: RelabelContext, target: string, below: boolean): void {
  const busy = busyTree(ctx, target, below);
  if (busy) {
    throw new LabelConflictError(`${busy.root} is being ${busy.walker?.op === 'restore' ? 'restored' : 'relabeled'} by another request (helper pid ${busy.walker?.pid}); try again when it is done`);
  }
}

/** Clears the marks of walks whose helper died (call under the lock): their logs hold what they changed. */
export function clearDeadWalkers(ctx: RelabelContext): string[] {
  const cleared: string[] = [];
  for (const tree of Object.values(ctx.journal.trees ?? {})) {
    if (tree.walker && !isProcessAlive(tree.walker)) {
      delete tree.walker;
      cleared.push(tree.root);
    }
  }
  return cleared;
}

export class LabelConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabelConflictError';
  }
}

function assertValidLabel(label: string): void {
  const problem = staticLabelProblem('label', label, { needsLevel: true });
  if (problem !== undefined) throw new Error(problem);
}

/** libvirt's "already in use" rule: a file a running VM holds privately cannot take another label. */
function conflictFor(ctx: RelabelContext, entry: JournalEntry | undefined, holder: string, label: string | null): string | undefined {
  if (!entry || entry.holder === holder) return undefined;
  if (entry.kind === 'private' && ctx.isRunning(entry.holder) && (entry.applied !== label || label === null)) {
    return `${entry.path} is already in use by VM ${entry.holder}${entry.applied === null ? '' : ` with label ${entry.applied}`}`;
  }
  return undefined;
}

/** One file's change for labelFiles: its holder kind, the label to set (null: leave it) and the owner to hand it to. */
export interface FileLabelChange {
  readonly kind: HolderKind;
  readonly target: string;
  readonly label: string | null;
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/**
 * Labels one file (a private image, a char device, kernel…) for `holder`; returns the label set. With
 * `owner`, the file is also handed to that uid/gid (a VM's own) and its owner journaled with its label.
 * A null label leaves the label as it is (only the owner changes, for a model that labels no files).
 */
export async function labelFile(
  ctx: RelabelContext, holder: string, kind: HolderKind, target: string, label: string | null, owner?: { uid: number; gid: number },
): Promise<JournalEntry> {
  const [entry] = await labelFiles(ctx, holder, [{ kind, target, label, ...(owner ? { owner } : {}) }]);
  return entry as JournalEntry;
}

/**
 * labelFile for several files of one holder (a VM's files at its start): every file is opened and checked
 * and every original journaled in one durable write before any file changes, then the files change. A
 * start pays one journal write, not one per file, and a refusal (a file in use, a path not allowed)
 * changes nothing at all.
 */
export async function labelFiles(ctx: RelabelContext, holder: string, changes: readonly FileLabelChange[]): Promise<JournalEntry[]> {
  for (const { label } of changes) if (label !== null) assertValidLabel(label);
  if (new Set(changes.map((c) => c.target)).size !== changes.length) throw new Error('one request labels a file twice');
  const opening = await Promise.allSettled(changes.map((c) => openLabelTarget(c.target, { config: ctx.config, requester: ctx.requester })));
  const opened = opening.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  try {
    const refused = opening.find((o) => o.status === 'rejected');
    if (refused) throw refused.reason;
    const entries = await Promise.all(changes.map(async ({ kind, target, label, owner }, i): Promise<JournalEntry> => {
      const file = opened[i] as (typeof opened)[number];
      refuseBusy(ctx, target, false);
      const existing = ctx.journal.entries[target];
      const conflict = conflictFor(ctx, existing, holder, label);
      if (conflict) throw new LabelConflictError(conflict);
      const sameInode = existing && existing.dev === file.stat.dev && existing.ino === file.stat.ino;
      const original = sameInode ? existing.original : await readLabelOfOpened(file.fdPath);
      const originalOwner = sameInode && existing.owner ? existing.owner : { uid: file.stat.uid, gid: file.stat.gid };
      return {
        path: target, dev: file.stat.dev, ino: file.stat.ino, original, applied: label, kind, holder, at: new Date().toISOString(),
        ...(owner ? { owner: originalOwner } : {}),
      };
    }));
    for (const entry of entries) ctx.journal.entries[entry.path] = entry;
    await ctx.persist();
    let changed = 0;
    await Promise.all(changes.map(async ({ target, label, owner }, i) => {
      const file = opened[i] as (typeof opened)[number];
      if (owner) await file.handle.chown(owner.uid, owner.gid);
      if (label !== null) {
        await writeLabel(file.fdPath, label);
        const now = await readLabelOfOpened(file.fdPath);
        if (now !== label) throw new Error(`label of ${target} reads back as ${now ?? '(none)'} instead of ${label}`);
      }
      // Crash tests: die with one file changed on disk and the journal listing them all.
      if (++changed === 1) faultPoint('mid-relabel');
    }));
    return entries;
  } finally {
    await Promise.all(opened.map((file) => file.handle.close()));
  }
}

export interface RestoreResult {
  /** How many files got their original label back. */
  readonly restored: number;
  /** Files whose inode changed or that vanished: left alone, entry dropped. */
  readonly skipped: { path: string; reason: string }[];
}

async function restoreEntries(ctx: RelabelContext, entries: readonly JournalEntry[]): Promise<RestoreResult> {
  let restored = 0;
  const skipped: { path: string; reason: string }[] = [];
  for (const entry of entries) {
    try {
      const opened = await openLabelTarget(entry.path, { config: ctx.config, requester: { uid: 0 }, allowDirectory: true });
      try {
        if (opened.stat.dev !== entry.dev || opened.stat.ino !== entry.ino) {
          // udev makes a device node anew (reboot, vgchange, a re-plugged disk) with its default label: the
          // new node is left as it is, never given the old node's original.
          const device = opened.stat.isBlockDevice();
          skipped.push({ path: entry.path, reason: device ? 'the device node was recreated since it was labeled (it carries its default label already)' : 'the file was replaced since it was labeled' });
        } else {
          if (entry.owner) await opened.handle.chown(entry.owner.uid, entry.owner.gid);
          if (entry.applied === null) {
            // Only the owner was changed: the label was never touched.
          } else if (entry.original === null) await removeLabel(opened.fdPath);
          else await writeLabel(opened.fdPath, entry.original);
          restored++;
          // Crash tests: die with one file restored on disk and the journal still listing them all.
          if (restored === 1) faultPoint('mid-restore');
        }
      } finally {
        await opened.handle.close();
      }
    } catch (err) {
      // Total: whatever went wrong with this file (gone, replaced, a tool that failed) is reported and its
      // entry dropped; a user's odd file must never make a restore, or the reconcile every helper runs, fail.
      skipped.push({ path: entry.path, reason: err instanceof PathRefusedError ? err.message : `not restored: ${(err as Error).message}` });
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

/** Refuses to drop records at or below a gone `root` that were made for someone other than the requester. */
function refuseForeignRecords(ctx: RelabelContext, root: string): void {
  const records = [...entriesUnder(ctx.journal, root), ...treesTouching(ctx.journal, root, false).map(([, tree]) => tree)];
  const foreign = records.find((record) => recordOwner(record) !== ctx.requester.uid);
  if (!foreign) return;
  const owner = recordOwner(foreign);
  const whose = owner === undefined ? 'was labeled without a recorded owner' : `was labeled for uid ${owner}`;
  const what = 'root' in foreign ? foreign.root : foreign.path;
  throw new PathRefusedError(root, `it no longer exists, and ${what} ${whose}: only that user or root may drop its records`);
}

/**
 * Puts back the original labels of shared/read-only content at or below `root`: files labeled one by one
 * and the trees labeled in one walk (a tree above `root` gives back only what lies below it). The trees
 * are walked outside the state lock, marked as being restored meanwhile.
 */
export async function restoreContent(ctxOrTransact: RelabelContext | RelabelTransact, root: string): Promise<RestoreResult> {
  checkPathSyntax(root);
  const transact = transactOf(ctxOrTransact);
  const walker = selfAsWalker('restore');
  const intent = await transact(async (ctx) => {
    // Restoring changes labels on disk too: the requester must be one who may relabel the path (their own
    // file, or in a pool). A path that is gone has nothing left to restore; its entries are dropped below.
    if (ctx.requester.uid !== 0) {
      const opened = await openRelabelTarget(root, { config: ctx.config, requester: ctx.requester, allowDirectory: true }).catch((err: unknown) => {
        if (err instanceof PathRefusedError && err.message.endsWith(': no such file')) return undefined;
        throw err;
      });
      await opened?.handle.close();
      // A path that is gone has no owner on disk to check: the records say whose it was.
      if (opened === undefined) refuseForeignRecords(ctx, root);
    }
    refuseBusy(ctx, root, true);
    const entries = entriesUnder(ctx.journal, root);
    const held = entries.find((e) => e.kind === 'private' && ctx.isRunning(e.holder));
    if (held) throw new LabelConflictError(`${held.path} is held privately by running VM ${held.holder}; stop it first`);
    const result = await restoreEntries(ctx, entries);
    // Deepest first: a tree relabeled inside another is restored before the outer one is.
    const touching = treesTouching(ctx.journal, root, true).sort(([, a], [, b]) => b.root.length - a.root.length);
    for (const [, tree] of touching) tree.walker = walker;
    await ctx.persist();
    return { result, trees: touching.map(([name, tree]) => ({ name, tree: { ...tree } })), config: ctx.config, treeLogDir: ctx.treeLogDir };
  });
  let restored = intent.result.restored;
  const skipped = [...intent.result.skipped];
  const done: string[] = [];
  try {
    for (const { name, tree } of intent.trees) {
      const whole = isUnder(tree.root, root);
      let opened: OpenedTarget | undefined;
      try {
        opened = await openRelabelTarget(tree.root, { config: intent.config, requester: { uid: 0 }, allowDirectory: true });
        if (opened.stat.dev !== tree.dev || opened.stat.ino !== tree.ino) {
          skipped.push({ path: tree.root, reason: 'the tree was replaced since it was labeled' });
        } else {
          const log = await openTreeLog(intent.treeLogDir, name, constants.O_RDONLY);
          try {
            const run = await restoreTree({
              rootFd: opened.handle.fd, rootPath: tree.root, logFd: log.fd, use: 'original',
              ...(whole ? {} : { under: path.relative(tree.root, root) }),
            });
            restored += run.count;
            skipped.push(...run.skipped.map((s) => ({ path: s.path, reason: s.reason === 'gone' ? 'no such file' : 'the file was replaced since it was labeled' })));
          } finally {
            await log.close();
          }
        }
      } catch (err) {
        skipped.push({ path: tree.root, reason: err instanceof PathRefusedError ? err.message : `not restored: ${(err as Error).message}` });
      } finally {
        await opened?.handle.close();
      }
      if (whole) done.push(name);
    }
  } finally {
    await transact(async (ctx) => {
      const trees = ctx.journal.trees ?? {};
      for (const { name } of intent.trees) {
        const tree = trees[name];
        if (!tree) continue;
        delete tree.walker;
        if (done.includes(name)) delete trees[name];
      }
      await ctx.persist();
      for (const name of done) await removeTreeLog(ctx, name);
    });
  }
  return { restored, skipped };
}

export interface TreeResult {
  readonly labeled: number;
  readonly skippedSymlinksAndSpecial: string[];
}

/** Opens a tree log of the journal's tree directory (names are checked: the journal is data). */
async function openTreeLog(treeLogDir: string, name: string, flags: number): Promise<FileHandle> {
  if (!TREE_LOG_NAME.test(name)) throw new Error(`not a tree log name: ${name}`);
  return open(path.join(treeLogDir, name), flags | constants.O_NOFOLLOW, 0o600);
}

async function removeTreeLog(ctx: RelabelContext, name: string): Promise<void> {
  if (TREE_LOG_NAME.test(name)) await rm(path.join(ctx.treeLogDir, name), { force: true });
}

/**
 * Removes tree logs the journal does not name: left by a crash between creating a log and journaling it,
 * or between journaling a relabel and removing the logs it superseded. Call under the state lock.
 */
export async function removeOrphanTreeLogs(ctx: RelabelContext): Promise<string[]> {
  const names = await readdir(ctx.treeLogDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const orphans = names.filter((name) => TREE_LOG_NAME.test(name) && !ctx.journal.trees?.[name]);
  for (const name of orphans) await removeTreeLog(ctx, name);
  return orphans;
}

/**
 * Labels a file or a whole tree as shared read-write or read-only content, in one walk by
 * svirt-label-tree. Before the walk the tree is journaled with a log that the tool fills, synced ahead of
 * each batch of changes, with every file's original label; a refusal anywhere (another user's file, a
 * directory swapped during the walk…) rolls every change back. Nothing changes if a running VM holds a
 * file in the tree privately.
 *
 * The state lock is held only to record the intent (the tree record, marked with this helper as its
 * walker, so no other request relabels or restores a path in it meanwhile) and the result: the walk
 * itself, however long, runs outside it, and other users' starts go on. A helper killed mid-walk leaves
 * the record, with a log of every file it changed; reconcile clears its walker mark and a restore puts
 * the files back.
 */
export async function labelContentTree(
  ctxOrTransact: RelabelContext | RelabelTransact, root: string, kind: 'shared' | 'readonly', label: string,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<TreeResult> {
  assertValidLabel(label);
  const transact = transactOf(ctxOrTransact);
  let opened: OpenedTarget | undefined;
  let log: FileHandle | undefined;
  try {
    const intent = await transact(async (ctx) => {
      // Opening the root applies every path rule (location, owner, no symlink anywhere in it); the tool
      // gets this very directory as its fd 3.
      opened = await openRelabelTarget(root, { config: ctx.config, requester: ctx.requester, allowDirectory: true });
      refuseBusy(ctx, root, true);
      const covered = entriesUnder(ctx.journal, root);
      for (const entry of covered) {
        const conflict = conflictFor(ctx, entry, root, label);
        if (conflict) throw new LabelConflictError(conflict);
      }
      // What the files had before any of our relabels: the logs of overlapping trees first (a file labeled
      // alone after its tree was has the tree's label as its entry's original), then per-file entries.
      const priors: Buffer[] = [];
      const overlapping = treesTouching(ctx.journal, root, true).filter(([, t]) => t.dev === opened?.stat.dev);
      for (const [name] of overlapping) {
        const prior = await openTreeLog(ctx.treeLogDir, name, constants.O_RDONLY);
        try {
          const text = await prior.readFile();
          // A crash can leave a torn last line: its file was not labeled yet (records are synced first).
          priors.push(text.subarray(0, text.lastIndexOf(0x0a) + 1));
        } finally {
          await prior.close();
        }
      }
      // Files on another file system (a mount inside the tree) are not walked: their entries stay.
      const absorbed = covered.filter((e) => e.dev === opened?.stat.dev);
      priors.push(Buffer.from(absorbed.map((e) => `${e.ino} - ${labelHex(e.original)}\n`).join('')));

      await mkdir(ctx.treeLogDir, { recursive: true, mode: 0o700 });
      const logName = `${randomUUID()}.log`;
      log = await openTreeLog(ctx.treeLogDir, logName, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND);
      const stat = opened.stat;
      (ctx.journal.trees ??= {})[logName] = {
        root, dev: stat.dev, ino: stat.ino, applied: label, kind, at: new Date().toISOString(), walker: selfAsWalker('label'), ownerUid: ctx.requester.uid,
      };
      await ctx.persist();
      return {
        logName, absorbed, priors: Buffer.concat(priors), treeLogDir: ctx.treeLogDir,
        superseded: overlapping.filter(([, t]) => isUnder(t.root, root)).map(([name]) => name),
        // The tool applies the same path rules again, told what the requester's pools grant here.
        grants: treeGrants(root, ctx.config, ctx.requester),
        uid: ctx.requester.uid,
      };
    });
    const rootFd = (opened as OpenedTarget).handle.fd;
    const result = await labelTree({
      rootFd, rootPath: root, logFd: (log as FileHandle).fd, label, uid: intent.uid,
      ...intent.grants, priors: intent.priors,
      // Cancelling is one more way for the walk to fail: the same rollback below puts every label back.
      ...(signal ? { signal } : {}),
      onProgress: (done) => {
        onProgress?.(done, 0);
        // Crash tests: die with part of the tree labeled, outside the lock.
        faultPoint('mid-tree-walk');
      },
    }).catch(async (err: unknown) => {
      // Everything the walk changed goes back to the label it found; then the tree was never labeled.
      const readBack = await openTreeLog(intent.treeLogDir, intent.logName, constants.O_RDONLY);
      try {
        await restoreTree({ rootFd, rootPath: root, logFd: readBack.fd, use: 'before' });
      } finally {
        await readBack.close();
      }
      await transact(async (ctx) => {
        if (ctx.journal.trees) delete ctx.journal.trees[intent.logName];
        await ctx.persist();
        await removeTreeLog(ctx, intent.logName);
      });
      throw err;
    });
    // The new log now holds every original below the root: the entries and logs it absorbed go.
    await transact(async (ctx) => {
      for (const entry of intent.absorbed) {
        const now = ctx.journal.entries[entry.path];
        if (now && now.dev === entry.dev && now.ino === entry.ino) delete ctx.journal.entries[entry.path];
      }
      const trees = (ctx.journal.trees ??= {});
      for (const name of intent.superseded) delete trees[name];
      const mine = trees[intent.logName];
      if (mine) delete mine.walker;
      await ctx.persist();
      for (const name of intent.superseded) await removeTreeLog(ctx, name);
    });
    onProgress?.(result.count, result.count);
    return { labeled: result.count, skippedSymlinksAndSpecial: result.skipped.map((s) => s.path) };
  } finally {
    await log?.close();
    await opened?.handle.close();
  }
}
