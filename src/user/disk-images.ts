import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { checkPathSyntax } from '../host/path-policy';
import { openLayerAsUser, readBackingChain, readImageHeader } from '../host/backing-chain';
import type { DiskFormat } from '../core/vm-definition';
import { describeCreateError } from '../core/user-words';

/**
 * Disk images as the user makes and changes them: created, snapshotted (while the VM is stopped) and
 * copied with qemu-img (or cp) run by this process, which is the user's own (the CLI or the app), never
 * by the root helper. So a new image belongs to the user, lands only where the user may write, and its
 * label is whatever the directory gives new files until a VM starts with it.
 */

export class DiskImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiskImageError';
  }
}

/** `$XDG_DATA_HOME/svirt-manager/images`, or `~/.local/share/svirt-manager/images`: where new VMs' disks go. */
export function defaultImageDirectory(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
  const dataHome = env.XDG_DATA_HOME;
  const base = dataHome !== undefined && path.isAbsolute(dataHome) ? dataHome : path.join(home, '.local', 'share');
  return path.join(base, 'svirt-manager', 'images');
}

/** 64 TiB: qcow2's own limit with 64 KiB clusters is larger, but nothing this app makes needs more. */
export const MAX_DISK_BYTES = 64 * 1024 ** 4;
const UNIT_BYTES: Record<string, number> = { '': 1024 ** 2, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };
const QEMU_IMG_TIMEOUT_MS = 120_000;
const execFileAsync = promisify(execFile);

/**
 * `20G`, `512M`, `1.5GiB`, `1048576B`; a bare number is MiB. Binary units (K = KiB). `field` names the
 * user's flag or form field in the message.
 */
export function parseDiskSize(text: string, field = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  const bytesUnit = /^\s*\d+\s*B\s*$/i.test(text);
  if (!m) throw new DiskImageError(`${field} must be a size such as 20G, 512M or 1.5GiB, not "${text}"`);
  const unit = bytesUnit ? 'B' : (m[2] ?? '').toUpperCase();
  const bytes = Math.round(Number(m[1]) * (UNIT_BYTES[unit] as number));
  if (!(bytes > 0)) throw new DiskImageError(`${field} must be more than 0, not "${text}"`);
  if (bytes > MAX_DISK_BYTES) throw new DiskImageError(`${field} must be at most 64T, not "${text}"`);
  if (bytes % 512 !== 0) throw new DiskImageError(`${field} must be a whole number of 512-byte sectors, not "${text}"`);
  return bytes;
}

export interface CreateDiskOptions {
  readonly path: string;
  readonly format: DiskFormat;
  /** Bytes; optional with a backing file (the overlay takes its size). */
  readonly sizeBytes?: number;
  /** A qcow2 overlay over this image (absolute), its format read from the image, recorded in the header. */
  readonly backing?: string;
  readonly qemuImg?: string;
}

