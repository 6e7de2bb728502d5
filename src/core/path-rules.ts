/**
 * The path rules of the root helper, as pure functions of a path string, the admin's configuration and the
 * requester: which paths are well formed, which locations are the host's, and whose files a requester may
 * relabel. The file-system half (opening without following links, checking the opened inode) is
 * src/host/path-policy.ts; the tree relabeler in native/label-tree applies the same rules.
 */
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
