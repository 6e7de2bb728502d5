// A small QMP (QEMU Machine Protocol) client: newline-delimited JSON over a unix socket.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { connectUnixLow } from '../../security/selinux/socket-context';

export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/** A command qemu answered with {"error": {...}}: message is qemu's desc. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    /** QMP error class, e.g. CommandNotFound, GenericError. */
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(desc);
    this.name = 'QmpError';
  }
}

/** Where to reach QMP: a socket path, a connected socket, or a connected socket's fd. */
export type QmpTarget = string | net.Socket | number;

export interface QmpConnectOptions {
  /** Give up on the greeting and handshake after this long (default 10 s). */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

type Message = Record<string, unknown>;

/**
 * Emits 'event' (QmpEvent) for every asynchronous event and also the event's own name (e.g. 'SHUTDOWN'),
 * and 'close' (no args) when the connection ends.
 */
export class QmpClient extends EventEmitter {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private ended = false;
  private greetingWaiter: ((m: Message) => void) | undefined;
  greeting: QmpGreeting | undefined;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    // Errors end the connection; 'close' follows and settles everything.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        for (const [id, p] of this.pending) {
          this.pending.delete(id);
          // qemu may close the socket before its reply to quit arrives: the close is the answer.
          if (p.command === 'quit') p.resolve({});
          else p.reject(new Error(`QMP connection closed before the reply to ${p.command}`));
        }
        this.emit('close');
        resolve();
      }),
    );
  }

  /** Connects, reads the greeting and negotiates capabilities (qmp_capabilities). */
  static async connect(target: QmpTarget, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const socket = await openSocket(target);
    const client = new QmpClient(socket);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          const greeting = await new Promise<Message>((resolve, reject) => {
            client.greetingWaiter = resolve;
            void client.closed.then(() => reject(new Error('QMP connection closed before the greeting')));
          });
          if (!('QMP' in greeting)) throw new Error(`not a QMP greeting: ${JSON.stringify(greeting)}`);
          client.greeting = greeting as unknown as QmpGreeting;
          await client.execute('qmp_capabilities');
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no QMP handshake within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (e) {
      socket.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** Runs a command; resolves with its "return" value, rejects with QmpError carrying qemu's desc. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.ended) return Promise.reject(new Error(`QMP connection is closed (${command})`));
    const id = `svirt-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id }) + '\n');
    });
  }

  /** The next event named `name` (matching `filter` if given), or a rejection after timeoutMs. */
  waitForEvent(name: string, timeoutMs = 30_000, filter?: (ev: QmpEvent) => boolean): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (ev: QmpEvent): void => {
        if (filter && !filter(ev)) return;
        cleanup();
        resolve(ev);
      };
      const onClose = (): void => {
        cleanup();
        reject(new Error(`QMP connection closed while waiting for ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(name, onEvent);
        this.off('close', onClose);
      };
      this.on(name, onEvent);
      this.once('close', onClose);
    });
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** Closes the connection (qemu keeps running); resolves once the socket is closed. */
  async close(): Promise<void> {
    this.socket.end();
    // A peer that never finishes its side must not hold close() forever.
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    await this.closed;
    clearTimeout(timer);
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Message;
      try {
        msg = JSON.parse(line) as Message;
      } catch {
        // Not QMP: drop the connection rather than guess at the stream's framing.
        this.socket.destroy(new Error(`QMP sent non-JSON: ${line.slice(0, 200)}`));
        return;
      }
      this.dispatch(msg);
    }
  }

  private dispatch(msg: Message): void {
    if (this.greetingWaiter) {
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      w(msg);
      return;
    }
    if (typeof msg.event === 'string') {
      const ev = msg as unknown as QmpEvent;
      this.emit('event', ev);
      this.emit(ev.event, ev);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id !== undefined ? this.pending.get(id) : undefined;
    if (!p || id === undefined) return;
    this.pending.delete(id);
    if ('error' in msg) {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, err.class ?? 'GenericError', err.desc ?? 'unknown QMP error'));
    } else {
      p.resolve(msg.return);
    }
  }
}

function openSocket(target: QmpTarget): Promise<net.Socket> {
  if (target instanceof net.Socket) return Promise.resolve(target);
  if (typeof target === 'number') return Promise.resolve(new net.Socket({ fd: target, readable: true, writable: true }));
  return new Promise((resolve, reject) => {
    // At s0 where SELinux is on: qemu may use its end of the connection (socket-context.ts).
    const s = connectUnixLow(target);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