async function qemuImg(args: readonly string[], what: string, binary = 'qemu-img'): Promise<string> {
  try {
    const { stdout } = await execFileAsync(binary, args, { timeout: QEMU_IMG_TIMEOUT_MS, maxBuffer: 8 << 20 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean };
    if (e.code === 'ENOENT') throw new DiskImageError(`${binary} was not found: install qemu-img (Debian: qemu-utils)`);
    if (e.killed) throw new DiskImageError(`${what}: qemu-img did not finish within ${QEMU_IMG_TIMEOUT_MS / 1000} s`);
    throw new DiskImageError(`${what}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/**
 * Creates a new image; an existing file is never overwritten (the name is claimed with O_EXCL first, as
 * qemu-img create itself would truncate it). A failed create leaves nothing behind.
 */
export async function createDiskImage(options: CreateDiskOptions): Promise<{ path: string; format: DiskFormat; sizeBytes: number }> {
  const target = path.resolve(options.path);
  checkPathSyntax(target);
  if (options.backing !== undefined && options.format !== 'qcow2') throw new DiskImageError('only a qcow2 image can have a backing file');
  let backingFormat: DiskFormat | undefined;
  let size = options.sizeBytes;
  if (options.backing !== undefined) {
    const backing = path.resolve(options.backing);
    const info = await qemuImg(['info', '--output=json', backing], `cannot read the backing file ${backing}`, options.qemuImg);
    const format = (JSON.parse(info) as { format?: string }).format;
    if (format !== 'raw' && format !== 'qcow2') throw new DiskImageError(`the backing file ${backing} is ${format ?? 'of unknown format'}; raw or qcow2 only`);
    backingFormat = format;
    // Its own chain must be one the helper will accept.
    if (format === 'qcow2') await readBackingChain(backing, openLayerAsUser, options.qemuImg).catch((e: Error) => { throw new DiskImageError(e.message); });
    size ??= (await readImageHeader(backing, format, backing, options.qemuImg)).virtualSize;
  }
  if (size === undefined) throw new DiskImageError('a size is needed for a disk without a backing file');
  let claimed;
  try {
    claimed = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new DiskImageError(`${target} already exists; choose another name (existing images are attached, not created)`);
    throw new DiskImageError(describeCreateError(target, err));
  }
  await claimed.close();
  const args = ['create', '-q', '-f', options.format];
  // The backing name is written as given (absolute): a relative name would be resolved against the overlay's directory.
  if (options.backing !== undefined) args.push('-b', path.resolve(options.backing), '-F', backingFormat as string);
  if (options.format === 'raw') args.push('-o', 'preallocation=off');
  args.push(target, String(size));
  try {
    await qemuImg(args, `cannot create ${target}`, options.qemuImg);
  } catch (err) {
    await rm(target, { force: true });
    throw err;
  }
  return { path: target, format: options.format, sizeBytes: size };
}

export interface DiskSnapshot {
  readonly id: string;
  readonly name: string;
  /** ISO 8601. */
  readonly date: string;
  readonly vmStateBytes: number;
}

/** `qemu-img snapshot -l` / QMP's image info snapshot records, in one shape. */
export function snapshotsFromInfo(list: readonly Record<string, unknown>[] | undefined): DiskSnapshot[] {
  return (list ?? []).map((s) => ({
    id: String(s.id),
    name: String(s.name),
    date: new Date(Number(s['date-sec']) * 1000 + Math.floor(Number(s['date-nsec'] ?? 0) / 1e6)).toISOString(),
    vmStateBytes: Number(s['vm-state-size'] ?? 0),
  }));
}

/** Internal snapshots of a stopped VM's qcow2 image, run as the user with qemu-img. */
export async function listImageSnapshots(image: string, binary?: string): Promise<DiskSnapshot[]> {
  const out = await qemuImg(['info', '-f', 'qcow2', '--output=json', image], `cannot read snapshots of ${image}`, binary);
  return snapshotsFromInfo((JSON.parse(out) as { snapshots?: Record<string, unknown>[] }).snapshots);
}

export type SnapshotOp = 'take' | 'revert' | 'delete';
const SNAPSHOT_FLAG: Record<SnapshotOp, string> = { take: '-c', revert: '-a', delete: '-d' };

export async function imageSnapshot(op: SnapshotOp, image: string, name: string, binary?: string): Promise<void> {
  // qemu-img snapshot has no -f: --image-opts names the format, so nothing is probed.
  const opts = `driver=qcow2,file.driver=file,file.filename=${image.replace(/,/g, ',,')}`;
  await qemuImg(['snapshot', '--image-opts', SNAPSHOT_FLAG[op], name, opts], `snapshot ${op} ${name} on ${image}`, binary);
}

/**
 * Copies an image for a clone: `cp --reflink=auto --sparse=always` (instant on btrfs/xfs, sparse
 * elsewhere). A qcow2 overlay's header keeps naming its backing file, so the copy shares the backing
 * read-only, as the original does. The copy is made with O_EXCL semantics (`--no-clobber` plus a check).
 */
export async function copyDiskImage(source: string, target: string): Promise<void> {
  checkPathSyntax(target);
  let claimed;
  try {
    claimed = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new DiskImageError(`${target} already exists; the clone's disks need new names`);
    throw new DiskImageError(describeCreateError(target, err));
  }
  await claimed.close();
  try {
    await execFileAsync('cp', ['--reflink=auto', '--sparse=always', '--', source, target], { timeout: 3_600_000 });
  } catch (err) {
    await rm(target, { force: true });
    throw new DiskImageError(`cannot copy ${source} to ${target}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
  }
}
