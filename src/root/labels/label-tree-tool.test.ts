import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labelTreeToolPath, restoreTree } from './label-tree-tool';

const run = promisify(execFile);
const ORIGINAL = 'unconfined_u:object_r:user_home_t:s0';
const SHARED = 'system_u:object_r:svirt_image_t:s0';

let dir: string;
let root: string;
// Many small directories: a worker syncs and labels every 256 directories, so the first progress
// report comes early in the walk.
const DIRS = 1000;
const FILES = 20_000;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-label-tree-'));
  root = path.join(dir, 'tree');
  for (let d = 0; d < DIRS; d++) await mkdir(path.join(root, `d${d}`), { recursive: true });
  for (let i = 0; i < FILES; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, j) => writeFile(path.join(root, `d${(i + j) % DIRS}`, `f${i + j}`), '')));
  }
  await run('chcon', ['-R', ORIGINAL, root]);
}, 120_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** inode → label of every file and directory under the root (getfattr -R, one process). */
async function labelsByInode(): Promise<Map<number, string>> {
  const { stdout: inodes } = await run('find', [root, '-printf', '%i %p\n'], { maxBuffer: 64 << 20 });
  const { stdout: dump } = await run('getfattr', ['-R', '-h', '--absolute-names', '-n', 'security.selinux', root], { maxBuffer: 64 << 20 });
  const byPath = new Map<string, string>();
  let current = '';
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) current = line.slice(8);
    else if (line.startsWith('security.selinux=')) byPath.set(current, JSON.parse(line.slice(17)) as string);
  }
  const out = new Map<number, string>();
  for (const line of inodes.trim().split('\n')) {
    const space = line.indexOf(' ');
    out.set(Number(line.slice(0, space)), byPath.get(line.slice(space + 1)) ?? '(none)');
  }
  return out;
}

describe('svirt-label-tree', () => {
  it('killed in the middle of a walk, has logged every file it labeled; the log restores them all', async () => {
    const logPath = path.join(dir, 'killed.log');
    const rootHandle = await open(root, constants.O_RDONLY | constants.O_DIRECTORY);
    const log = await open(logPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND, 0o600);
    const child = spawn(labelTreeToolPath(), ['label', '--label', SHARED, '--uid', '0', '--root-path', root], {
      stdio: ['pipe', 'pipe', 'pipe', rootHandle.fd, log.fd],
    });
    const { stdin, stdout } = child;
    if (!stdin || !stdout) throw new Error('spawned without pipes');
    stdin.end();
    // Killed as soon as it reports labels written (its workers too: they are its children).
    await once(stdout, 'data');
    const { stdout: workers } = await run('pgrep', ['-P', String(child.pid)]).catch(() => ({ stdout: '' }));
    child.kill('SIGKILL');
    for (const pid of workers.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    await once(child, 'close');
    await log.close();

    const labels = await labelsByInode();
    const labeled = [...labels].filter(([, label]) => label === SHARED).map(([ino]) => ino);
    const text = await readFile(logPath, 'utf8');
    // A torn last line (killed mid-write) is not a record.
    const records = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
    const logged = new Set(records.map((l) => Number(l.split(' ')[0])));
    console.log(`killed after labeling ${labeled.length} of ${labels.size}; ${records.length} records`);
    expect(labeled.length).toBeGreaterThan(0);
    expect(labeled.length).toBeLessThan(labels.size); // it was stopped part-way
    expect(labeled.filter((ino) => !logged.has(ino))).toEqual([]);

    const readBack = await open(logPath, constants.O_RDONLY);
    try {
      const restored = await restoreTree({ rootFd: rootHandle.fd, rootPath: root, logFd: readBack.fd, use: 'original' });
      expect(restored.count).toBeGreaterThanOrEqual(labeled.length);
    } finally {
      await readBack.close();
      await rootHandle.close();
    }
    expect([...(await labelsByInode()).values()].filter((l) => l !== ORIGINAL)).toEqual([]);
  }, 120_000);
});
