import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, chown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { MAX_LINE_BYTES } from '../../../src/contracts/helper-protocol';
import { HelperStateStore } from '../../../src/root/state/helper-state';
import { createTestHost, type TestHost } from '../../support/helper-session';
import {
  diffSnapshots, findProcesses, helperEnv, OTHER_UID, RawHelper, REQUESTER_UID, snapshotFiles, type FileSnapshot,
} from './reliability';

/**
 * Protocol fuzzing against a real helper process: cases are byte strings written to its stdin (in random
 * chunks), a model says how many responses each line must get and with which id, and after every batch
 * the helper must answer `status` in time, and nothing may have changed: planted files (labels, owners,
 * modes), decoys outside the tree, the state files (which must parse and stay empty), no qemu started.
 *
 * The helper acts for a non-root requester (SUDO_UID) and nothing planted belongs to that requester, so
 * every relabel or start the fuzzer can produce must be refused: any change is a side effect.
 */
const execFileP = promisify(execFile);

export const KNOWN_VERBS = ['status', 'list', 'reconcile', 'start', 'stop', 'forceOff', 'relabel', 'consoleAttach', 'consoleInput', 'consoleResize', 'consoleDetach'] as const;
const ERROR_CODES = new Set(['bad-json', 'bad-request', 'unknown-verb', 'line-too-long', 'refused', 'conflict', 'not-found', 'failed']);
// Requests that may answer ok without changing anything (restore with nothing journaled is a no-op).
const SAFE_OK_VERBS = new Set(['status', 'list', 'reconcile', 'relabel']);
// The deny-list and paths under it: refused by location before the file system is touched.
const SYSTEM_PATHS = ['/', '/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/root', '/run', '/sbin', '/sys', '/usr', '/var', '/home', '/tmp',
  '/etc/svirt-fuzz-nonexistent', '/usr/lib/svirt-fuzz-nonexistent', '/dev/svirt-fuzz-nonexistent', '/var/lib/libvirt/images'];

export const DECOY_LABEL = 'system_u:object_r:shadow_t:s0';
const PLANTED_LABEL = 'unconfined_u:object_r:user_home_t:s0';
const OTHER_VM_LABEL = 'system_u:object_r:svirt_image_t:s0:c7,c9';

export interface PlantedTree {
  /** Everything whose label, owner and mode is compared before and after. */
  readonly watched: string[];
  /** Paths fed to the generators. */
  readonly pool: string[];
  readonly decoys: string[];
}

async function setLabel(p: string, label: string): Promise<void> {
  await execFileP('setfattr', ['-h', '-n', 'security.selinux', '-v', label, '--', p]);
}

/**
 * A tree with every kind of file a relabel request might name, none of them the requester's: files of
 * another user and of root, a symlink to a decoy and a symlinked directory, a hard link to a decoy, a
 * FIFO, block and character devices; decoys (/etc/shadow-like) sit outside the tree.
 */
export async function plantTree(host: TestHost): Promise<PlantedTree> {
  const tree = path.join(host.dir, 'planted');
  const decoyDir = path.join(host.dir, 'decoy');
  await mkdir(path.join(tree, 'sub'), { recursive: true });
  await mkdir(decoyDir, { recursive: true });
  const shadow = path.join(decoyDir, 'shadow');
  const passwd = path.join(decoyDir, 'passwd');
  await writeFile(shadow, 'root:$6$decoy:19000:0:99999:7:::\n', { mode: 0o640 });
  await writeFile(passwd, 'root:x:0:0:root:/root:/bin/sh\n', { mode: 0o644 });
  await setLabel(shadow, DECOY_LABEL);
  await setLabel(passwd, 'system_u:object_r:etc_t:s0');

  const files: [string, number, number, string][] = [
    ['other.img', OTHER_UID, 0o600, PLANTED_LABEL],
    ['root.img', 0, 0o600, PLANTED_LABEL],
    ['held.img', OTHER_UID, 0o600, OTHER_VM_LABEL],
    ['sub/nested.img', OTHER_UID, 0o600, PLANTED_LABEL],
  ];
  const pool: string[] = [];
  for (const [name, uid, mode, label] of files) {
    const p = path.join(tree, name);
    await writeFile(p, Buffer.alloc(4096));
    await chown(p, uid, uid);
    await chmod(p, mode);
    await setLabel(p, label);
    pool.push(p);
  }
  for (const dir of [tree, path.join(tree, 'sub')]) {
    await chown(dir, OTHER_UID, OTHER_UID);
    await setLabel(dir, PLANTED_LABEL);
    pool.push(dir);
  }
  const special: [string, () => Promise<unknown>][] = [
    ['link-shadow', () => symlink(shadow, path.join(tree, 'link-shadow'))],
    ['link-dir', () => symlink(decoyDir, path.join(tree, 'link-dir'))],
    ['hardlink-shadow', () => link(shadow, path.join(tree, 'hardlink-shadow'))],
    ['fifo', () => execFileP('mkfifo', [path.join(tree, 'fifo')])],
    ['blockdev', () => execFileP('mknod', [path.join(tree, 'blockdev'), 'b', '7', '0'])],
    ['chardev', () => execFileP('mknod', [path.join(tree, 'chardev'), 'c', '1', '3'])],
  ];
  for (const [name, make] of special) {
    await make();
    const p = path.join(tree, name);
    if (name !== 'hardlink-shadow') await setLabel(p, PLANTED_LABEL);
    pool.push(p);
  }
  pool.push(path.join(tree, 'link-dir', 'shadow'), path.join(tree, 'missing.img'), shadow, passwd);
  const watched = [...new Set([...pool.filter((p) => !p.endsWith('missing.img') && !p.includes('link-dir/')), host.dir, host.kernel, host.initrd, decoyDir,
    ...SYSTEM_PATHS.filter((p) => !p.includes('nonexistent') && p !== '/var/lib/libvirt/images')])];
  return { watched, pool: [...pool, ...SYSTEM_PATHS], decoys: [shadow, passwd] };
}

