import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * Reads and writes SELinux file labels as the `security.selinux` extended attribute with the attr
 * tools (getfattr/setfattr), never following symlinks. Values travel hex-encoded so that no label text
 * is ever interpreted, and are written with the trailing NUL that libselinux writes.
 */
const run = promisify(execFile);
const XATTR = 'security.selinux';
// Keeps each getfattr argv well under ARG_MAX even with long paths.
const READ_BATCH = 2000;
const WRITE_BATCH = 2000;

export function encodeLabel(label: string): string {
  return `0x${Buffer.from(`${label}\0`, 'utf8').toString('hex')}`;
}

export function decodeLabel(hexValue: string): string {
  const bytes = Buffer.from(hexValue.replace(/^0x/, ''), 'hex');
  const end = bytes.length > 0 && bytes[bytes.length - 1] === 0 ? bytes.length - 1 : bytes.length;
  return bytes.subarray(0, end).toString('utf8');
}

// getfattr and setfattr --restore escape special characters in file names as octal; backslash itself too.
function escapeName(name: string): string {
  return name.replace(/\\/g, '\\134');
}
function unescapeName(name: string): string {
  return name.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses `getfattr -e hex -d/-n` output into path → label. */
export function parseGetfattrDump(output: string): Map<string, string> {
  const labels = new Map<string, string>();
  let current: string | undefined;
  for (const line of output.split('\n')) {
    if (line.startsWith('# file: ')) current = unescapeName(line.slice('# file: '.length));
    else if (current !== undefined && line.startsWith(`${XATTR}=`)) labels.set(current, decodeLabel(line.slice(XATTR.length + 1)));
  }
  return labels;
}

/** The label of one path, not following a final symlink; null when it has none. */
export async function readLabel(target: string): Promise<string | null> {
  const labels = await readLabels([target]);
  return labels.get(target) ?? null;
}

/** The label of an opened file through its /proc/PID/fd/N path (the magic link must be followed). */
export async function readLabelOfOpened(fdPath: string): Promise<string | null> {
  try {
    const { stdout } = await run('getfattr', ['--absolute-names', '-e', 'hex', '-n', XATTR, '--', fdPath]);
    return parseGetfattrDump(stdout).get(fdPath) ?? null;
  } catch (err) {
    if (/No such attribute/.test(String((err as { stderr?: string }).stderr))) return null;
    throw err;
  }
}

/** Labels of many paths in few processes; a path without a label (or missing) maps to null. */
export async function readLabels(paths: readonly string[]): Promise<Map<string, string | null>> {
  const result = new Map<string, string | null>();
  for (let i = 0; i < paths.length; i += READ_BATCH) {
    const batch = paths.slice(i, i + READ_BATCH);
    let stdout: string;
    try {
      ({ stdout } = await run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', XATTR, '--', ...batch], { maxBuffer: 256 * 1024 * 1024 }));
    } catch (err) {
      // Exit status 1 when some file lacks the attribute or is missing: what it did print is still valid.
      const e = err as { stdout?: string; code?: number };
      if (typeof e.stdout !== 'string') throw err;
      stdout = e.stdout;
    }
    const found = parseGetfattrDump(stdout);
    for (const p of batch) result.set(p, found.get(p) ?? null);
  }
  return result;
}

/** Sets one label; `target` is normally an /proc/PID/fd/N path from openRelabelTarget (exact inode). */
export async function writeLabel(target: string, label: string): Promise<void> {
  // Not -h: for an fd path the magic link must be followed to the opened file; plain paths were
  // already opened with O_NOFOLLOW by the caller.
  await run('setfattr', ['-n', XATTR, '-v', encodeLabel(label), '--', target]);
}

export interface LabelWrite {
  readonly path: string;
  readonly label: string;
}

/**
 * Applies many labels through `setfattr -h --restore`, a few processes for a whole tree (the speed of
 * `chcon -R`), reporting progress after each batch. Symlinks themselves are labeled, never followed.
 */
export async function writeLabels(writes: readonly LabelWrite[], onProgress?: (done: number, total: number) => void): Promise<void> {
  for (let i = 0; i < writes.length; i += WRITE_BATCH) {
    const batch = writes.slice(i, i + WRITE_BATCH);
    const script = batch.map((w) => `# file: ${escapeName(w.path)}\n${XATTR}=${encodeLabel(w.label)}\n`).join('\n');
    await new Promise<void>((resolve, reject) => {
      const child = spawn('setfattr', ['-h', '--restore=-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`setfattr failed (${code}): ${stderr.trim()}`))));
      child.stdin.end(script);
    });
    onProgress?.(Math.min(i + WRITE_BATCH, writes.length), writes.length);
  }
}

/** Removes the label attribute (a file that had none before we labeled it). */
export async function removeLabel(target: string): Promise<void> {
  await run('setfattr', ['-x', XATTR, '--', target]);
}
