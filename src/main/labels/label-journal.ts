import { Ajv } from 'ajv';

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
  applied: string;
  kind: HolderKind;
  /** A VM id for private files; the relabeled root path for shared/read-only content trees. */
  holder: string;
  at: string;
}

export interface JournalData {
  version: 1;
  entries: Record<string, JournalEntry>;
}

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
    applied: { type: 'string', minLength: 1 },
    kind: { type: 'string', enum: ['private', 'shared', 'readonly'] },
    holder: { type: 'string', minLength: 1 },
    at: { type: 'string' },
  },
} as const;

const journalSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'entries'],
  properties: {
    version: { type: 'integer', const: 1 },
    entries: { type: 'object', additionalProperties: entrySchema },
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

export function entriesHeldBy(journal: JournalData, holder: string): JournalEntry[] {
  return Object.values(journal.entries).filter((e) => e.holder === holder);
}

/** Entries for a path and everything below it. */
export function entriesUnder(journal: JournalData, root: string): JournalEntry[] {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  return Object.values(journal.entries).filter((e) => e.path === root || e.path.startsWith(prefix));
}