// ---------------------------------------------------------------------------------------------------
// Cases

/** One fuzz case: bytes for the helper's stdin, made when sent (some are over a megabyte). */
export interface FuzzCase {
  readonly kind: string;
  readonly bytes: () => Buffer;
  /** For fast-check's counterexample report. */
  toString(): string;
}

function fuzzCase(kind: string, make: () => Buffer | string, show?: string): FuzzCase {
  const bytes = () => {
    const b = make();
    return typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  };
  return { kind, bytes, toString: () => `${kind}: ${show ?? JSON.stringify(bytes().subarray(0, 300).toString('latin1'))}` };
}

const jsonCase = (kind: string, value: unknown) => fuzzCase(kind, () => JSON.stringify(value));

/** Values of the wrong type for any field. */
function junkArb(): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, '', ' ', '0', [], {}, [null], { '': 1 }),
    fc.string({ maxLength: 20 }),
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.jsonValue({ maxDepth: 3 }),
  );
}

function pathArb(pool: readonly string[]): fc.Arbitrary<string> {
  const base = fc.constantFrom(...pool);
  return fc.oneof(
    { weight: 6, arbitrary: base },
    {
      weight: 4,
      arbitrary: fc.tuple(base, fc.constantFrom('/', '/.', '/..', '/../planted', '//', '\n', '\u0000', '\r', '\t', ' ', '/./x', '\u202e', '\ud800', '%2e%2e')).map(
        ([p, s]) => (s.startsWith('/') || s.length > 1 ? `${p}${s}` : `${p}${s}tail`),
      ),
    },
    { weight: 1, arbitrary: base.map((p) => p.replace(/\/([^/]*)$/, '/../$1')) },
    { weight: 1, arbitrary: base.map((p) => p.slice(1)) },
    { weight: 1, arbitrary: base.map((p) => p.replace(/\//g, '//')) },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/${s}`) },
    { weight: 1, arbitrary: fc.integer({ min: 4000, max: 5000 }).map((n) => `/${'a'.repeat(n)}`) },
  );
}

const VM_NAMES = ['fz', 'vm-1', '0/fz', '4242/fz', '4343/held', '9999999999/x', 'a.b_c-d'];
const BAD_VM_NAMES = ['../fz', 'a/b/c', '', '-x', '99999999999/x', 'x'.repeat(129), 'fz\n', '/fz'];

/** Args of the verb's own shape (so they reach the handler), with values meant to be refused there. */
function validArgs(verb: string, pool: readonly string[]): fc.Arbitrary<Record<string, unknown>> {
  const p = pathArb(pool);
  // A definition has several paths: mostly clean ones, or one bad path would stop every start at validation.
  const dp = fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...pool) }, { weight: 1, arbitrary: p });
  const vm = fc.constantFrom(...VM_NAMES);
  switch (verb) {
    case 'relabel':
      return fc.record({ path: p, mode: fc.constantFrom('shared', 'readonly', 'private', 'restore'), vm }, { requiredKeys: ['path', 'mode'] });
    case 'start': {
      const disk = fc.record({
        path: dp, format: fc.constantFrom('raw', 'qcow2'), class: fc.constantFrom('private', 'shared', 'readonly'), relabel: fc.boolean(),
        label: fc.constantFrom('system_u:object_r:svirt_image_t:s0:c1,c2', 'system_u:object_r:svirt_image_t:s0'),
      }, { requiredKeys: ['path', 'format', 'class', 'relabel'] });
      const boot = fc.oneof(
        fc.record({ kind: fc.constant('kernel'), kernel: dp, initrd: dp, cmdline: fc.constantFrom('console=ttyS0', '') }, { requiredKeys: ['kind', 'kernel'] }),
        fc.constant({ kind: 'disk' }),
        fc.record({ kind: fc.constant('iso'), iso: dp }),
      );
      const seclabel = fc.oneof(
        fc.constant({ mode: 'dynamic' }),
        fc.constant({ mode: 'none' }),
        fc.record({ mode: fc.constant('static'), label: fc.constantFrom('system_u:system_r:svirt_t:s0:c1,c2', 'system_u:system_r:svirt_t:s0:c7,c9'), relabel: fc.boolean() }),
      );
      const definition = fc.record({
        version: fc.constant(1), name: fc.constantFrom('fz', 'fz-2', 'held'), memoryMiB: fc.constantFrom(16, 96), vcpus: fc.constant(1),
        boot, disks: fc.uniqueArray(disk, { maxLength: 4, selector: (d) => d.path }), seclabel, createdAt: fc.constant('2024-01-31T12:00:00.000Z'), serialLog: dp,
      }, { requiredKeys: ['version', 'name', 'memoryMiB', 'vcpus', 'boot', 'disks', 'seclabel', 'createdAt'] });
      return fc.record({
        definition,
        allowUnconfined: fc.boolean(),
        reservedLevels: fc.array(fc.constantFrom('system_u:system_r:svirt_t:s0:c1,c2', 'garbage', 'a:b:c:s0:c1023,c1024'), { maxLength: 3 }),
      }, { requiredKeys: ['definition'] });
    }
    case 'stop':
      return fc.record({ vm, force: fc.boolean(), timeoutMs: fc.integer({ min: 0, max: 10 }) }, { requiredKeys: ['vm'] });
    case 'forceOff':
      return fc.record({ vm });
    case 'consoleAttach':
      return fc.record({ vm, resumeFrom: fc.oneof(fc.constant(null), fc.nat()) }, { requiredKeys: ['vm'] });
    case 'consoleInput':
      return fc.record({ session: fc.uuid(), data: fc.string({ maxLength: 20 }), encoding: fc.constantFrom('utf8', 'base64') }, { requiredKeys: ['session', 'data'] });
    case 'consoleResize':
      return fc.record({ session: fc.uuid(), cols: fc.integer({ min: 1, max: 10000 }), rows: fc.integer({ min: 1, max: 10000 }) });
    case 'consoleDetach':
      return fc.record({ session: fc.uuid() });
    default:
      return fc.constant({});
  }
}

