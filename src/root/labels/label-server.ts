// One file's label (and the serial line's FIFOs) without a process per call. Node has no xattr or mkfifo
// call, and each getfattr/setfattr/mkfifo the helper ran was a fork of the helper (a large process): a VM
// start ran several, milliseconds each. svirt-label-tree, already built beside the helper for tree
// relabels, answers these one at a time in its `serve` mode: the helper starts it once, at its first use,
// and talks to it over a pipe (label-tree.c's do_serve has the line format). A server that dies fails the
// calls that were waiting and is started again at the next call.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { useLabelIo, type LabelIo } from '../../security/selinux/file-labels';
import { labelTreeToolPath } from './label-tree-tool';

interface Waiter {
  resolve(answer: string): void;
  reject(error: Error): void;
}

const hex = (text: string | Buffer): string => Buffer.from(text).toString('hex');

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, number]) => [number, name]));

/** An errno answer as a Node-style error (code ENOENT and so on), naming the call and the file. */
function errnoError(call: string, target: string, errno: number): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
  const error: NodeJS.ErrnoException = new Error(`${code}: ${call} ${target}`);
  error.code = code;
  error.errno = errno;
  return error;
}

/**
 * An idle server keeps no process alive (the helper exits when its session ends); one with calls waiting
 * does, so an answer is never left behind.
 */
function hold(session: Session, busy: boolean): void {
  const { child } = session;
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as ({ ref?: () => void; unref?: () => void } | null)[]) {
    if (busy) handle?.ref?.();
    else handle?.unref?.();
  }
}

/** One running server: its process and the calls waiting for its answers, in order. */
interface Session {
  child: ChildProcess;
  waiting: Waiter[];
}

export class LabelServer implements LabelIo {
  #session: Session | null = null;

  constructor(private readonly toolPath: string = labelTreeToolPath()) {}

  #start(): Session {
    const child = spawn(this.toolPath, ['serve'], { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
    const session: Session = { child, waiting: [] };
    let stderr = '';
    let rest = '';
    const fail = (why: string): void => {
      if (this.#session === session) this.#session = null;
      const waiting = session.waiting.splice(0);
      for (const w of waiting) w.reject(new Error(`svirt-label-tree serve ${why}${stderr ? `: ${stderr.trim()}` : ''}`));
    };
    child.on('error', (err) => fail(`could not run (${err.message})`));
    child.on('close', (code, signal) => fail(`ended (${signal ?? code})`));
    child.stdin?.on('error', () => {});
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) session.waiting.shift()?.resolve(line);
      if (session.waiting.length === 0) hold(session, false);
    });
    hold(session, false);
    return session;
  }

  #ask(request: string): Promise<string> {
    const session = (this.#session ??= this.#start());
    return new Promise<string>((resolve, reject) => {
      if (session.waiting.length === 0) hold(session, true);
      session.waiting.push({ resolve, reject });
      session.child.stdin?.write(`${request}\n`);
    });
  }

  async read(target: string, follow: boolean): Promise<string | null> {
    const answer = await this.#ask(`${follow ? 'get' : 'lget'} ${hex(target)}`);
    if (answer === 'none') return null;
    if (answer.startsWith('ok ')) return `0x${answer.slice(3)}`;
    throw this.#failure(answer, 'getxattr', target);
  }

  async write(target: string, value: Buffer): Promise<void> {
    const answer = await this.#ask(`set ${hex(target)} ${hex(value)}`);
    if (answer !== 'ok') throw this.#failure(answer, 'setxattr', target);
  }

  /** False when the file had no label. */
  async remove(target: string): Promise<boolean> {
    const answer = await this.#ask(`remove ${hex(target)}`);
    if (answer === 'ok' || answer === 'none') return answer === 'ok';
    throw this.#failure(answer, 'removexattr', target);
  }

  /** A FIFO of mode 0600 (owned by root until the caller chowns it). */
  async mkfifo(target: string): Promise<void> {
    const answer = await this.#ask(`mkfifo ${hex(target)}`);
    if (answer !== 'ok') throw this.#failure(answer, 'mkfifo', target);
  }

  #failure(answer: string, call: string, target: string): Error {
    const errno = /^err (\d+)$/.exec(answer)?.[1];
    return errno === undefined ? new Error(`svirt-label-tree serve: unexpected answer ${JSON.stringify(answer)} to ${call} ${target}`) : errnoError(call, target, Number(errno));
  }

  /** Ends the server (tests; the helper simply exits). */
  close(): void {
    this.#session?.child.stdin?.end();
    this.#session = null;
  }
}

let active: LabelServer | null = null;

/** Starts routing this process's one-file label calls (and FIFOs) through a server: the helper, once. */
export function enableLabelServer(toolPath?: string): LabelServer {
  active?.close();
  active = new LabelServer(toolPath);
  useLabelIo(active);
  return active;
}

/** The server enableLabelServer started in this process, if any. */
export function activeLabelServer(): LabelServer | null {
  return active;
}
