import { execFile } from 'node:child_process';
import { lstat, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabelServer } from './label-server';

const run = promisify(execFile);
const IMAGE = 'system_u:object_r:svirt_image_t:s0:c1,c2';
const bytes = (label: string): Buffer => Buffer.from(`${label}\0`);

/** The label as getfattr reads it (not through the server under test). */
async function getfattr(p: string): Promise<string | null> {
  const { stdout } = await run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', 'security.selinux', '--', p]).catch(() => ({ stdout: '' }));
  const hex = /security\.selinux=0x([0-9a-f]+)/.exec(stdout)?.[1];
  return hex === undefined ? null : Buffer.from(hex, 'hex').toString().replace(/\0$/, '');
}

describe('the label server (svirt-label-tree serve)', () => {
  let dir: string;
  let server: LabelServer;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'label-server-'));
    server = new LabelServer();
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a label getfattr reads back, reads it, and removes it (saying whether there was one)', async () => {
    const file = path.join(dir, 'disk.img');
    await writeFile(file, '');
    expect(await server.read(file, false)).toBeNull();
    await server.write(file, bytes(IMAGE));
    expect(await getfattr(file)).toBe(IMAGE);
    expect(await server.read(file, true)).toBe(`0x${bytes(IMAGE).toString('hex')}`);
    expect(await server.remove(file)).toBe(true);
    expect(await getfattr(file)).toBeNull();
    expect(await server.remove(file)).toBe(false);
  });

  it('follows an opened file\'s /proc fd link on get and set, and never a symlink on lget', async () => {
    const file = path.join(dir, 'opened.img');
    await writeFile(file, '');
    const handle = await open(file, 'r');
    try {
      const fdPath = `/proc/${process.pid}/fd/${handle.fd}`;
      await server.write(fdPath, bytes(IMAGE));
      expect(await getfattr(file)).toBe(IMAGE);
      expect(await server.read(fdPath, true)).toBe(`0x${bytes(IMAGE).toString('hex')}`);
    } finally {
      await handle.close();
    }
    const link = path.join(dir, 'link');
    await symlink(file, link);
    // A symlink itself carries no label on this file system: lget answers for the link, not the file.
    expect(await server.read(link, false)).not.toBe(`0x${bytes(IMAGE).toString('hex')}`);
  });

  it('answers every call of a burst in order', async () => {
    const files = Array.from({ length: 40 }, (_v, i) => path.join(dir, `burst-${i}`));
    await Promise.all(files.map((f) => writeFile(f, '')));
    await Promise.all(files.map((f, i) => server.write(f, bytes(`${IMAGE.slice(0, -5)}c${i},c${i + 100}`))));
    const read = await Promise.all(files.map((f) => server.read(f, false)));
    expect(read).toEqual(files.map((_f, i) => `0x${bytes(`${IMAGE.slice(0, -5)}c${i},c${i + 100}`).toString('hex')}`));
  });

  it('fails a call on a missing file with its errno code and the file named', async () => {
    const missing = path.join(dir, 'missing');
    await expect(server.write(missing, bytes(IMAGE))).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringContaining(missing) });
    await expect(server.read(missing, true)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('makes a FIFO of mode 0600, and refuses one where a file exists', async () => {
    const fifo = path.join(dir, 'ttyS0.out');
    await server.mkfifo(fifo);
    const st = await lstat(fifo);
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    await expect(server.mkfifo(fifo)).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('starts again after its process died: calls waiting then fail, later calls are answered', async () => {
    const file = path.join(dir, 'again.img');
    await writeFile(file, '');
    // A request the tool refuses as malformed makes it exit, as a crash would.
    const own = new LabelServer();
    const refused = own.write(path.join(dir, 'x'), Buffer.alloc(0));
    await expect(refused).rejects.toThrow(/svirt-label-tree serve ended/);
    await own.write(file, bytes(IMAGE));
    expect(await getfattr(file)).toBe(IMAGE);
    own.close();
  });
});
