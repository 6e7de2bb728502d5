import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';

/**
 * Reads and writes SELinux file labels as the `security.selinux` extended attribute with the attr
 * tools (getfattr/setfattr), never following symlinks. Values travel hex-encoded so that no label text
 * is ever interpreted, and are written with the trailing NUL that libselinux writes.
 */
const run = promisify(execFile);
const XATTR = 'security.selinux';
// Per process: fewer, larger batches amortize the fork of getfattr (a fork of a big process costs several
// ms). Its argv is bounded by count and by bytes, below ARG_MAX (2 MiB with the usual 8 MiB stack), and a
// batch the kernel refuses is halved. (Trees are labeled by svirt-label-tree, not here.)
const READ_BATCH = 10000;
const READ_BATCH_BYTES = 1024 * 1024;
// Reading many labels (the app's relabel preview) is bound by the tools' syscalls: that many at once.
const PARALLEL_TOOLS = Math.max(1, Math.min(4, availableParallelism()));

/**
 * In-process label calls for one file at a time, where a process offers them (the root helper registers
 * its svirt-label-tree server, root/labels/label-server.ts): without one, each call runs getfattr or
 * setfattr. Values are the attribute's bytes; `read` answers them in hex ("0x…"), as getfattr does.
 */
export interface LabelIo {
  read(target: string, follow: boolean): Promise<string | null>;
  write(target: string, value: Buffer): Promise<void>;
  /** False when the file had no label. */
  remove(target: string): Promise<boolean>;
}

let labelIo: LabelIo | null = null;

/** Routes this process's one-file label calls through `io` (null: the attr tools again). */
export function useLabelIo(io: LabelIo | null): void {
  labelIo = io;
}

const labelBytes = (label: string): Buffer => Buffer.from(`${label}\0`, 'utf8');

export function encodeLabel(label: string): string {
  return `0x${labelBytes(label).toString('hex')}`;
}

export function decodeLabel(hexValue: string): string {
  const bytes = Buffer.from(hexValue.replace(/^0x/, ''), 'hex');
  const end = bytes.length > 0 && bytes[bytes.length - 1] === 0 ? bytes.length - 1 : bytes.length;
  return bytes.subarray(0, end).toString('utf8');
}

// getfattr escapes special characters in file names as octal; backslash itself too.
function unescapeName(name: string): string {
  if (!name.includes('\\')) return name;
  return name.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses `getfattr -e hex -d/-n` output into path → label. */
export function parseGetfattrDump(output: string): Map<string, string> {
  const labels = new Map<string, string>();
  // A tree has few distinct labels: each hex value is decoded once.
  const decoded = new Map<string, string>();
  let current: string | undefined;
  for (const line of output.split('\n')) {
    if (line.startsWith('# file: ')) current = unescapeName(line.slice('# file: '.length));
    else if (current !== undefined && line.startsWith(`${XATTR}=`)) {
      const hex = line.slice(XATTR.length + 1);
      let label = decoded.get(hex);
      if (label === undefined) decoded.set(hex, (label = decodeLabel(hex)));
      labels.set(current, label);
    }
  }
  return labels;
}

/** Splits items into batches of at most `maxCount` items and (but for a single huge item) `maxBytes`. */
function batches<T>(items: readonly T[], maxCount: number, maxBytes = Infinity, bytes: (item: T) => number = () => 0): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const item of items) {
    const n = bytes(item);
    if (current.length > 0 && (current.length >= maxCount || size + n > maxBytes)) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(item);
    size += n;
  }
  if (current.length > 0) out.push(current);
  return out;
}

// The label tools running now and the batches waiting for a slot, across every caller in this process.
let toolsRunning = 0;
const toolQueue: (() => void)[] = [];

/** Runs `work` once fewer than PARALLEL_TOOLS tool processes run (a large read starts many batches at once). */
async function withToolSlot<T>(work: () => Promise<T>): Promise<T> {
  if (toolsRunning >= PARALLEL_TOOLS) await new Promise<void>((resolve) => toolQueue.push(resolve));
  else toolsRunning++;
  try {
    return await work();
  } finally {
    // The slot passes straight to the next waiter, if any.
    const next = toolQueue.shift();
    if (next) next();
    else toolsRunning--;
  }
}

