// The guest's serial line between qemu and the console keeper: two FIFOs, not a socket.
//
// Why: qemu's 16550 model hands its chardev one byte per write. A unix stream socket charges each write
// a whole buffer (about 770 bytes of the sender's 208 KiB send buffer), so qemu's end is full once about
// 280 bytes wait unread. qemu then retries when the socket drains, the UART stays busy meanwhile, and the
// guest's 8250 console, after waiting about 10 ms for it, writes on into the full FIFO, which drops bytes:
// a reader held up that long (a keeper on a busy host, or any plain reader) loses output. Node cannot
// raise SO_SNDBUF on a unix socket, and a listening socket's setting does not pass to the connection it
// accepts. A pipe counts bytes, not writes: one-byte writes fill its pages, so it holds 64 KiB (a whole
// boot log) however they arrive, and qemu's write fails only when the keeper is that far behind.
//
// How: qemu's `pipe` chardev opens `<path>.in` (to the guest) and `<path>.out` (from the guest), both
// read-write. Its path is `/proc/self/fd/N/ttyS0`, N an fd of the line's directory that qemu inherits:
// qemu opens nothing outside that directory and needs no way through the root-only run directory. The
// directory and FIFOs belong to the VM's uid (0700, 0600) and carry its image label (svirt_t may use
// svirt_image_t FIFOs at its own pair). Because qemu holds both FIFOs read-write:
//   - its output never meets a missing reader: before the keeper reads (or after one died), output waits
//     in the pipe instead of being dropped;
//   - its input never reads end-of-file when a keeper goes away;
//   - the keeper's output side reads end-of-file exactly when qemu has exited.
// The keeper opens the output side blocking: that open returns once qemu has opened its line, so a keeper
// started before qemu never reads an end-of-file meant for a VM that is not there yet.

import { execFile } from 'node:child_process';
import { closeSync, constants as fsc, existsSync, open as openCallback } from 'node:fs';
import * as fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { writeLabel } from '../../security/selinux/file-labels';
import { activeLabelServer } from '../labels/label-server';
import { resizeDescriptor } from '../labels/label-tree-tool';

/** The name qemu's pipe chardev is given inside the line's directory: it opens ttyS0.in and ttyS0.out. */
export const SERIAL_LINE_NAME = 'ttyS0';

const execFileP = promisify(execFile);
/** Raw fds (not FileHandles, which close theirs when collected): each one is handed to a socket. */
const openFd = promisify(openCallback) as (file: string, flags: number) => Promise<number>;
// A keeper waits for qemu's line while a VM starts (qemu stays paused until it is read): looked for often.
const RETRY_MS = 5;

/** The two FIFOs of a line whose qemu chardev path is `line`. */
export function serialFifos(line: string): { toGuest: string; fromGuest: string } {
  return { toGuest: `${line}.in`, fromGuest: `${line}.out` };
}

/**
 * Makes a line's directory `dir` with its two FIFOs, owned by the VM's uid and gid and, where given, with
 * the VM's image label. Returns the chardev path inside it (`dir`/ttyS0).
 */
