/**
 * The names a user knows for the fields of a VM definition, in one table.
 *
 * The services and the helper speak the definition's own language (`memoryMiB`, `disks[0].path`,
 * `allowUnconfined`): that is what the stored JSON, the helper's schema checks and the unit tests use,
 * and a message there must be exact. A user never typed those names: they typed `--memory` in the CLI or
 * filled "Memory" in the app's form. So the front ends put each message into their user's words here,
 * at the edge, instead of every service guessing who is asking. Adding a field to the definition or a
 * flag to the CLI means one row below.
 */

export type Audience = 'cli' | 'app';

interface FieldWords {
  /** The field as messages print it (`disks[*].path`: any index; `seclabel.*`: any subfield). */
  readonly field: string;
  /** `{n}` stands for the 1-based index of the first `[*]`. */
  readonly cli: string;
  readonly app: string;
}

export const FIELD_WORDS: readonly FieldWords[] = [
  { field: 'name', cli: '--name', app: 'Name' },
  { field: 'memoryMiB', cli: '--memory', app: 'Memory' },
  { field: 'vcpus', cli: '--vcpus', app: 'vCPUs' },
  { field: 'boot.kind', cli: 'the boot choice (--kernel, --iso, or the first --disk)', app: 'Boot from' },
  { field: 'boot.kernel', cli: '--kernel', app: 'Kernel' },
  { field: 'boot.initrd', cli: '--initrd', app: 'Initrd' },
  { field: 'boot.cmdline', cli: '--append', app: 'Kernel command line' },
  { field: 'boot.iso', cli: '--iso', app: 'ISO image' },
  { field: 'disks[*].path', cli: '--disk #{n}', app: 'disk {n}' },
  { field: 'disks[*].class', cli: 'the suffix of --disk #{n}', app: 'Sharing of disk {n}' },
  { field: 'disks[*]', cli: '--disk #{n}', app: 'disk {n}' },
  { field: 'disks', cli: '--disk', app: 'Disk image' },
  { field: 'seclabel.*', cli: '--seclabel', app: 'Label' },
  { field: 'network.portForwards[*].*', cli: '--forward #{n}', app: 'port forward {n}' },
  { field: 'network.*', cli: '--network', app: 'Network' },
  { field: 'firmware.*', cli: '--firmware', app: 'Firmware' },
  { field: 'display', cli: '--display', app: 'Display' },
  { field: 'allowUnconfined', cli: '--allow-unconfined', app: '"Start anyway"' },
];

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function fieldPattern(field: string): string {
  const withIndex = escape(field).replace(/\\\[\\\*\\\]/g, '\\[(\\d+)\\]');
  // `x.*` also matches a bare `x` (`network must be …`).
  return withIndex.endsWith('\\.\\*') ? `${withIndex.slice(0, -4)}(?:\\.\\w+)*` : withIndex;
}

// A one-word field (`name`, `display`) is a plain English word too: it is a field only where a problem
// starts (the message's start, or after "; " or ": "). Dotted, indexed and camel-case names are anywhere.
const isPlainWord = (field: string) => /^[a-z]+(\.\*)?$/.test(field);

const RULES = FIELD_WORDS.map((words) => {
  const lead = isPlainWord(words.field) ? '(?:^|(?<=[;:] ))' : '(?<![\\w.[\\]/-])';
  return { words, pattern: new RegExp(`${lead}${fieldPattern(words.field)}(?![\\w[])`, 'g') };
});

/** The service's "where this came from" prefix, which names internals (`start request`, `defining "x"`). */
const DEFINITION_PREFIX = /(?:(?:defining|updating) "[^"]*"|start request): invalid VM definition: /g;
/** The helper's VM ids are `uid/name`; users name their VMs by name. */
const VM_ID = /\bVM \d+\/([A-Za-z0-9][A-Za-z0-9._-]*)/g;

/**
 * The helper's request schema names a field by JSON pointer (`start: /allowUnconfined must be boolean`);
 * as dotted names (`allowUnconfined`, `definition.disks[0]`) they meet the table. Only a pointer that an
 * ajv message ("must …") follows: a file path never reads as a field.
 */
const SCHEMA_POINTER = /(?:^|(?<=[;:] ))\/([A-Za-z]\w*(?:\/[\w~.-]+)*)(?= must )/g;
const dotted = (pointer: string) =>
  pointer.split('/').reduce((out, segment) => (/^\d+$/.test(segment) ? `${out}[${segment}]` : out === '' ? segment : `${out}.${segment}`), '').replace(/^definition\./, '');

/** A service or helper message in the words of the CLI's flags or the app's form fields. */
export function inUserWords(message: string, audience: Audience): string {
  let text = message.replace(DEFINITION_PREFIX, '').replace(VM_ID, 'VM "$1"').replace(SCHEMA_POINTER, (_m, pointer: string) => dotted(pointer));
  for (const { words, pattern } of RULES) {
    text = text.replace(pattern, (...match: unknown[]) => {
      const index = typeof match[1] === 'string' ? String(Number(match[1]) + 1) : '';
      return words[audience].replace('{n}', index);
    });
  }
  return text;
}

/** Why a file the user named cannot be used, in words (not `ENOENT: …, realpath '…'`); one wording per errno. */
export function describeFileError(file: string, err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return `${file} does not exist`;
    case 'EACCES':
    case 'EPERM':
      return `${file} cannot be read by you (permission denied)`;
    case 'ENOTDIR':
      return `${file} does not exist (a part of the path is not a directory)`;
    case 'ELOOP':
      return `${file} is a loop of symbolic links`;
    case 'ENAMETOOLONG':
      return `${file} is too long a path`;
    default:
      return `${file} cannot be read: ${(err as Error).message}`;
  }
}

/** Why a new file cannot be created, in words; `EEXIST` is the caller's to word (what to do differs). */
export function describeCreateError(file: string, err: unknown): string {
  const dir = file.slice(0, Math.max(file.lastIndexOf('/'), 1));
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return `cannot create ${file}: the directory ${dir} does not exist`;
    case 'EACCES':
    case 'EPERM':
      return `cannot create ${file}: you may not write in ${dir} (permission denied); choose a directory of yours`;
    case 'ENOSPC':
      return `cannot create ${file}: no space left on its file system`;
    case 'EROFS':
      return `cannot create ${file}: ${dir} is on a read-only file system`;
    default:
      return `cannot create ${file}: ${(err as Error).message}`;
  }
}