/** Breaks a valid value somewhere: a field (at any depth) replaced by junk, dropped, or one added. */
function mutate(value: unknown): fc.Arbitrary<unknown> {
  const paths: string[][] = [];
  const walk = (v: unknown, at: string[]) => {
    paths.push(at);
    if (v !== null && typeof v === 'object') for (const [k, child] of Object.entries(v)) walk(child, [...at, k]);
  };
  walk(value, []);
  return fc.tuple(fc.constantFrom(...paths), fc.constantFrom('replace', 'drop', 'add'), junkArb(), fc.constantFrom('extra', '__proto__', 'constructor', '')).map(([at, how, junk, key]) => {
    const copy = JSON.parse(JSON.stringify(value)) as unknown;
    if (at.length === 0) return how === 'replace' ? junk : copy;
    let parent = copy as Record<string, unknown>;
    for (const k of at.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
    const last = at.at(-1) as string;
    if (how === 'replace') parent[last] = junk;
    else if (how === 'drop') delete parent[last];
    else if (parent[last] !== null && typeof parent[last] === 'object') (parent[last] as Record<string, unknown>)[key] = junk;
    else parent[key] = junk;
    return copy;
  });
}

function argsFor(verb: string, pool: readonly string[]): fc.Arbitrary<unknown> {
  const valid = validArgs(verb, pool);
  return fc.oneof(
    { weight: 6, arbitrary: valid },
    { weight: 3, arbitrary: valid.chain(mutate) },
    { weight: 1, arbitrary: verb === 'relabel' || verb === 'stop' || verb === 'forceOff' || verb === 'consoleAttach'
      ? fc.record({ vm: fc.constantFrom(...BAD_VM_NAMES), path: pathArb(pool), mode: fc.constantFrom('private', 'shared') })
      : junkArb() },
  );
}

const idArb = fc.oneof(
  { weight: 12, arbitrary: fc.nat({ max: 1_000_000 }) },
  { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, -0, 2 ** 53, 1e308, '', 'x'.repeat(65), null, true, [], {}) },
);

