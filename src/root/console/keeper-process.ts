// Starts a console keeper as its own detached process, so it outlives whichever helper started the VM.
//
// A keeper is a Node process, and Node's own start-up (more so without a JIT, under load) is the longest
// part of a VM start after qemu's: qemu stays paused until its keeper serves. So a helper that enabled
// spares (enableSpareKeepers) keeps one keeper started ahead, loaded and waiting on a pipe for its VM's
// arguments: a VM start hands them over, and once that keeper serves the next spare starts. A spare whose
// helper ends reads end-of-file and exits; the first start of a helper's life starts its keeper afresh.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

export interface KeeperProcessOptions {
  /** Program to run, e.g. process.execPath. */
  command: string;
  /**
   * Arguments before the keeper's own: the script that runs keeper-main, e.g. ['/usr/libexec/svirt-helper.js']
   * or ['--import', 'tsx', 'src/root/console/keeper-main.ts']. `--console-keeper` and the options follow.
   */
  argsPrefix: readonly string[];
  /** qemu's serial line (serial-line.ts). */
  serialPath: string;
  viewerSocketPath: string;
  /** The keeper writes its pid here once it serves viewers, and removes it when it ends. */
  pidFile: string;
  ringBytes?: number;
  /** Appends the keeper's stdout and stderr here; without it they go nowhere. */
  logFile?: string;
  /**
   * How long to wait for a keeper that is alive but does not serve viewers yet. Default 3 minutes: the
   * keeper bounds its own wait for qemu's serial line (10 s) and exits when that fails, so the wait normally
   * ends with readiness or the keeper's exit; the cap only catches a wedged keeper. A short timer killed
   * keepers that were progressing: Node's start alone takes 15 s and more with --jitless under TCG.
   */
  readyTimeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Aborting while the keeper is not ready yet ends it (the start it was for failed). */
  signal?: AbortSignal;
  /**
   * With spares enabled, the next spare starts once this settles (a VM start: once qemu runs), not while
   * qemu starts: Node's own start-up takes a core's worth of time. Default: once this keeper serves.
   */
  nextSpareAfter?: Promise<unknown>;
}

export interface KeeperProcess {
  /** The keeper's own pid, as it wrote it to pidFile. */
  pid: number;
}

const DEFAULT_READY_TIMEOUT_MS = 180_000;
// The keeper's readiness is on the start's critical path (qemu stays paused until it serves): looked for often.
const READY_POLL_MS = 5;

/** What keeper-main needs, as parsed from its command line. */
export interface KeeperArguments {
  serialPath: string;
  viewerSocketPath: string;
  pidFile: string;
  ringBytes?: number;
}

/** The keeper's command line: the prefix, then `--console-keeper --serial S --viewer V --pid-file P [--ring N]`. */
export function keeperArguments(options: KeeperProcessOptions): string[] {
  return [
    ...options.argsPrefix,
    '--console-keeper',
    '--serial', options.serialPath,
    '--viewer', options.viewerSocketPath,
    '--pid-file', options.pidFile,
    ...(options.ringBytes === undefined ? [] : ['--ring', String(options.ringBytes)]),
  ];
}

/** Parses the arguments keeperArguments() puts after the prefix (a leading --console-keeper is optional). */
export function parseKeeperArguments(argv: readonly string[]): KeeperArguments {
  const args = argv[0] === '--console-keeper' ? argv.slice(1) : argv;
  const values = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i];
    const value = args[i + 1];
    if (name === undefined || !['--serial', '--viewer', '--pid-file', '--ring'].includes(name)) throw new Error(`unknown argument ${name}`);
    if (value === undefined || value.startsWith('--')) throw new Error(`${name} needs a value`);
    if (values.has(name)) throw new Error(`${name} given twice`);
    values.set(name, value);
  }
  const required = (name: string): string => {
    const value = values.get(name);
    // Relative paths would depend on the keeper's cwd, which the starter may not control.
    if (value === undefined || !value.startsWith('/')) throw new Error(`${name} needs an absolute path`);
    return value;
  };
  const ring = values.get('--ring');
  const ringBytes = ring === undefined ? undefined : Number(ring);
  if (ringBytes !== undefined && (!/^\d+$/.test(ring ?? '') || !Number.isSafeInteger(ringBytes) || ringBytes < 1)) throw new Error(`--ring needs a positive byte count, got ${ring}`);
  return {
    serialPath: required('--serial'),
    viewerSocketPath: required('--viewer'),
    pidFile: required('--pid-file'),
    ...(ringBytes === undefined ? {} : { ringBytes }),
  };
}

/** The argument that makes a keeper a spare: it waits on stdin for one SpareAssignment line. */
export const SPARE_KEEPER_ARG = '--spare';

/** What a spare keeper is handed: the arguments after the prefix (as keeperArguments) and its log file. */
export interface SpareAssignment {
  argv: string[];
  logFile?: string;
}

type SpareKey = Pick<KeeperProcessOptions, 'command' | 'argsPrefix'>;
type SpareOptions = SpareKey & Pick<KeeperProcessOptions, 'cwd' | 'env'>;

/** Spares are kept for the programs enabled here (command and prefix), one each, with the cwd and environment it was started with. */
const spareKeys = new Set<string>();
const spares = new Map<string, { child: ChildProcess; started: string }>();

const keyOf = (options: SpareKey): string => JSON.stringify([options.command, options.argsPrefix]);
const startedWith = (options: SpareOptions): string => JSON.stringify([options.cwd ?? null, options.env ?? null]);

