import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { openSerialLine } from '../../src/root/console/serial-line';

export interface TestGuest {
  /** Debian kernel (bzImage); boot with -append 'console=ttyS0 panic=-1'. */
  kernel: string;
  /** gzip'ed newc initramfs: busybox shell on ttyS0 after the SVIRT-GUEST-READY line. */
  initrd: string;
  /** Shared 8 MiB raw disk: attach read-only, or copy it before writing. */
  disk: string;
}

/** The line the guest's /init prints on ttyS0 when its shell is about to start. */
export const GUEST_READY_MARKER = 'SVIRT-GUEST-READY';
/** Kernel command line the guest is built for. */
export const GUEST_APPEND = 'console=ttyS0 panic=-1';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../guest/build-guest.mjs');

let pending: Promise<TestGuest> | undefined;

/** Builds (first run, ~5 s plus downloads) or finds the cached test guest; once per process. */
export function testGuest(): Promise<TestGuest> {
  if (pending) return pending;
  pending = new Promise<TestGuest>((resolve, reject) => {
    // The build downloads ~70 MB from apt on a cold cache: allow it time, but not forever.
    execFile(process.execPath, [SCRIPT], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`${SCRIPT} failed: ${err.message}\n${stderr}`));
        return;
      }
      const last = stdout.trimEnd().split('\n').pop() ?? '';
      try {
        const parsed = JSON.parse(last) as Partial<TestGuest>;
        if (typeof parsed.kernel !== 'string' || typeof parsed.initrd !== 'string' || typeof parsed.disk !== 'string') {
          throw new Error('missing kernel/initrd/disk');
        }
        resolve({ kernel: parsed.kernel, initrd: parsed.initrd, disk: parsed.disk });
      } catch (e) {
        reject(new Error(`${SCRIPT} printed no guest JSON as its last line (${(e as Error).message}): ${last}`));
      }
    });
  });
  // A failed build is not cached, so a later test can retry it.
  pending.catch(() => {
    pending = undefined;
  });
  return pending;
}

/** Connects to a unix socket, retrying every `retryMs` while qemu has not created it yet. */
export async function connectUnix(socketPath: string, timeoutMs = 10_000, retryMs = 20): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(socketPath);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw e;
      await sleep(retryMs);
    }
  }
}

/** The guest's serial line (a socket, or the product's FIFO pair): keeps all output, waits for patterns, types lines. */
export class SerialConsole {
  private text = '';
  private closed = false;
  private readonly waiters = new Set<() => void>();

  /** `socket` carries the output, and the input too unless `input` is given. */
  constructor(readonly socket: net.Socket, private readonly input: net.Socket = socket) {
    socket.setEncoding('latin1');
    input.on('error', () => {});
    socket.on('data', (d: string) => {
      this.text += d;
      for (const w of this.waiters) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters) w();
    });
    socket.on('error', () => {});
  }

  static async connect(socketPath: string, timeoutMs?: number): Promise<SerialConsole> {
    return new SerialConsole(await connectUnix(socketPath, timeoutMs));
  }

  /** Opens a VM's serial line as the console keeper does (src/root/console/serial-line.ts). */
  static async open(line: string, timeoutMs?: number): Promise<SerialConsole> {
    const { fromGuest, toGuest } = await openSerialLine(line, timeoutMs === undefined ? {} : { timeoutMs });
    return new SerialConsole(fromGuest, toGuest);
  }

  /** Everything received so far. */
  get output(): string {
    return this.text;
  }

  /** Resolves with the first match of re in the output from offset `from` on. */
  waitFor(re: RegExp, timeoutMs = 60_000, from = 0): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = re.exec(this.text.slice(from));
        if (m) {
          done();
          resolve(m);
          return true;
        }
        if (this.closed) {
          done();
          reject(new Error(`serial closed before ${re}; output:\n${this.text.slice(-2000)}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output:\n${this.text.slice(-2000)}`));
      }, timeoutMs);
      const waiter = (): void => void check();
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      check();
    });
  }

  /** Types a command line; resolves with the output offset from which its effects appear. */
  send(line: string): number {
    const mark = this.text.length;
    this.input.write(line.endsWith('\n') ? line : `${line}\n`);
    return mark;
  }

  /** Runs a shell command and returns its output (without the typed line, the prompt or the markers). */
  async run(command: string, timeoutMs = 30_000): Promise<string> {
    // Begin/end marker lines are assembled by the shell ("BEG""x" prints BEGx), so the echo of the typed line, which
    // the shell's line editor may also wrap, never matches them.
    const id = Math.random().toString(36).slice(2, 8);
    const from = this.send(`echo "BEG""${id}"; ${command}; echo "END""${id}"`);
    const m = await this.waitFor(new RegExp(`^BEG${id}\\r?\\n([\\s\\S]*?)^END${id}\\r?\\n`, 'm'), timeoutMs, from);
    return (m[1] ?? '').replace(/\r/g, '');
  }

  close(): void {
    this.socket.destroy();
    this.input.destroy();
  }
}