const verbArb = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom(...KNOWN_VERBS) },
  // The verbs that touch files get more of the cases.
  { weight: 12, arbitrary: fc.constant('relabel') },
  { weight: 6, arbitrary: fc.constant('start') },
  { weight: 2, arbitrary: fc.constantFrom('Status', 'status ', 'rm', 'exec', 'constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'a'.repeat(65), '') },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: junkArb() },
);

/** A request envelope, mostly with a known verb and args of its shape but wrong in some way. */
function envelopeArb(pool: readonly string[]): fc.Arbitrary<FuzzCase> {
  const often = fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });
  const extra = fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: junkArb() });
  return fc.tuple(idArb, verbArb, often, extra, often).chain(([id, verb, withArgs, extraKey, withId]) => {
    const args = typeof verb === 'string' && (KNOWN_VERBS as readonly string[]).includes(verb) ? argsFor(verb, pool) : junkArb();
    return args.map((a) => {
      const envelope: Record<string, unknown> = { verb };
      if (withId) envelope.id = id;
      if (withArgs) envelope.args = a;
      if (extraKey !== undefined) envelope[typeof extraKey === 'string' ? `x${extraKey}` : 'extra'] = extraKey;
      return jsonCase(`envelope(${String(verb).slice(0, 20)})`, envelope);
    });
  });
}

/** Valid-looking request text cut or corrupted: malformed JSON. */
function malformedArb(pool: readonly string[]): fc.Arbitrary<FuzzCase> {
  return fc.tuple(envelopeArb(pool), fc.nat(), fc.constantFrom('cut', 'insert', 'quote', 'trailing', 'comment', 'single')).map(([c, at, how]) => {
    const text = c.bytes().toString('utf8');
    const i = text.length === 0 ? 0 : at % text.length;
    const out = how === 'cut' ? text.slice(0, i)
      : how === 'insert' ? `${text.slice(0, i)}{${text.slice(i)}`
        : how === 'quote' ? `${text.slice(0, i)}"${text.slice(i)}`
          : how === 'trailing' ? `${text},`
            : how === 'comment' ? `${text} // comment`
              : text.replace(/"/g, "'");
    return fuzzCase(`malformed(${how})`, () => out);
  });
}

function deepArb(): fc.Arbitrary<FuzzCase> {
  return fc.tuple(fc.integer({ min: 100, max: 100_000 }), fc.constantFrom('[', '{"a":', 'args'), fc.boolean()).map(([depth, open, closed]) => {
    const make = () => {
      if (open === 'args') return `{"id":7,"verb":"relabel","args":{"path":${'['.repeat(depth)}${closed ? ']'.repeat(depth) : ''},"mode":"shared"}}`;
      const close = open === '[' ? ']' : '}';
      return `${open.repeat(depth)}1${closed ? close.repeat(depth) : ''}`;
    };
    return fuzzCase(`deep(${open},${depth},${closed ? 'closed' : 'open'})`, make, `${depth} x ${open}`);
  });
}

function hugeArb(): fc.Arbitrary<FuzzCase> {
  return fc.oneof(
    fc.integer({ min: 10_000, max: 600_000 }).map((n) => fuzzCase('huge-string', () => JSON.stringify({ id: 8, verb: 'relabel', args: { path: `/${'x'.repeat(n)}`, mode: 'shared' } }), `path of ${n}`)),
    fc.integer({ min: 10_000, max: 600_000 }).map((n) => fuzzCase('huge-verb', () => JSON.stringify({ id: 9, verb: 'a'.repeat(n) }), `verb of ${n}`)),
    fc.constantFrom('1e309', '-1e309', '123456789012345678901234567890', '0.0000000000000000000000000001', '1'.repeat(5000), '-0', '1E400').map(
      (n) => fuzzCase('huge-number', () => `{"id":${n},"verb":"consoleResize","args":{"session":"s","cols":${n},"rows":${n}}}`),
    ),
  );
}

/** Lines around MAX_LINE_BYTES: a `status` padded to exactly the limit must be answered, beyond it refused. */
function boundaryArb(): fc.Arbitrary<FuzzCase> {
  return fc.integer({ min: -2, max: 3000 }).map((over) => {
    const make = () => {
      const request = '{"id":"pad","verb":"status"}';
      return `${request}${' '.repeat(MAX_LINE_BYTES - request.length + over)}`;
    };
    return fuzzCase('line-size', make, `status padded to MAX_LINE_BYTES${over >= 0 ? '+' : ''}${over}`);
  });
}

function bytesArb(): fc.Arbitrary<FuzzCase> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => fuzzCase('random-bytes', () => Buffer.from(a))),
    // Valid JSON around invalid UTF-8: lone continuation bytes, overlong NUL, UTF-16 surrogates, 0xff.
    fc.tuple(fc.constantFrom('80', 'c080', 'eda080', 'ff', 'f4908080', 'e282', 'fe'), fc.boolean()).map(([hex, inPath]) => fuzzCase('bad-utf8', () => Buffer.concat([
      Buffer.from(inPath ? '{"id":3,"verb":"relabel","args":{"path":"/tmp/' : '{"id":3,"verb":"sta', 'utf8'),
      Buffer.from(hex, 'hex'),
      Buffer.from(inPath ? '","mode":"shared"}}' : 'tus"}', 'utf8'),
    ]))),
    // NUL bytes: raw, and escaped inside strings.
    fc.constantFrom('\u0000', '{"id":4,"verb":"status"}\u0000', '{"id":5,"verb":"stat\\u0000us"}', '{"id":6,"verb":"relabel","args":{"path":"/tmp/a\\u0000b","mode":"shared"}}')
      .map((s) => fuzzCase('nul', () => s)),
    fc.constantFrom('', ' ', '\r', '\t \r', '\u00a0', '\ufeff', '\ufeff{"id":11,"verb":"status"}', '\r\r', '{"id":12,"verb":"status"}\r')
      .map((s) => fuzzCase('blank-ish', () => s)),
  );
}

