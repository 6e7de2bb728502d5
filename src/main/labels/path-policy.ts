import { constants, type Stats } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

/**
 * An image pool an administrator configured (helper.json): a directory whose files its users may use even
 * where the path rules would refuse them (under /var). Who may use it is said by user and group names; a
 * file in it that another user owns stays that user's unless the pool is shared. There are no default
 * pools: a directory other software keeps images in (/var/lib/libvirt/images) is nobody's to hand out.
 */
export interface ImagePool {
  readonly path: string;
  /** User names (or numeric uids) who may use the pool. */
  readonly users: readonly string[];
  /** Groups whose members (primary or supplementary) may use the pool. */
  readonly groups: readonly string[];
  /** Whether a file in it owned by one user may be used by every user of the pool. */
  readonly shared: boolean;
}

/**
 * Block devices an administrator lets users hand to VMs (helper.json `devices`): one device (any name of
 * it: /dev/sdb, /dev/vg0/lv1, /dev/disk/by-id/…, matched by device number when asked) or every logical
 * volume of one LVM volume group. Like pools, nothing is allowed by default: a device node is the host's.
 */
export interface DeviceGrant {
  readonly device?: string;
  readonly volumeGroup?: string;
  readonly users: readonly string[];
  readonly groups: readonly string[];
}

/** Which files the root helper may relabel, and for whom. */
export interface PathPolicyConfig {
  readonly pools: readonly ImagePool[];
  readonly devices: readonly DeviceGrant[];
}

export const DEFAULT_PATH_POLICY: PathPolicyConfig = {
  pools: [],
  devices: [],
};

/** The user a request acts for: their files only, their home directory never as a whole. */
export interface Requester {
  readonly uid: number;
  /** The requester's home directory, refused as a relabel target itself. */
  readonly home?: string;
  /** The requester's user name and the names of their groups (from /etc/passwd and /etc/group). */
  readonly name?: string;
  readonly groups?: readonly string[];
}

/** Whether the requester may use a pool or device: root, a listed user (by name or uid), or a member of a listed group. */
export function mayUsePool(pool: Pick<ImagePool, 'users' | 'groups'>, requester: Requester): boolean {
  if (requester.uid === 0) return true;
  if (pool.users.includes(String(requester.uid)) || (requester.name !== undefined && pool.users.includes(requester.name))) return true;
  return (requester.groups ?? []).some((g) => pool.groups.includes(g));
}

/** The pools the requester may use whose files of any owner they may use too. */
export function sharedPoolsOf(config: PathPolicyConfig, requester: Requester): ImagePool[] {
  return config.pools.filter((pool) => pool.shared && mayUsePool(pool, requester));
}

export class PathRefusedError extends Error {
  constructor(readonly target: string, reason: string) {
    super(`refusing ${JSON.stringify(target)}: ${reason}`);
    this.name = 'PathRefusedError';
  }
}

// Anything under these is the host's, never a VM's (go-selinux and libvirt refuse the same ground).
const SYSTEM_TREES = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/root', '/run', '/sbin', '/sys', '/usr', '/var'];
// These directories themselves would relabel everybody's files; what lies inside them is fine.
const SYSTEM_DIRS = ['/', '/home', '/tmp', '/media', '/mnt', '/opt', '/srv'];

/** Whether path `p` is `dir` or lies below it (both absolute and normal; a trailing slash is ignored). */
export function isUnder(p: string, dir: string): boolean {
  const d = dir.length > 1 ? dir.replace(/\/+$/, '') : dir;
  return p === d || p.startsWith(d === '/' ? '/' : `${d}/`);
}

/** Syntactic checks that need no file system: absolute, normalized, printable. */
export function checkPathSyntax(target: string): void {
  if (typeof target !== 'string' || target === '') throw new PathRefusedError(String(target), 'empty path');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(target)) throw new PathRefusedError(target, 'path contains control characters (newline, NUL, …)');
  if (!path.isAbsolute(target)) throw new PathRefusedError(target, 'path must be absolute');
  if (target.split('/').some((seg) => seg === '..' || seg === '.')) throw new PathRefusedError(target, 'path must not contain "." or ".." segments');
  if (path.normalize(target) !== target && `${path.normalize(target)}/` !== target) {
    throw new PathRefusedError(target, `path is not in normal form (${path.normalize(target)})`);
  }
}

