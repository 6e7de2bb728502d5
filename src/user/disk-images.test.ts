import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDiskImage, DiskImageError, imageSnapshot, listImageSnapshots, parseDiskSize } from './disk-images';
import { BackingChainError, openLayerAsUser, readBackingChain, resolveBackingName } from '../host/backing-chain';

const execFileAsync = promisify(execFile);
let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'disk-images-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('parseDiskSize', () => {
  it('reads binary units, bytes and bare MiB', () => {
    expect(parseDiskSize('1G')).toBe(1024 ** 3);
    expect(parseDiskSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseDiskSize('512m')).toBe(512 * 1024 ** 2);
    expect(parseDiskSize('1048576B')).toBe(1048576);
    expect(parseDiskSize('20')).toBe(20 * 1024 ** 2);
  });

  it('refuses zero, negatives, garbage, partial sectors and more than 64T, naming the field', () => {
    expect(() => parseDiskSize('0', '--size')).toThrow('--size must be more than 0, not "0"');
    expect(() => parseDiskSize('-1G', '--size')).toThrow('--size must be a size such as 20G');
    expect(() => parseDiskSize('ten', 'Size')).toThrow('Size must be a size such as 20G');
    expect(() => parseDiskSize('100B')).toThrow('whole number of 512-byte sectors');
    expect(() => parseDiskSize('65T')).toThrow('must be at most 64T');
  });
});

describe('createDiskImage (real qemu-img)', () => {
  it('creates a qcow2 of the size asked, mode 0600, and never overwrites a file', async () => {
    const target = path.join(tmp, 'new.qcow2');
    expect(await createDiskImage({ path: target, format: 'qcow2', sizeBytes: 1024 ** 3 })).toEqual({ path: target, format: 'qcow2', sizeBytes: 1024 ** 3 });
    const info = JSON.parse((await execFileAsync('qemu-img', ['info', '--output=json', target])).stdout) as { format: string; 'virtual-size': number };
    expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 1024 ** 3 });
    expect((await stat(target)).mode & 0o777).toBe(0o600);
    await writeFile(path.join(tmp, 'keep.raw'), 'precious');
    await expect(createDiskImage({ path: path.join(tmp, 'keep.raw'), format: 'raw', sizeBytes: 1 << 20 })).rejects.toThrow(/already exists/);
  });

  it('makes an overlay that records its backing format, and reads its chain back layer by layer', async () => {
    const base = path.join(tmp, 'base.raw');
    await createDiskImage({ path: base, format: 'raw', sizeBytes: 1 << 20 });
    const mid = path.join(tmp, 'mid.qcow2');
    await createDiskImage({ path: mid, format: 'qcow2', backing: base });
    const top = path.join(tmp, 'top.qcow2');
    await createDiskImage({ path: top, format: 'qcow2', backing: mid });
    expect(await readBackingChain(top, openLayerAsUser)).toEqual([{ path: mid, format: 'qcow2' }, { path: base, format: 'raw' }]);
    await expect(createDiskImage({ path: path.join(tmp, 'x.raw'), format: 'raw', backing: base })).rejects.toThrow(DiskImageError);
  });

  it('refuses protocol backing names and chains that loop', async () => {
    expect(() => resolveBackingName('/a/top.qcow2', 'nbd://host/export')).toThrow(BackingChainError);
    expect(() => resolveBackingName('/a/top.qcow2', 'json:{"driver":"file"}')).toThrow('not a plain file name');
    expect(resolveBackingName('/a/b/top.qcow2', '../base.qcow2')).toBe('/a/base.qcow2');
    const a = path.join(tmp, 'a.qcow2');
    const b = path.join(tmp, 'b.qcow2');
    await createDiskImage({ path: b, format: 'qcow2', sizeBytes: 1 << 20 });
    await createDiskImage({ path: a, format: 'qcow2', backing: b });
    await execFileAsync('qemu-img', ['rebase', '-u', '-F', 'qcow2', '-b', a, b]);
    await expect(readBackingChain(a, openLayerAsUser)).rejects.toThrow(/loops back/);
  });

  it('takes, lists, reverts to and deletes internal snapshots of a stopped image', async () => {
    const image = path.join(tmp, 'snap.qcow2');
    await createDiskImage({ path: image, format: 'qcow2', sizeBytes: 1 << 20 });
    await imageSnapshot('take', image, 'before');
    expect((await listImageSnapshots(image)).map((s) => s.name)).toEqual(['before']);
    await imageSnapshot('revert', image, 'before');
    await imageSnapshot('delete', image, 'before');
    expect(await listImageSnapshots(image)).toEqual([]);
    await expect(imageSnapshot('revert', image, 'missing')).rejects.toThrow(/snapshot revert missing/);
  });
});