export function caseArb(pool: readonly string[], options: { big?: boolean } = {}): fc.Arbitrary<FuzzCase> {
  const big = options.big ?? true;
  return fc.oneof(
    { weight: 40, arbitrary: envelopeArb(pool) },
    { weight: 10, arbitrary: malformedArb(pool) },
    { weight: 8, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => jsonCase('json-value', v)) },
    { weight: 5, arbitrary: fc.string({ maxLength: 60 }).map((s) => fuzzCase('text', () => s)) },
    { weight: 10, arbitrary: bytesArb() },
    { weight: 2, arbitrary: deepArb() },
    { weight: big ? 2 : 0, arbitrary: hugeArb() },
    { weight: big ? 1 : 0, arbitrary: boundaryArb() },
  );
}

export interface FuzzBatch {
  readonly cases: FuzzCase[];
  /** Split points for writing (the stream gives the helper arbitrary chunks). */
  readonly splits: number[];
}

export function batchArb(pool: readonly string[], options: { big?: boolean; maxCases?: number } = {}): fc.Arbitrary<FuzzBatch> {
  return fc.record({
    cases: fc.array(caseArb(pool, options), { minLength: 1, maxLength: options.maxCases ?? 20 }),
    splits: fc.array(fc.nat(), { maxLength: 6 }),
  }).map((b) => ({ ...b, toString: () => `batch of ${b.cases.length}:\n  ${b.cases.map(String).join('\n  ')}` }));
}

// ---------------------------------------------------------------------------------------------------
// The model of what must come back

interface Expected {
  /** The id the response must carry (null when the request had none usable). */
  readonly id: number | string | null;
  /** The only acceptable error code, when the line is refused before any verb runs. */
  readonly code?: 'bad-json' | 'line-too-long';
  readonly verb?: string;
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

/** The responses one line must get: none for a blank line, else exactly one. */
export function modelLine(bytes: Buffer): Expected | null {
  if (bytes.length > MAX_LINE_BYTES) return { id: null, code: 'line-too-long' };
  if (bytes.length === 0) return null;
  let text: string;
  try {
    text = fatalDecoder.decode(bytes);
  } catch {
    return { id: null, code: 'bad-json' };
  }
  if (text.endsWith('\r')) text = text.slice(0, -1);
  if (text.trim() === '') return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { id: null, code: 'bad-json' };
  }
  const raw = value !== null && typeof value === 'object' ? (value as { id?: unknown; verb?: unknown }) : {};
  const id = (typeof raw.id === 'number' && Number.isSafeInteger(raw.id)) || (typeof raw.id === 'string' && raw.id.length <= 64) ? (raw.id as number | string) : null;
  return { id, ...(typeof raw.verb === 'string' ? { verb: raw.verb } : {}) };
}

function splitLines(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, start)) {
    out.push(buf.subarray(start, nl));
    start = nl + 1;
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}

