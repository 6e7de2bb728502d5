// Starts a console keeper as its own detached process, so it outlives whichever helper started the VM.

import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
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

/** Spawns the keeper detached and resolves once it serves viewers (its pid file names it). */
export async function startConsoleKeeperProcess(options: KeeperProcessOptions): Promise<KeeperProcess> {
  // A pid file left by an earlier keeper would look like readiness.
  await rm(options.pidFile, { force: true });
  const logFd = options.logFile === undefined ? null : openSync(options.logFile, 'a', 0o600);
  let child;
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

  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  child.once('error', (error) => (exited = error.message));

  const deadline = Date.now() + (options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  for (;;) {
    const pid = await readPidFile(options.pidFile);
    if (pid !== null) return { pid };
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