/**
 * Runs every job, up to PARALLEL_TOOLS at a time and each in a tool slot (so at most that many of this
 * call's jobs wait for a slot); after a failure no further job starts, and the first error is thrown.
 */
async function runBatches<T>(jobs: readonly T[], work: (job: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < jobs.length) {
      const job = jobs[next++] as T;
      try {
        await withToolSlot(() => work(job));
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(PARALLEL_TOOLS, jobs.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

/** The label of one path, not following a final symlink; null when it has none. */
export async function readLabel(target: string): Promise<string | null> {
  const labels = await readLabels([target]);
  return labels.get(target) ?? null;
}

/** The label of an opened file through its /proc/PID/fd/N path (the magic link must be followed). */
export async function readLabelOfOpened(fdPath: string): Promise<string | null> {
  if (labelIo) return decodeOrNull(await labelIo.read(fdPath, true));
  try {
    const { stdout } = await run('getfattr', ['--absolute-names', '-e', 'hex', '-n', XATTR, '--', fdPath]);
    return parseGetfattrDump(stdout).get(fdPath) ?? null;
  } catch (err) {
    if (/No such attribute/.test(String((err as { stderr?: string }).stderr))) return null;
    throw err;
  }
}

function decodeOrNull(hexValue: string | null): string | null {
  return hexValue === null ? null : decodeLabel(hexValue);
}

/** `getfattr -h -e hex -n security.selinux` of some paths: its dump. */
async function getfattrDump(batch: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', XATTR, '--', ...batch], { maxBuffer: 256 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: unknown; code?: unknown };
    // Exit status 1 when some file lacks the attribute or is missing: what it did print is still valid.
    // Only an exit status: a getfattr that could not run or was killed printed nothing, and reading that as
    // "no label" would journal wrong originals.
    if (typeof e.code === 'number' && typeof e.stdout === 'string') return e.stdout;
    if (e.code === 'E2BIG' && batch.length > 1) {
      const half = Math.ceil(batch.length / 2);
      return `${await getfattrDump(batch.slice(0, half))}\n${await getfattrDump(batch.slice(half))}`;
    }
    throw err;
  }
}

/**
 * Labels of many paths in few processes, a few side by side; a path without a label (or missing) maps to
 * null. Calls may overlap: they share the slots.
 */
export async function readLabels(paths: readonly string[]): Promise<Map<string, string | null>> {
  // Filled in the callers' order, whichever batch finishes first.
  const result = new Map<string, string | null>(paths.map((p) => [p, null]));
  const jobs = batches(paths, READ_BATCH, READ_BATCH_BYTES, (p) => Buffer.byteLength(p) + 1);
  await runBatches(jobs, async (batch) => {
    const found = parseGetfattrDump(await getfattrDump(batch));
    for (const p of batch) {
      const label = found.get(p);
      if (label !== undefined) result.set(p, label);
    }
  });
  return result;
}

/** Sets one label; `target` is normally an /proc/PID/fd/N path from openRelabelTarget (exact inode). */
export async function writeLabel(target: string, label: string): Promise<void> {
  // Not -h: for an fd path the magic link must be followed to the opened file; plain paths were
  // already opened with O_NOFOLLOW by the caller.
  if (labelIo) return labelIo.write(target, labelBytes(label));
  await run('setfattr', ['-n', XATTR, '-v', encodeLabel(label), '--', target]);
}

/** Removes the label attribute (a file that had none before we labeled it). */
export async function removeLabel(target: string): Promise<void> {
  if (labelIo) {
    await labelIo.remove(target);
    return;
  }
  try {
    await run('setfattr', ['-x', XATTR, '--', target]);
  } catch (err) {
    // Already gone is the state asked for (a hard link's other entry, a tree restore, root by hand).
    if (/No such attribute/.test(String((err as { stderr?: string }).stderr))) return;
    throw err;
  }
}
