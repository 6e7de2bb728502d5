import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PathRefusedError } from '../../host/path-policy';

/**
 * Runs svirt-label-tree (label-tree.c), the helper's one-walk tree relabeler: it is built next to the
 * helper bundle (dist/, or /usr/libexec/svirt-manager once installed), and found there only, never
 * through PATH or the environment: root runs it.
 */
export function labelTreeToolPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Beside the bundle that imports this module; run from the sources (tests), the build's output.
  const fromSources = here.endsWith(path.join('src', 'root', 'labels'));
  const tool = path.join(here, fromSources ? '../../../dist' : '.', 'svirt-label-tree');
  if (!existsSync(tool)) throw new Error(`svirt-label-tree is missing (looked for ${tool}): the helper was installed or built without it`);
  return tool;
}

/**
 * One of the tool's one-call modes, a syscall Node lacks made on the open file `fd`, which the tool gets
 * as its fd 3: `pipe-size` (F_SETPIPE_SZ) or `send-buffer` (SO_SNDBUF). Resolves with the size the kernel
 * gave. Not as its stdin: libuv sets a child's fds 0-2 blocking, and with them the caller's open file.
 */
export function resizeDescriptor(mode: 'pipe-size' | 'send-buffer', bytes: number, fd: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(labelTreeToolPath(), [mode, String(bytes)], { stdio: ['ignore', 'pipe', 'pipe', fd], env: {} });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += String(chunk)));
    child.stderr?.on('data', (chunk: Buffer) => (output += String(chunk)));
    child.on('error', reject);
    child.on('close', (code) => {
      const size = Number(output.trim());
      if (code === 0 && Number.isSafeInteger(size)) resolve(size);
      else reject(new Error(output.trim() || `svirt-label-tree ${mode} exited ${code}`));
    });
  });
}

export interface SkippedEntry {
  readonly path: string;
  /** symlink, special, mount (labeling); gone, replaced (restoring). */
  readonly reason: string;
}

export interface ToolRun {
  /** Files labeled or restored. */
  readonly count: number;
  readonly skipped: SkippedEntry[];
}

interface RunOptions {
  readonly args: readonly string[];
  /** The tree's root, opened and checked by the caller: the tool never resolves the root's path. */
  readonly rootFd: number;
  readonly rootPath: string;
  /** stdin: bytes to write, or an fd to read from. */
  readonly input: Buffer | number;
  /** fd 4 for `label`: the log, open for appending. */
  readonly logFd?: number;
  readonly onProgress?: (done: number) => void;
  /** Aborting ends the tool (SIGTERM): its log holds every change made, synced ahead of each. */
  readonly signal?: AbortSignal;
}

/** The walk was stopped by its requester; what it changed is still to be put back by the caller. */
export class WalkCancelledError extends Error {
  constructor() {
    super('the relabel was cancelled');
    this.name = 'WalkCancelledError';
  }
}

function absolute(rootPath: string, rel: string): string {
  return rel === '.' ? rootPath : path.join(rootPath, rel);
}

function run(options: RunOptions): Promise<ToolRun> {
  const stdio: (number | 'pipe' | 'ignore')[] = [typeof options.input === 'number' ? options.input : 'pipe', 'pipe', 'pipe', options.rootFd];
  if (options.logFd !== undefined) stdio.push(options.logFd);
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(new WalkCancelledError());
    const child = spawn(labelTreeToolPath(), [...options.args, '--root-path', options.rootPath], { stdio, env: {} });
    const cancel = () => child.kill('SIGTERM');
    options.signal?.addEventListener('abort', cancel, { once: true });
    let count = 0;
    let finished = false;
    const skipped: SkippedEntry[] = [];
    let rest = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        const [word, value = ''] = splitOnce(line);
        if (word === 'progress') {
          count += Number(value);
          options.onProgress?.(count);
        } else if (word === 'skipped') {
          const [reason, rel = ''] = splitOnce(value);
          skipped.push({ path: absolute(options.rootPath, rel), reason });
        } else if (word === 'done') finished = true;
        else if (word === 'restored') {
          count = Number(value);
          finished = true;
        }
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      options.signal?.removeEventListener('abort', cancel);
      if (options.signal?.aborted && (code !== 0 || !finished)) return reject(new WalkCancelledError());
      const refusal = /^refused\t([^\t]*)\t(.*)$/m.exec(stderr);
      if (code === 3 && refusal) reject(new PathRefusedError(refusal[1] as string, refusal[2] as string));
      else if (code !== 0 || !finished) reject(new Error(`svirt-label-tree failed (${signal ?? code}): ${stderr.trim() || 'no message'}`));
      else resolve({ count, skipped });
    });
    if (typeof options.input !== 'number') {
      // A tool that fails before reading its input closes the pipe: its exit status tells why, not EPIPE.
      child.stdin?.on('error', () => {});
      child.stdin?.end(options.input);
    }
  });
}

function splitOnce(text: string): [string, string?] {
  const space = text.indexOf(' ');
  return space < 0 ? [text] : [text.slice(0, space), text.slice(space + 1)];
}

export interface LabelTreeOptions {
  readonly rootFd: number;
  readonly rootPath: string;
  readonly logFd: number;
  readonly label: string;
  readonly uid: number;
  /** Root asks, or the whole tree lies in a shared pool the requester may use: files of any owner may be labeled. */
  readonly anyOwner: boolean;
  /** Shared pools the requester may use inside the tree, relative to its root: their files may belong to anyone. */
  readonly poolsInside: readonly string[];
  /** The image pool holding the tree, one the requester may use (the tool's system-tree rule gives way to it). */
  readonly pool?: string;
  /**
   * Originals of earlier relabels, kept instead of the label found now: lines "INO BIRTH HEX" (BIRTH
   * "-" when unknown, HEX as labelHex) or whole tree logs; for a file listed more than once the first wins.
   */
  readonly priors: Buffer;
  readonly onProgress?: (done: number) => void;
  readonly signal?: AbortSignal;
}

/** A label as the log writes it: the attribute's bytes (label + NUL, as libselinux writes) in hex; '-' for none. */
export const labelHex = (label: string | null): string => (label === null ? '-' : Buffer.from(`${label}\0`, 'utf8').toString('hex'));

/** Labels a tree in one walk, its log written and synced ahead of every change. */
export function labelTree(options: LabelTreeOptions): Promise<ToolRun> {
  const args = ['label', '--label', options.label, '--uid', String(options.uid)];
  if (options.anyOwner) args.push('--any-owner');
  for (const pool of options.poolsInside) args.push('--pool', pool);
  if (options.pool !== undefined) args.push('--in-pool', options.pool);
  return run({
    args, rootFd: options.rootFd, rootPath: options.rootPath, input: options.priors, logFd: options.logFd,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}),
  });
}

export interface RestoreTreeOptions {
  readonly rootFd: number;
  readonly rootPath: string;
  /** The tree's log, open for reading. */
  readonly logFd: number;
  /** `original`: what was there before the helper's first relabel; `before`: before this log's run (rollback). */
  readonly use: 'original' | 'before';
  /** Only the files at or below this path relative to the root. */
  readonly under?: string;
}

/** Puts back the labels a tree log remembers; files replaced or gone since are skipped. */
export function restoreTree(options: RestoreTreeOptions): Promise<ToolRun> {
  const args = ['restore', '--use', options.use];
  if (options.under !== undefined) args.push('--under', options.under);
  return run({ args, rootFd: options.rootFd, rootPath: options.rootPath, input: options.logFd });
}