/** Location rules: system trees and directories, pools, the requester's home. */
export function checkPathLocation(target: string, config: PathPolicyConfig, requester: Requester): void {
  const p = target.length > 1 ? target.replace(/\/+$/, '') : target;
  if (SYSTEM_DIRS.includes(p)) throw new PathRefusedError(target, `${p} itself is a system directory`);
  if (requester.home && p === requester.home.replace(/\/+$/, '')) throw new PathRefusedError(target, 'the home directory itself cannot be relabeled (files inside it can)');
  const inPool = config.pools.some((pool) => isUnder(p, pool.path) && p !== pool.path && mayUsePool(pool, requester));
  if (inPool) return;
  const tree = SYSTEM_TREES.find((dir) => isUnder(p, dir));
  if (tree) {
    const hint = tree === '/var' ? ' (outside the configured image pools)' : tree === '/dev' ? ' (a block device must be allowed in helper.json\'s devices)' : '';
    throw new PathRefusedError(target, `it lies under the system directory ${tree}${hint}`);
  }
}

/** A requester may relabel only their own files, but for files in a shared pool they may use (root: any file). */
export function checkOwner(target: string, ownerUid: number, config: PathPolicyConfig, requester: Requester): void {
  if (requester.uid === 0 || ownerUid === requester.uid) return;
  if (sharedPoolsOf(config, requester).some((pool) => isUnder(target, pool.path))) return;
  const pool = config.pools.find((p) => isUnder(target, p.path) && mayUsePool(p, requester));
  const why = pool ? ` (the pool ${pool.path} is not shared)` : '';
  throw new PathRefusedError(target, `it belongs to uid ${ownerUid}, not to the requesting user (uid ${requester.uid})${why}`);
}

export function fileKind(stat: Stats): 'file' | 'directory' | 'block' | 'char' | 'fifo' | 'socket' | 'symlink' | 'other' {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'directory';
  if (stat.isBlockDevice()) return 'block';
  if (stat.isCharacterDevice()) return 'char';
  if (stat.isFIFO()) return 'fifo';
  if (stat.isSocket()) return 'socket';
  if (stat.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** A file opened without following links, whose path was verified against the opened inode. */
export interface OpenedTarget {
  readonly path: string;
  readonly handle: FileHandle;
  readonly stat: Stats;
  /** /proc/<helper pid>/fd/<n>: tools given this path act on exactly the opened inode. */
  readonly fdPath: string;
}

export interface OpenOptions {
  readonly config: PathPolicyConfig;
  readonly requester: Requester;
  /** Directories are only accepted for tree relabels. */
  readonly allowDirectory?: boolean;
  /**
   * A file a VM uses (disk, ISO, kernel…): only a regular file. A FIFO or socket would make the launcher's
   * open or qemu's reads wait on another process; block devices need rules of their own.
   */
  readonly regularFileOnly?: boolean;
}

/**
 * Opens a relabel target safely: O_NOFOLLOW refuses a symlink at the last component, and the kernel's
 * own name for the opened file (/proc/self/fd) must equal the requested path, which refuses symlinks in
 * parent directories and any swap between check and use. Ownership and type are checked on the inode.
 */
export async function openRelabelTarget(target: string, options: OpenOptions): Promise<OpenedTarget> {
  checkPathSyntax(target);
  checkPathLocation(target, options.config, options.requester);
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a tty must not become ours.
    handle = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new PathRefusedError(target, 'it is a symbolic link');
    if (code === 'ENOENT') throw new PathRefusedError(target, 'no such file');
    if (code === 'ENXIO') throw new PathRefusedError(target, 'it is a socket or device without a reader');
    throw new PathRefusedError(target, (err as Error).message);
  }
  try {
    const fdPath = `/proc/${process.pid}/fd/${handle.fd}`;
    const actual = await readlink(fdPath);
    if (actual !== target.replace(/\/+$/, '') && !(target === '/' && actual === '/')) {
      throw new PathRefusedError(target, `it resolves to ${actual} (a symbolic link in a parent directory, or the path changed)`);
    }
    const stat = await handle.stat();
    const kind = fileKind(stat);
    if (options.regularFileOnly && kind !== 'file') {
      const what = { block: 'a block device', char: 'a character device', directory: 'a directory', fifo: 'a FIFO', socket: 'a socket', symlink: 'a symbolic link', other: 'a special file' }[kind];
      throw new PathRefusedError(target, `it is not a regular file but ${what} (VMs are given regular files only)`);
    }
    if (kind === 'directory' && !options.allowDirectory) throw new PathRefusedError(target, 'it is a directory (relabel a tree as shared or read-only content instead)');
    if (kind === 'char') throw new PathRefusedError(target, 'character devices are never given to VMs');
    // Block devices are opened by block-devices.ts, from /dev only; a node made elsewhere is never one.
    if (kind === 'block') throw new PathRefusedError(target, 'block device not in the allowed list');
    if (kind === 'other') throw new PathRefusedError(target, 'unsupported file type');
    checkOwner(target, stat.uid, options.config, options.requester);
    return { path: target, handle, stat, fdPath };
  } catch (err) {
    await handle.close();
    throw err;
  }
}