export async function createSerialLine(dir: string, owner: { uid: number; gid: number }, label?: string): Promise<string> {
  await fs.mkdir(dir, { mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const line = path.join(dir, SERIAL_LINE_NAME);
  const { toGuest, fromGuest } = serialFifos(line);
  // Node has no mkfifo(3): the helper's label server makes them (mode 0600), else coreutils' mkfifo.
  const server = activeLabelServer();
  if (server) await Promise.all([server.mkfifo(toGuest), server.mkfifo(fromGuest)]);
  else await execFileP('mkfifo', ['-m', '600', '--', toGuest, fromGuest]);
  await Promise.all([toGuest, fromGuest, dir].map(async (p) => {
    await fs.chown(p, owner.uid, owner.gid);
    if (label !== undefined) await writeLabel(p, label);
  }));
  return line;
}

export interface SerialLine {
  /** The guest's output (read-only): ends when qemu has exited. */
  readonly fromGuest: net.Socket;
  /** fromGuest's fd (its FIFO, open for reading), for enlargeSerialPipe. */
  readonly fromGuestFd: number;
  /** Input to the guest (write-only). */
  readonly toGuest: net.Socket;
}

export interface OpenSerialLineOptions {
  /** How long to wait for the line to appear and for qemu to open it. Default 10 s. */
  timeoutMs?: number;
  /** Passed to the output socket (pooled reads). */
  onread?: net.OnReadOpts;
}

/** Opens a running VM's serial line (the keeper's side), waiting while it does not exist or qemu has not opened it yet. */
export async function openSerialLine(line: string, options: OpenSerialLineOptions = {}): Promise<SerialLine> {
  const { toGuest, fromGuest } = serialFifos(line);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let outFd: number;
  for (;;) {
    // Blocking, in the thread pool: returns once qemu holds its end (a FIFO open for reading waits for a writer).
    const opening = openFd(fromGuest, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NOCTTY);
    const result = await Promise.race([
      opening.catch((e: unknown) => e as NodeJS.ErrnoException),
      sleep(Math.max(0, deadline - Date.now()), 'timeout' as const, { ref: false }),
    ]);
    if (result === 'timeout') {
      // The open may still return later: close what it gives then.
      void opening.then(closeSync, () => {});
      // The deadline may fall while an attempt is still in the thread pool: say which wait it was.
      if (!existsSync(fromGuest)) throw new Error(`cannot open serial line ${fromGuest}: ENOENT: it did not appear within ${timeoutMs} ms`);
      throw new Error(`cannot open serial line ${fromGuest}: qemu did not open it within ${timeoutMs} ms`);
    }
    if (typeof result === 'number') {
      outFd = result;
      break;
    }
    if (result.code !== 'ENOENT' || Date.now() >= deadline) throw new Error(`cannot open serial line ${fromGuest}: ${result.message}`, { cause: result });
    await sleep(RETRY_MS);
  }
  const fromGuestSocket = new net.Socket({ fd: outFd, readable: true, writable: false, ...(options.onread ? { onread: options.onread } : {}) });
  let inFd: number;
  try {
    // qemu holds this FIFO open for reading by now, so a non-blocking open for writing succeeds at once.
    inFd = await openFd(toGuest, fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOFOLLOW | fsc.O_NOCTTY);
  } catch (error) {
    fromGuestSocket.destroy();
    throw new Error(`cannot open serial line ${toGuest}: ${(error as Error).message}`, { cause: error });
  }
  const toGuestSocket = new net.Socket({ fd: inFd, readable: false, writable: true });
  return { fromGuest: fromGuestSocket, fromGuestFd: outFd, toGuest: toGuestSocket };
}

/** The output pipe's capacity a reader asks for: Linux's default fs.pipe-max-size. */
export const SERIAL_PIPE_BYTES = 1024 * 1024;

/**
 * Raises the capacity of a line's output pipe from the kernel's 64 KiB to `bytes`, and resolves with the
 * capacity it got. Why: the pipe then holds 1 MiB of output while its reader is busy (qemu's writes fail,
 * and the guest's UART drops bytes, only that much later), and a reader that was busy takes it back in
 * reads of up to 1 MiB instead of 64 KiB. The console keeper's JavaScript runs without a JIT, and there
 * each read costs far more than its bytes: bench:console's keeper spends half the CPU per GiB with it.
 * The capacity lasts as long as the pipe is open (qemu holds it for the VM's life). Node has no fcntl,
 * so svirt-label-tree sets it on the reader's fd; one process per line, started after the line is open.
 */
export function enlargeSerialPipe(line: SerialLine, bytes = SERIAL_PIPE_BYTES): Promise<number> {
  return resizeDescriptor('pipe-size', bytes, line.fromGuestFd).catch((error: Error) => {
    throw new Error(`cannot enlarge the serial line's pipe: ${error.message}`);
  });
}