const idKey = (id: unknown) => (id === null || id === undefined ? 'null' : `${typeof id}:${String(id)}`);

/** Problems with one response line's shape. */
function shapeProblems(message: Record<string, unknown> | undefined, raw: string): string[] {
  if (!message) return [`response is not a JSON object: ${raw.slice(0, 200)}`];
  if ('event' in message) return [];
  const keys = Object.keys(message).sort().join(',');
  if (message.ok === true) return keys === 'id,ok,result' ? [] : [`ok response with keys ${keys}`];
  if (message.ok !== false || keys !== 'error,id,ok') return [`malformed response: ${raw.slice(0, 200)}`];
  const error = message.error as { code?: unknown; message?: unknown } | null;
  if (!error || typeof error !== 'object' || Object.keys(error).sort().join(',') !== 'code,message') return [`malformed error: ${raw.slice(0, 200)}`];
  if (typeof error.code !== 'string' || !ERROR_CODES.has(error.code)) return [`unknown error code: ${raw.slice(0, 200)}`];
  if (typeof error.message !== 'string' || error.message === '') return [`error without a message: ${raw.slice(0, 200)}`];
  const id = message.id;
  if (id !== null && typeof id !== 'number' && typeof id !== 'string') return [`response id of type ${typeof id}`];
  return [];
}

// ---------------------------------------------------------------------------------------------------
// The session

export interface BatchOutcome {
  readonly cases: number;
  readonly crashed: boolean;
  readonly hung: boolean;
  readonly sideEffects: string[];
  /** Wrong, missing or extra responses. */
  readonly protocolProblems: string[];
  /** Requests of a live helper that got no response (counted apart: a request never answered is a hang). */
  readonly unanswered: number;
  /** `failed` answers (an exception the helper did not classify), for the report. */
  readonly internalErrors: string[];
}

export interface FuzzTotals {
  casesFuzzed: number;
  crashes: number;
  hangs: number;
  sideEffects: number;
  /** Wrong responses: malformed, extra, an unknown code, a success where a refusal was due. */
  protocolProblems: number;
  /** Requests a live helper never answered. */
  unanswered: number;
  internalErrors: Map<string, number>;
  /** How the requests were answered, by verb: shows how deep the fuzzer gets. */
  answers: Map<string, number>;
  details: string[];
}

const RESPONSE_DEADLINE_MS = 30_000;
const STATUS_DEADLINE_MS = 10_000;

export class FuzzSession {
  helper!: RawHelper;
  readonly totals: FuzzTotals = { casesFuzzed: 0, crashes: 0, hangs: 0, sideEffects: 0, protocolProblems: 0, unanswered: 0, internalErrors: new Map(), answers: new Map(), details: [] };
  private baseline!: FileSnapshot;
  private get answerCounts(): Map<string, number> {
    return this.totals.answers;
  }

  private constructor(readonly host: TestHost, readonly tree: PlantedTree) {}

  static async create(): Promise<FuzzSession> {
    const host = await createTestHost();
    const tree = await plantTree(host);
    const session = new FuzzSession(host, tree);
    session.baseline = await snapshotFiles(tree.watched);
    await session.restart();
    return session;
  }

  get pool(): string[] {
    return this.tree.pool;
  }

  private async restart(): Promise<void> {
    this.helper?.kill();
    this.helper = RawHelper.start(this.host, helperEnv(REQUESTER_UID));
    // The first status probes the accelerator (seconds): not counted against the fuzz deadlines.
    const first = await this.helper.request(`warm-${randomUUID()}`, 'status', {}, 60_000);
    if (first?.ok !== true) throw new Error(`fuzz helper did not start: ${this.helper.stderr}`);
  }

