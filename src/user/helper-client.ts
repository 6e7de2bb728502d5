import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJsonLines } from '../contracts/json-lines';
import type { Args, ErrorCode, HelperMessage, HelperVerb, Result } from '../contracts/helper-protocol';

/** Where packages install the helper; the polkit action's exec.path names the same file. */
export const INSTALLED_HELPER_PATH = '/usr/libexec/svirt-manager/svirt-helper';
export const POLKIT_ACTION_ID = 'org.svirtmanager.helper';

export interface HelperLaunch {
  readonly command: string;
  readonly args: readonly string[];
  readonly via: 'direct' | 'pkexec' | 'launcher';
}

/**
 * Node flags the root helper (and the console keepers it starts) always run with. `--jitless`: V8's JIT maps
 * memory writable and executable, which SELinux checks as `execmem`; Debian denies it to unconfined_t by default
 * (`allow_execmem` off) and the product's policy module grants it to none of its domains. The interpreter alone
 * serves the helper's work (JSON, labels, process control). The installed wrapper (install-helper.sh) passes
 * the same flag.
 */
export const HELPER_NODE_FLAGS = ['--jitless'] as const;

/** The bundled helper next to the bundled CLI/main (dist/svirt-helper.js). */
export function bundledHelperPath(): string {
  const here = typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url);
  return path.join(path.dirname(here), path.basename(path.dirname(here)) === 'electron' ? '..' : '.', 'svirt-helper.js');
}

/**
 * How to start the root helper:
 * - `SVIRT_HELPER_LAUNCHER` (tests): an argv prefix such as `sudo -n`, split on spaces, never a shell;
 * - already root (CI, root shells): the bundled helper directly;
 * - otherwise `pkexec` on the installed helper, so polkit applies our action (auth_admin_keep).
 */
export function resolveHelperLaunch(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): HelperLaunch {
  const helperScript = env.SVIRT_HELPER_SCRIPT ?? bundledHelperPath();
  const launcher = env.SVIRT_HELPER_LAUNCHER?.trim();
  if (launcher) {
    const [command, ...prefix] = launcher.split(/\s+/);
    return { command: command as string, args: [...prefix, process.execPath, ...HELPER_NODE_FLAGS, helperScript], via: 'launcher' };
  }
  if (uid === 0) return { command: process.execPath, args: [...HELPER_NODE_FLAGS, helperScript], via: 'direct' };
  return { command: 'pkexec', args: ['--disable-internal-agent', INSTALLED_HELPER_PATH], via: 'pkexec' };
}

/** A request the helper refused or failed, with its protocol code. */
export class HelperRequestError extends Error {
  constructor(readonly code: ErrorCode | 'helper-exited', message: string) {
    super(message);
    this.name = 'HelperRequestError';
  }
}

/** pkexec's own exit codes, as messages a user understands. */
export function describeHelperExit(via: HelperLaunch['via'], code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  if (via === 'pkexec' && code === 126) return 'Authentication was dismissed: the helper needs an administrator\'s approval to manage VMs.';
  if (via === 'pkexec' && code === 127) return 'Not authorized: polkit refused to start the svirt helper (check the org.svirtmanager.helper action).';
  const detail = stderr.trim().split('\n').slice(-3).join(' ');
  return `the svirt helper exited (${signal ?? `code ${code}`})${detail ? `: ${detail}` : ''}`;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * The unprivileged side's handle on the root helper: one long-lived process per app session, spoken
 * to in JSON Lines over its stdin/stdout. Emits `event` (name, data) for progress and console bytes.
 */
export class HelperClient extends EventEmitter {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private stderr = '';
  private exitError: HelperRequestError | undefined;
  readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, readonly launch: HelperLaunch) {
    super();
    child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8192);
    });
    void readJsonLines(child.stdout, 64 * 1024 * 1024, (line) => {
      if (line.kind === 'line') this.onMessage(JSON.parse(line.text) as HelperMessage);
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.exitError = new HelperRequestError('helper-exited', describeHelperExit(launch.via, code, signal, this.stderr));
        for (const p of this.pending.values()) p.reject(this.exitError);
        this.pending.clear();
        this.emit('exit', this.exitError);
        resolve();
      });
    });
  }

  static start(launch: HelperLaunch = resolveHelperLaunch(), env: NodeJS.ProcessEnv = process.env): HelperClient {
    // Inside Electron, process.execPath is the app binary: it runs the helper script as plain Node.
    const runAsNode = launch.via !== 'pkexec' && process.versions.electron !== undefined ? { ELECTRON_RUN_AS_NODE: '1' } : {};
    const child = spawn(launch.command, [...launch.args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...env, ...runAsNode } });
    child.on('error', () => undefined); // surfaced through 'close' (ENOENT: pkexec missing)
    // A helper that is gone (pkexec dismissed, sudo refused) makes writes fail with EPIPE; that too is
    // reported through 'close', which rejects every pending request with helper-exited.
    child.stdin.on('error', () => undefined);
    return new HelperClient(child, launch);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private onMessage(message: HelperMessage): void {
    if ('event' in message) {
      this.emit('event', message.event, message.data);
      return;
    }
    const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (!pending) {
      if (!message.ok) this.emit('protocol-error', message.error);
      return;
    }
    this.pending.delete(message.id as number);
    if (message.ok) pending.resolve(message.result);
    else pending.reject(new HelperRequestError(message.error.code, message.error.message));
  }

  /** A verb of the protocol map (helper-protocol.ts), with its arguments and result types. */
  request<K extends HelperVerb>(verb: K, ...[args]: Args<K> extends Record<string, never> ? [args?: Args<K>] : [args: Args<K>]): Promise<Result<K>> {
    return this.requestUnchecked(verb, args ?? {}) as Promise<Result<K>>;
  }

  /**
   * Any verb and arguments, typed or not: for the tests that send what no well-behaved client would (unknown
   * verbs, wrong argument types) to check the helper refuses it. Product code uses `request`.
   */
  requestUnchecked(verb: string, args: Record<string, unknown> = {}): Promise<unknown> {
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ id, verb, args })}\n`);
    });
  }

  /** Writes raw bytes to the helper's stdin (protocol tests feed it malformed input this way). */
  writeRaw(data: string | Buffer): void {
    this.child.stdin.write(data);
  }

  /** Ends the session: the helper exits when its stdin closes; VMs keep running. */
  async close(): Promise<void> {
    this.child.stdin.end();
    await this.exited;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}
