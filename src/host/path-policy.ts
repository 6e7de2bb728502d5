import { constants, type Stats } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import { checkOwner, checkPathLocation, checkPathSyntax, kindRefusal, PathRefusedError, type PathPolicyConfig, type Requester } from '../core/path-rules';

export * from '../core/path-rules';

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
    if (code === 'ELOOP') throw new PathRefusedError(target, kindRefusal('symlink') as string);
    if (code === 'ENOENT') throw new PathRefusedError(target, 'no such file');
    if (code === 'ENXIO') throw new PathRefusedError(target, kindRefusal('socket') as string);
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
    // Block devices are opened by block-devices.ts, from /dev only; a node made elsewhere is never one.
    // A FIFO is no content either: svirt-label-tree refuses it as a tree's root by the same table.
    const refusal = kindRefusal(kind);
    if (refusal) throw new PathRefusedError(target, refusal);
    checkOwner(target, stat.uid, options.config, options.requester);
    return { path: target, handle, stat, fdPath };
  } catch (err) {
    await handle.close();
    throw err;
  }
}
