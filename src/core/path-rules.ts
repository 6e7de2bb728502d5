/**
 * The path rules of the root helper, as pure functions of a path string, the admin's configuration and the
 * requester: which paths are well formed, which locations are the host's, and whose files a requester may
 * relabel. The file-system half (opening without following links, checking the opened inode) is
 * src/host/path-policy.ts; the tree relabeler in native/label-tree applies the same rules.
 */
import * as path from 'node:path';
import rules from './path-rules.json';

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

// The lists, the reasons and the cases that test them live in path-rules.json, which the tree relabeler
// (native/label-tree) compiles in too: one set of rules for both. Anything under a system tree is the
// host's, never a VM's (go-selinux and libvirt refuse the same ground); a system directory itself would
// relabel everybody's files, though what lies inside it is fine.
const SYSTEM_TREES: readonly string[] = rules.systemTrees;
const SYSTEM_DIRS: readonly string[] = rules.systemDirs;
const TREE_HINTS: Readonly<Record<string, string>> = rules.systemTreeHints;
const CONTROL_CHARS = new RegExp(`[${rules.controlCharacters.map(([lo, hi]) => `${unicode(lo as number)}-${unicode(hi as number)}`).join('')}]`, 'u');

function unicode(code: number): string {
  return `\\u{${code.toString(16)}}`;
}

type Reason = keyof typeof rules.reasons;

/** The refusal `reason` of path-rules.json with its {placeholders} filled in. */
export function reasonText(reason: Reason, values: Readonly<Record<string, string | number>> = {}): string {
  return rules.reasons[reason].replace(/\{(\w+)\}/g, (_, name: string) => String(values[name] ?? ''));
}

/** Why a file of this kind may not be relabeled (files and directories may: undefined). */
export function kindRefusal(kind: string): string | undefined {
  return Object.hasOwn(rules.kinds, kind) ? (rules.kinds as Record<string, string>)[kind] : undefined;
}

/** Whether path `p` is `dir` or lies below it (both absolute and normal; a trailing slash is ignored). */
export function isUnder(p: string, dir: string): boolean {
  const d = dir.length > 1 ? dir.replace(/\/+$/, '') : dir;
  return p === d || p.startsWith(d === '/' ? '/' : `${d}/`);
}

/** Syntactic checks that need no file system: absolute, normalized, printable. */
export function checkPathSyntax(target: string): void {
  if (typeof target !== 'string' || target === '') throw new PathRefusedError(String(target), reasonText('empty'));
  if (CONTROL_CHARS.test(target)) throw new PathRefusedError(target, reasonText('controlCharacters'));
  if (!path.isAbsolute(target)) throw new PathRefusedError(target, reasonText('notAbsolute'));
  if (target.split('/').some((seg) => seg === '..' || seg === '.')) throw new PathRefusedError(target, reasonText('dotSegments'));
  if (path.normalize(target) !== target && `${path.normalize(target)}/` !== target) {
    throw new PathRefusedError(target, reasonText('notNormal', { normal: path.normalize(target) }));
  }
}

/** Location rules: system trees and directories, pools, the requester's home. */
export function checkPathLocation(target: string, config: PathPolicyConfig, requester: Requester): void {
  const p = target.length > 1 ? target.replace(/\/+$/, '') : target;
  if (SYSTEM_DIRS.includes(p)) throw new PathRefusedError(target, reasonText('systemDir', { path: p }));
  if (requester.home && p === requester.home.replace(/\/+$/, '')) throw new PathRefusedError(target, 'the home directory itself cannot be relabeled (files inside it can)');
  const pool = poolHolding(p, config, requester);
  if (pool && p !== pool.path.replace(/\/+$/, '')) return;
  const tree = SYSTEM_TREES.find((dir) => isUnder(p, dir));
  if (tree) throw new PathRefusedError(target, reasonText('systemTree', { tree, hint: TREE_HINTS[tree] ?? '' }));
}

/** A requester may relabel only their own files, but for files in a shared pool they may use (root: any file). */
export function checkOwner(target: string, ownerUid: number, config: PathPolicyConfig, requester: Requester): void {
  if (requester.uid === 0 || ownerUid === requester.uid) return;
  if (sharedPoolsOf(config, requester).some((pool) => isUnder(target, pool.path))) return;
  const pool = poolHolding(target, config, requester);
  const why = pool ? reasonText('poolNotShared', { pool: pool.path }) : '';
  throw new PathRefusedError(target, reasonText('notOwner', { owner: ownerUid, requester: requester.uid }) + why);
}

/**
 * The pool the requester may use that holds `target`: one it lies strictly inside first (that one lifts
 * the system-tree rule), else one it is the directory of.
 */
export function poolHolding(target: string, config: PathPolicyConfig, requester: Requester): ImagePool | undefined {
  const usable = config.pools.filter((pool) => isUnder(target, pool.path) && mayUsePool(pool, requester));
  return usable.find((pool) => target.replace(/\/+$/, '') !== pool.path.replace(/\/+$/, '')) ?? usable[0];
}

/**
 * What svirt-label-tree is told about the tree it labels at `root`, from the same rules: whether files of
 * any owner may be labeled (root asks, or a shared pool the requester may use holds the tree), the shared
 * pools inside the tree (relative to it), and the pool holding the tree (its system-tree rule gives way to it).
 */
export function treeGrants(root: string, config: PathPolicyConfig, requester: Requester): { anyOwner: boolean; poolsInside: string[]; pool?: string } {
  const shared = sharedPoolsOf(config, requester);
  const pool = poolHolding(root, config, requester);
  return {
    anyOwner: requester.uid === 0 || shared.some((p) => isUnder(root, p.path)),
    poolsInside: shared.filter((p) => p.path !== root && isUnder(p.path, root)).map((p) => path.relative(root, p.path)),
    ...(pool ? { pool: pool.path } : {}),
  };
}