  /** Writes one batch, checks every response, the helper's health and the absence of side effects. */
  async runBatch(batch: FuzzBatch): Promise<BatchOutcome> {
    if (!this.helper.alive) await this.restart();
    const helper = this.helper;
    const data = Buffer.concat(batch.cases.flatMap((c) => [c.bytes(), Buffer.from('\n')]));
    const expected: Expected[] = [];
    for (const line of splitLines(data)) {
      const e = modelLine(line);
      if (e) expected.push(e);
    }
    const from = helper.lines.length;
    const cuts = [...new Set(batch.splits.map((s) => s % data.length))].sort((a, b) => a - b);
    let at = 0;
    for (const cut of [...cuts, data.length]) {
      if (cut <= at) continue;
      await helper.write(data.subarray(at, cut));
      at = cut;
      await new Promise((r) => setImmediate(r));
    }
    const responses = () => helper.lines.slice(from).filter((l) => !(l.message && 'event' in l.message));
    await helper.waitFor(() => responses().length >= expected.length, RESPONSE_DEADLINE_MS);

    const protocolProblems: string[] = [];
    const internalErrors: string[] = [];
    let unanswered = 0;
    let crashed = false;
    let hung = false;
    if (!helper.alive) {
      crashed = true;
      protocolProblems.push(`helper exited: ${JSON.stringify(await helper.exited)}: ${helper.stderr.slice(-500)}`);
    } else {
      const syncId = `sync-${randomUUID()}`;
      const sync = await helper.request(syncId, 'status', {}, STATUS_DEADLINE_MS);
      if (sync?.ok !== true) {
        hung = helper.alive;
        crashed = !helper.alive;
        protocolProblems.push(hung ? `status not answered within ${STATUS_DEADLINE_MS} ms` : `helper exited: ${helper.stderr.slice(-500)}`);
      }
    }

    const got = responses().filter((l) => l.message?.id === undefined || !String(l.message.id).startsWith('sync-'));
    for (const line of helper.lines.slice(from)) {
      protocolProblems.push(...shapeProblems(line.message, line.raw));
      if (line.message && 'event' in line.message) protocolProblems.push(`unexpected event: ${line.raw.slice(0, 200)}`);
    }
    if (!crashed && !hung) {
      const want = new Map<string, number>();
      for (const e of expected) want.set(idKey(e.id), (want.get(idKey(e.id)) ?? 0) + 1);
      const have = new Map<string, number>();
      for (const r of got) have.set(idKey(r.message?.id), (have.get(idKey(r.message?.id)) ?? 0) + 1);
      for (const key of new Set([...want.keys(), ...have.keys()])) {
        const w = want.get(key) ?? 0;
        const h = have.get(key) ?? 0;
        if (w > h) {
          unanswered += w - h;
          protocolProblems.push(`unanswered: id ${key}: expected ${w} responses, got ${h}`);
        } else if (w < h) protocolProblems.push(`id ${key}: expected ${w} responses, got ${h}`);
      }
      for (const code of ['bad-json', 'line-too-long'] as const) {
        const w = expected.filter((e) => e.code === code).length;
        const h = got.filter((r) => (r.message?.error as { code?: string } | undefined)?.code === code).length;
        if (w !== h) protocolProblems.push(`expected ${w} "${code}" responses, got ${h}`);
      }
    }
    for (const r of got) {
      const m = r.message;
      if (!m) continue;
      const verb = expected.find((e) => m.id !== null && idKey(e.id) === idKey(m.id))?.verb ?? '?';
      const answer = `${KNOWN_VERBS.includes(verb as never) ? verb : 'other'}:${m.ok === true ? 'ok' : (m.error as { code?: string } | undefined)?.code}`;
      this.answerCounts.set(answer, (this.answerCounts.get(answer) ?? 0) + 1);
      if (m.ok === true) {
        const verbs = expected.filter((e) => idKey(e.id) === idKey(m.id)).map((e) => e.verb);
        if (!verbs.some((v) => v !== undefined && SAFE_OK_VERBS.has(v))) protocolProblems.push(`unexpected success: ${r.raw.slice(0, 300)}`);
      } else if ((m.error as { code?: string } | undefined)?.code === 'failed') {
        internalErrors.push(String((m.error as { message?: string }).message).slice(0, 160));
      }
    }

    const sideEffects = await this.sideEffects();
    const outcome: BatchOutcome = { cases: batch.cases.length, crashed, hung, sideEffects, protocolProblems, unanswered, internalErrors };
    this.account(outcome, batch);
    if (crashed || hung) await this.restart();
    return outcome;
  }

  /** Labels, owners and modes of the watched files, the state files, and processes: all as before. */
  async sideEffects(): Promise<string[]> {
    const out = diffSnapshots(this.baseline, await snapshotFiles(this.tree.watched));
    try {
      const { registry, journal } = await new HelperStateStore(this.host.stateDir).read();
      if (Object.keys(registry.vms).length > 0) out.push(`registry lists VMs: ${Object.keys(registry.vms).join(', ')}`);
      const holds = (registry.mcs as { holds?: unknown[] } | null)?.holds ?? [];
      if (holds.length > 0) out.push(`allocator holds ${holds.length} pairs`);
      if (Object.keys(journal.entries).length > 0) out.push(`journal has entries: ${Object.keys(journal.entries).join(', ')}`);
      const trees = Object.values(journal.trees ?? {});
      if (trees.length > 0) out.push(`journal has trees: ${trees.map((t) => t.root).join(', ')}`);
    } catch (err) {
      out.push(`state does not parse: ${(err as Error).message}`);
    }
    const qemu = findProcesses(this.host.dir, 'qemu');
    if (qemu.length > 0) out.push(`qemu started: ${qemu.map((q) => q.pid).join(', ')}`);
    return out;
  }

