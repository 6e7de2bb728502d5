import { Ajv } from 'ajv';
import { isUnder } from '../../host/path-policy';

/**
 * The label journal: for every file the helper relabeled, the label it had before (to restore it), the
 * label set, who holds it, and the inode, so that a file replaced behind our back is never "restored".
 */
export type HolderKind = 'private' | 'shared' | 'readonly';

export interface JournalEntry {
  path: string;
  dev: number;
  ino: number;
  /** The label before we changed it; null when the file had no label attribute. */
  original: string | null;
  /** The label set; null when only the owner changed (a model that labels no files, DAC alone) and the label stays. */
  applied: string | null;
  kind: HolderKind;
  /** A VM id for private files; the relabeled root path for shared/read-only content trees. */
  holder: string;
  at: string;
  /** The owner before a VM's own uid took the file over for its run (private disks); absent when not changed. */
  owner?: { uid: number; gid: number };
}

/**
 * A shared or read-only content tree labeled in one walk by svirt-label-tree: the originals of its files
 * are in the tree's log (one line per file) in the journal's directory, not in the journal itself.
 */
export interface TreeRecord {
  root: string;
  dev: number;
  ino: number;
  applied: string;
  kind: 'shared' | 'readonly';
  at: string;
  /**
   * The helper walking the tree now (labeling or restoring it), outside the state lock: while it is
   * alive, nothing else may relabel or restore a path in the tree. A dead walker's mark is cleared by
   * reconcile; the log then holds the original of every file the walk changed.
   */
  walker?: TreeWalker;
  /** The uid that asked for the relabel: once the tree is gone, only they (or root) may drop its record. */
  ownerUid?: number;
}

export interface TreeWalker {
  pid: number;
  startTime: string;
  op: 'label' | 'restore';
}

export interface JournalData {
  version: 1;
  entries: Record<string, JournalEntry>;
  /** Keyed by the log's file name (`<uuid>.log`). */
  trees?: Record<string, TreeRecord>;
}

/** A tree log's file name: the only names the helper opens in the journal's tree directory. */
export const TREE_LOG_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.log$/;

// Plain schema objects: ajv's JSONSchemaType cannot express a required `string | null`.
const entrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path', 'dev', 'ino', 'original', 'applied', 'kind', 'holder', 'at'],
  properties: {
    path: { type: 'string', minLength: 1 },
    dev: { type: 'integer', minimum: 0 },
    ino: { type: 'integer', minimum: 0 },
    original: { type: ['string', 'null'] },
    applied: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }] },
    kind: { type: 'string', enum: ['private', 'shared', 'readonly'] },
    holder: { type: 'string', minLength: 1 },
    at: { type: 'string' },
    owner: {
      type: 'object', additionalProperties: false, required: ['uid', 'gid'],
      properties: { uid: { type: 'integer', minimum: 0 }, gid: { type: 'integer', minimum: 0 } },
    },
  },
} as const;

const treeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['root', 'dev', 'ino', 'applied', 'kind', 'at'],
  properties: {
    root: { type: 'string', minLength: 1 },
    dev: { type: 'integer', minimum: 0 },
    ino: { type: 'integer', minimum: 0 },
    applied: { type: 'string', minLength: 1 },
    kind: { type: 'string', enum: ['shared', 'readonly'] },
    at: { type: 'string' },
    walker: {
      type: 'object',
      additionalProperties: false,
      required: ['pid', 'startTime', 'op'],
      properties: { pid: { type: 'integer', minimum: 1 }, startTime: { type: 'string' }, op: { type: 'string', enum: ['label', 'restore'] } },
    },
    ownerUid: { type: 'integer', minimum: 0 },
  },
} as const;

const journalSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'entries'],
  properties: {
    version: { type: 'integer', const: 1 },
    entries: { type: 'object', additionalProperties: entrySchema },
    trees: { type: 'object', propertyNames: { pattern: TREE_LOG_NAME.source }, additionalProperties: treeSchema },
  },
} as const;

const validate = new Ajv({ allErrors: false }).compile<JournalData>(journalSchema);

export function emptyJournal(): JournalData {
  return { version: 1, entries: {} };
}

/** Validates a journal read from disk; a journal that fails is reported, never half-used. */
export function parseJournal(value: unknown, source: string): JournalData {
  if (value === undefined) return emptyJournal();
  if (!validate(value)) {
    const first = validate.errors?.[0];
    throw new Error(`${source}: invalid label journal at ${first?.instancePath || '/'}: ${first?.message ?? 'unknown error'}`);
  }
  for (const [key, entry] of Object.entries(value.entries)) {
    if (key !== entry.path) throw new Error(`${source}: journal key ${key} does not match its entry's path ${entry.path}`);
  }
  return value;
}

/**
 * Who a journal record belongs to: a tree's recorded owner, or the uid in a VM holder's id (`uid/name`).
 * Undefined for records that name none (trees labeled before owners were recorded): root's alone.
 */
export function recordOwner(record: JournalEntry | TreeRecord): number | undefined {
  if ('root' in record) return record.ownerUid;
  const uid = /^(0|[1-9][0-9]{0,9})\//.exec(record.holder)?.[1];
  return uid === undefined ? undefined : Number(uid);
}

export function entriesHeldBy(journal: JournalData, holder: string): JournalEntry[] {
  return Object.values(journal.entries).filter((e) => e.holder === holder);
}

/** Entries for a path and everything below it. */
export function entriesUnder(journal: JournalData, root: string): JournalEntry[] {
  return Object.values(journal.entries).filter((e) => isUnder(e.path, root));
}

/** Tree records (with their log names) whose root is `root`, lies below it, or (`ancestors`) above it. */
export function treesTouching(journal: JournalData, root: string, ancestors: boolean): [string, TreeRecord][] {
  return Object.entries(journal.trees ?? {}).filter(([, t]) => isUnder(t.root, root) || (ancestors && isUnder(root, t.root)));
}