/** From now on, every keeper of this program started here leaves a spare started ahead for the next one. */
export function enableSpareKeepers(options: SpareKey): void {
  spareKeys.add(keyOf(options));
}

/** No more spares; the waiting ones read end-of-file and exit (tests; a helper simply exits). */
export function disableSpareKeepers(): void {
  spareKeys.clear();
  for (const { child } of spares.values()) child.stdin?.end();
  spares.clear();
}

function startSpare(key: string, options: SpareOptions): void {
  const child = spawn(options.command, [...options.argsPrefix, '--console-keeper', SPARE_KEEPER_ARG], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const gone = () => {
    if (spares.get(key)?.child === child) spares.delete(key);
  };
  child.once('exit', gone);
  child.once('error', gone);
  child.stdin?.on('error', () => {});
  // It loads while a VM's guest boots: at the lowest priority, so Node's start-up takes only the CPU the
  // guest leaves. It is given the usual priority back once it has a VM (takeSpare).
  setPriority(child.pid, os.constants.priority.PRIORITY_LOW);
  // Neither the spare nor its pipe keeps the starter alive.
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  spares.set(key, { child, started: startedWith(options) });
}

/** The waiting spare for these options, taken, or undefined. */
function takeSpare(options: KeeperProcessOptions): ChildProcess | undefined {
  const key = keyOf(options);
  if (!spareKeys.has(key)) return undefined;
  const spare = spares.get(key);
  spares.delete(key);
  if (!spare) return undefined;
  const { child } = spare;
  const usable = spare.started === startedWith(options) && child.exitCode === null && child.signalCode === null && child.stdin?.writable === true;
  // One started for another cwd or environment reads end-of-file and exits.
  if (!usable) child.stdin?.end();
  else setPriority(child.pid, os.constants.priority.PRIORITY_NORMAL);
  return usable ? child : undefined;
}

/**
 * Every thread of the process (a Linux priority is a thread's; Node's own threads take the main thread's
 * when they start), and its session's scheduling group: a keeper is detached, so under autogroup scheduling
 * (most desktop kernels) its session is a group of its own that shares the CPU with qemu's group by the
 * group's nice, whatever its threads' nice is. Best effort: raising one back needs root (the helper is);
 * without it the keeper runs nicer.
 */
function setPriority(pid: number | undefined, priority: number): void {
  if (pid === undefined) return;
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(priority));
  } catch {
    // a kernel without autogroup, not permitted, or gone
  }
  let threads: number[];
  try {
    threads = readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    threads = [pid];
  }
  for (const thread of threads) {
    try {
      os.setPriority(thread, priority);
    } catch {
      // not permitted, or gone
    }
  }
}

/** Spawns the keeper detached and resolves once it serves viewers (its pid file names it). */
export async function startConsoleKeeperProcess(options: KeeperProcessOptions): Promise<KeeperProcess> {
  // A pid file left by an earlier keeper would look like readiness.
  await rm(options.pidFile, { force: true });
  let child = takeSpare(options);
  if (child) {
    const assignment: SpareAssignment = {
      argv: keeperArguments(options).slice(options.argsPrefix.length),
      ...(options.logFile === undefined ? {} : { logFile: options.logFile }),
    };
    child.stdin?.end(`${JSON.stringify(assignment)}\n`);
  } else {
    const logFd = options.logFile === undefined ? null : openSync(options.logFile, 'a', 0o600);
    try {
      child = spawn(options.command, keeperArguments(options), {
        // Its own session: no signal meant for the starter's process group or terminal reaches it.
        detached: true,
        stdio: ['ignore', logFd ?? 'ignore', logFd ?? 'ignore'],
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        ...(options.env === undefined ? {} : { env: options.env }),
      });
    } finally {
      // The child has its own copy of the descriptor.
      if (logFd !== null) closeSync(logFd);
    }
    // The starter may exit (or be killed) whenever it likes; the keeper is not its to wait for.
    child.unref();
  }

  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  child.once('error', (error) => (exited = error.message));
  // A spare may have ended just before it was handed its VM.
  if (child.exitCode !== null || child.signalCode !== null) exited = child.signalCode ?? `exit code ${child.exitCode}`;

  const deadline = Date.now() + (options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  for (;;) {
    const pid = await readPidFile(options.pidFile);
    if (pid !== null) {
      // The next spare starts once this keeper serves, not alongside it on the start's critical path, and
      // after what the starter waits for: spawning Node blocks this process for milliseconds.
      const key = keyOf(options);
      const startNextSpare = () => setImmediate(() => {
        if (spareKeys.has(key) && !spares.has(key)) startSpare(key, options);
      });
      void (options.nextSpareAfter ?? Promise.resolve()).then(startNextSpare, startNextSpare);
      return { pid };
    }
    if (exited !== null) throw new Error(`console keeper did not start (${exited})${options.logFile ? `; see ${options.logFile}` : ''}`);
    if (options.signal?.aborted) {
      if (child.pid !== undefined) child.kill('SIGTERM');
      throw new Error('console keeper start abandoned');
    }
    if (Date.now() >= deadline) {
      if (child.pid !== undefined) child.kill('SIGTERM');
      throw new Error(`console keeper did not serve ${options.viewerSocketPath} within ${Math.round((options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS) / 1000)} s${options.logFile ? `; see ${options.logFile}` : ''}`);
    }
    await sleep(READY_POLL_MS);
  }
}

export async function readPidFile(pidFile: string): Promise<number | null> {
  const text = await readFile(pidFile, 'utf8').catch(() => null);
  if (text === null || !/^\d+\n$/.test(text)) return null;
  return Number(text.trim());
}