  private account(outcome: BatchOutcome, batch: FuzzBatch): void {
    const t = this.totals;
    t.casesFuzzed += outcome.cases;
    if (outcome.crashed) t.crashes++;
    if (outcome.hung) t.hangs++;
    if (outcome.sideEffects.length > 0) {
      t.sideEffects += outcome.sideEffects.length;
      // A side effect would repeat in every later batch: compare against the new state from now on.
      void snapshotFiles(this.tree.watched).then((s) => (this.baseline = s));
    }
    // Missing responses are counted as `unanswered`, the rest here.
    t.protocolProblems += outcome.protocolProblems.filter((p) => !p.startsWith('unanswered:')).length;
    t.unanswered += outcome.unanswered;
    for (const e of outcome.internalErrors) {
      const key = e.replace(/"[^"]*"/g, '"…"').replace(/\d+/g, 'N').slice(0, 100);
      t.internalErrors.set(key, (t.internalErrors.get(key) ?? 0) + 1);
    }
    const bad = [...outcome.protocolProblems, ...outcome.sideEffects];
    if (bad.length > 0 && t.details.length < 50) t.details.push(`${bad.join('; ')}\n  in ${String(batch).slice(0, 2000)}`);
  }

  async dispose(): Promise<void> {
    this.helper?.kill();
    await this.host.dispose();
  }
}

/** A partial last line, then EOF: answered (unless blank) and a clean exit, never a crash or a hang. */
export async function partialLineThenEof(host: TestHost, bytes: Buffer): Promise<string[]> {
  const helper = RawHelper.start(host, helperEnv(REQUESTER_UID));
  const problems: string[] = [];
  await helper.write(bytes);
  helper.child.stdin.end();
  const exit = await Promise.race([helper.exited, new Promise<'hang'>((r) => setTimeout(() => r('hang'), 30_000))]);
  if (exit === 'hang') {
    helper.kill();
    return ['helper did not exit within 30 s after EOF'];
  }
  if (exit.code !== 0) problems.push(`helper exited with ${JSON.stringify(exit)}: ${helper.stderr.slice(-300)}`);
  const expected = splitLines(bytes).map(modelLine).filter((e) => e !== null).length;
  const got = helper.lines.filter((l) => !(l.message && 'event' in l.message));
  if (got.length !== expected) problems.push(`expected ${expected} responses before exit, got ${got.length}`);
  for (const l of got) problems.push(...shapeProblems(l.message, l.raw));
  return problems;
}

/** The soak's fuzzing: at least `cases` cases in batches, no shrinking, totals only. */
export async function runProtocolFuzz(cases: number, seed: number, log: (line: string) => void = () => {}): Promise<FuzzTotals> {
  const session = await FuzzSession.create();
  try {
    let round = 0;
    while (session.totals.casesFuzzed < cases) {
      for (const batch of fc.sample(batchArb(session.pool), { numRuns: 20, seed: seed + round++ })) {
        await session.runBatch(batch);
        if (session.totals.casesFuzzed >= cases) break;
      }
      log(`fuzz: ${session.totals.casesFuzzed} cases, ${session.totals.crashes} crashes, ${session.totals.hangs} hangs, ${session.totals.sideEffects} side effects, ${session.totals.protocolProblems} protocol problems`);
    }
    // Partial lines at EOF, each on a fresh helper.
    const partials = fc.sample(fc.oneof(caseArb(session.pool, { big: false }).map((c) => c.bytes()), fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a))), { numRuns: 20, seed });
    for (const bytes of partials) {
      const problems = await partialLineThenEof(session.host, bytes.subarray(0, bytes.lastIndexOf(10) === bytes.length - 1 ? -1 : undefined));
      session.totals.casesFuzzed++;
      if (problems.some((p) => p.includes('did not exit'))) session.totals.hangs++;
      else if (problems.some((p) => p.includes('exited with'))) session.totals.crashes++;
      else if (problems.length > 0) session.totals.protocolProblems += problems.length;
      if (problems.length > 0 && session.totals.details.length < 50) session.totals.details.push(`partial line ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}: ${problems.join('; ')}`);
    }
    const final = await session.sideEffects();
    session.totals.sideEffects += final.length;
    return session.totals;
  } finally {
    await session.dispose();
  }
}
