// The console keeper: the one process that holds a VM's serial connection.
//
// qemu's serial line has a single reader, several helpers may want the console at once, and any of them
// may be killed. So one keeper per VM opens qemu's serial line (serial-line.ts), keeps every byte of
// output in a scrollback ring (so output produced while nobody watches is still there), and serves any
// number of viewers on its own unix socket (wire format: console-protocol.ts). It exits once qemu's
// side of the line closes (the VM ended) and the viewers have been sent what was left.
//
// Flow control: a viewer is a cursor into the ring, fed from it whenever its socket can take more, so
// a slow viewer costs no memory beyond the ring. qemu's serial port must not be held back for long: a
// guest whose UART stays busy spins in printk. So the keeper reads qemu as fast as it comes, except
// that while a viewer is more than three quarters of the lag cap behind it pauses reading for at most
// slowViewerGraceMs (until that viewer is within a quarter): a viewer that is only slower than a burst
// of output then loses nothing, and the burst is paced to it. A viewer still behind after the grace,
// or past the cap (whose output is being overwritten), gets BYE too-slow and is disconnected; it can
// reconnect with resumeFrom and learns exactly how much it missed. With slowViewerGraceMs 0 the keeper
// never pauses qemu and viewers are only cut off at the cap.

import net from 'node:net';
import { lstat, chmod, rename, unlink } from 'node:fs/promises';
import { DEFAULT_REPLAY_BYTES, DEFAULT_RING_BYTES, ScrollbackRing, type RingView } from './scrollback-ring';
import { connectUnixLow } from '../../security/selinux/socket-context';
import { enlargeSerialPipe, openSerialLine, SERIAL_PIPE_BYTES, type SerialLine } from './serial-line';
import { resizeDescriptor } from '../labels/label-tree-tool';
import {
  FrameDecoder,
  FRAME_HEADER_BYTES,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeJsonFrame,
  parseHello,
  parseWindowSize,
  type Bye,
  type ByeReason,
  type Info,
  type WindowSize,
  writeFrameHeader,
} from '../../contracts/console-protocol';

export { connectConsole, type ConsoleViewer, type ConnectConsoleOptions, type ViewerEnd } from './console-viewer';
export { startConsoleKeeperProcess, type KeeperProcessOptions, type KeeperProcess } from './keeper-process';

export interface ConsoleKeeperOptions {
  /** qemu's serial line: its pipe chardev's path (serial-line.ts). */
  serialPath: string;
  /** Where viewers connect; created with mode 0600 (its directory is expected to be root-only too). */
  viewerSocketPath: string;
  /** Output kept for viewers that are behind or resume. Default DEFAULT_RING_BYTES (8 MiB). */
  ringBytes?: number;
  /** How much of it a viewer attaching afresh (no resume offset) is replayed. Default DEFAULT_REPLAY_BYTES (1 MiB). */
  replayBytes?: number;
  /** How long to wait while qemu's serial line does not exist or qemu has not opened it yet. Default 10 s. */
  connectTimeoutMs?: number;
  /** A viewer this far behind is disconnected as too slow. Default and maximum: ringBytes. */
  maxViewerLagBytes?: number;
  /**
   * How long reading qemu may wait for one viewer that fell more than ¾ of maxViewerLagBytes behind,
   * before that viewer is disconnected instead. 0: never wait. Default 500 ms.
   */
  slowViewerGraceMs?: number;
  /** A viewer must say hello within this time. Default 10 s. */
  helloTimeoutMs?: number;
  /** After the VM ended (or stop()), how long viewers get to read what is left. Default 5 s. */
  endFlushTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface KeeperEnd {
  reason: 'vm-ended' | 'keeper-stopped';
  /** Guest output bytes the keeper received in its life. */
  totalBytes: number;
}

export interface ConsoleKeeper {
  /** Settles when the keeper has finished: viewers flushed, viewer socket removed. */
  readonly ended: Promise<KeeperEnd>;
  /** Disconnects qemu and the viewers (BYE keeper-stopped) and finishes. */
  stop(): Promise<KeeperEnd>;
  readonly viewerCount: number;
  readonly totalBytes: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_HELLO_TIMEOUT_MS = 10_000;
const DEFAULT_END_FLUSH_TIMEOUT_MS = 5_000;
const DEFAULT_SLOW_VIEWER_GRACE_MS = 500;
/** Node-side write buffer per viewer before write() says "wait": one largest frame. */
const VIEWER_HIGH_WATER_MARK = 1024 * 1024;
/**
 * The kernel's send buffer asked for a viewer socket that fills the default one (SO_SNDBUF, which the
 * kernel doubles and caps at net.core.wmem_max): a flood then wakes the keeper and its viewer about once
 * per MiB, not five times.
 */
const VIEWER_SEND_BUFFER_BYTES = 512 * 1024;
/**
 * Reads from qemu, and the data frames a viewer that is behind gets, are at most this size (the ring's
 * segment). A viewer that is behind (the usual case in a flood) gets its backlog in frames this large:
 * fewer writes, and 10 % less keeper CPU per byte than with 256 KiB (bench:console).
 */
const MAX_READ_BYTES = 1024 * 1024;

/** The kernel's capacity of a new pipe. */
const DEFAULT_PIPE_BYTES = 64 * 1024;

function dataHeader(length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(header, FrameType.data, length);
  return header;
}

/** Connects a console keeper to qemu, starts serving viewers, and resolves once both are in place. */
export async function startConsoleKeeper(options: ConsoleKeeperOptions): Promise<ConsoleKeeper> {
  const keeper = new Keeper(options);
  await keeper.connectSerial();
  try {
    await keeper.listen();
  } catch (error) {
    keeper.disconnectSerial();
    throw error;
  }
  return keeper;
}

/** Runs a console keeper until the VM's serial port closes (or it is stopped). */
export async function runConsoleKeeper(options: ConsoleKeeperOptions): Promise<KeeperEnd> {
  return (await startConsoleKeeper(options)).ended;
}

function connectOnce(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectUnixLow(path);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

type ViewerState = 'awaiting-hello' | 'streaming' | 'leaving';

interface Viewer {
  readonly socket: net.Socket;
  readonly decoder: FrameDecoder;
  readonly name: string;
  state: ViewerState;
  /** Absolute offset of the next output byte to send. */
  cursor: number;
  /** False from a write() that asked us to wait until its 'drain'. */
  writable: boolean;
  /** A resize from another viewer not yet passed on; only the latest matters. */
  pendingSize: WindowSize | null;
  helloTimer: NodeJS.Timeout | null;
  /** Since when (performance.now()) this viewer holds back reading qemu; null when it keeps up. */
  laggingSince: number | null;
  /** Whether a larger send buffer was asked for (once, when its socket first filled the default one). */
  sendBufferAsked: boolean;
}

class Keeper implements ConsoleKeeper {
  readonly ended: Promise<KeeperEnd>;
  readonly #ring: ScrollbackRing;
  #line!: SerialLine;
  /** The guest's output, read into the ring. */
  #fromGuest!: net.Socket;
  /** Viewers' input to the guest. */
  #toGuest!: net.Socket;
  readonly #options: ConsoleKeeperOptions;
  readonly #maxLag: number;
  readonly #graceMs: number;
  #serialPaused = false;
  #graceTimer: NodeJS.Timeout | null = null;
  readonly #viewers = new Set<Viewer>();
  readonly #log: (line: string) => void;
  #server: net.Server | null = null;
  #serverClosed: Promise<void> | null = null;
  #serialClosed = false;
  #pipeAsked = false;
  #finishing: KeeperEnd['reason'] | null = null;
  /** Viewers whose input waits for qemu's serial line to drain. */
  readonly #inputPaused = new Set<Viewer>();
  #lastSize: WindowSize | null = null;
  #nextViewerNumber = 1;
  #resolveEnded!: (end: KeeperEnd) => void;
  #flushTimer: NodeJS.Timeout | null = null;
  #done = false;

  constructor(options: ConsoleKeeperOptions) {
    const ringBytes = options.ringBytes ?? DEFAULT_RING_BYTES;
    this.#options = options;
    this.#maxLag = Math.min(options.maxViewerLagBytes ?? ringBytes, ringBytes);
    this.#graceMs = options.slowViewerGraceMs ?? DEFAULT_SLOW_VIEWER_GRACE_MS;
    // One read (a ring segment's room at most) adds at most a quarter of the lag cap: reading pauses past
    // three quarters, so a viewer that makes it pause is still within the cap after the read that did it.
    this.#ring = new ScrollbackRing(ringBytes, Math.max(1, Math.min(MAX_READ_BYTES, Math.floor(this.#maxLag / 4))));
    this.#log = options.log ?? (() => {});
    this.ended = new Promise((resolve) => (this.#resolveEnded = resolve));
  }

  async connectSerial(): Promise<void> {
    const { serialPath, connectTimeoutMs } = this.#options;
    // qemu's output is read straight into the ring's free room.
    const onread: net.OnReadOpts = {
      buffer: () => this.#ring.reserve(),
      callback: (bytesRead) => {
        // A read this large found the pipe full: the guest floods, so the pipe grows. Not before: the
        // tool is a process start, and a keeper serving a booting guest has no CPU to spare for it.
        if (bytesRead >= DEFAULT_PIPE_BYTES) this.#enlargeSerialPipe();
        this.#onOutput(this.#ring.commit(bytesRead));
        // Flow control is done with pause()/resume(), never by refusing a read here.
        return true;
      },
    };
    const line = await openSerialLine(serialPath, { timeoutMs: connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, onread });
    this.#line = line;
    this.#fromGuest = line.fromGuest;
    this.#toGuest = line.toGuest;
    this.#toGuest.on('drain', () => this.#resumeInput());
    this.#toGuest.on('error', (error) => this.#log(`serial input error: ${error.message}`));
    this.#fromGuest.on('error', (error) => this.#log(`serial output error: ${error.message}`));
    // 'close' follows 'end' and 'error' alike: either way qemu's side is gone and nothing more will come.
    this.#fromGuest.on('close', () => {
      this.#serialClosed = true;
      this.#toGuest.destroy();
      if (this.#server) this.#finish('vm-ended');
    });
  }

  /** Once, best effort: with the kernel's default pipe the keeper works as well, at twice the CPU per byte in a flood. */
  #enlargeSerialPipe(): void {
    // Like a read, the pipe holds at most a quarter of the lag cap: what waits in it reaches the viewers
    // as one burst, and a viewer that keeps up must not be cut off by it.
    const bytes = Math.min(SERIAL_PIPE_BYTES, Math.floor(this.#maxLag / 4));
    if (this.#pipeAsked || this.#serialClosed || bytes <= DEFAULT_PIPE_BYTES) return;
    this.#pipeAsked = true;
    try {
      enlargeSerialPipe(this.#line, bytes).then(
        (bytes) => this.#log(`serial line pipe holds ${bytes} bytes`),
        (error: unknown) => this.#log((error as Error).message),
      );
    } catch (error) {
      this.#log(`cannot enlarge the serial line's pipe: ${(error as Error).message}`);
    }
  }

  disconnectSerial(): void {
    this.#fromGuest.destroy();
    this.#toGuest.destroy();
  }

  get viewerCount(): number {
    return this.#viewers.size;
  }

  get totalBytes(): number {
    return this.#ring.totalWritten;
  }

  async listen(): Promise<void> {
    const path = this.#options.viewerSocketPath;
    await removeStaleSocket(path);
    // Bound under a private name, restricted, then renamed into place: the socket is never reachable
    // under its real name with a looser mode, whatever the umask.
    const bindPath = `${path}.${process.pid}.binding`;
    await unlink(bindPath).catch(() => {});
    const server = net.createServer({ highWaterMark: VIEWER_HIGH_WATER_MARK }, (socket) => this.#onViewer(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(bindPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.#log(`viewer socket error: ${error.message}`));
    await chmod(bindPath, 0o600);
    await rename(bindPath, path);
    this.#server = server;
    this.#log(`serving viewers on ${path}`);
    // qemu may be gone already; finishing waited for the server so that it can close it.
    if (this.#serialClosed) this.#finish('vm-ended');
  }

  stop(): Promise<KeeperEnd> {
    this.#finish('keeper-stopped');
    return this.ended;
  }

  /** Output just read from qemu into the ring. */
  #onOutput(output: RingView): void {
    const before = this.#ring.totalWritten - output.bytes.length;
    let header: Buffer | null = null;
    for (const viewer of this.#viewers) {
      if (viewer.state !== 'streaming') continue;
      if (viewer.writable && viewer.cursor === before && viewer.pendingSize === null) {
        // Caught-up viewer: the output itself, with one header every such viewer shares.
        header ??= dataHeader(output.bytes.length);
        this.#sendData(viewer, header, output);
      } else if (this.#ring.totalWritten - viewer.cursor > this.#maxLag) {
        this.#dropViewer(viewer, 'too-slow', `fell more than ${this.#maxLag} bytes behind the guest's output`);
      } else {
        this.#pump(viewer);
      }
    }
    this.#reviewFlow();
  }

  /**
   * Sends a data frame of ring bytes, not copied: the ring keeps their segment until the socket has
   * written them. Corked, the header and the bytes go out in one writev.
   */
  #sendData(viewer: Viewer, header: Buffer, output: RingView): void {
    const { socket } = viewer;
    viewer.cursor += output.bytes.length;
    socket.cork();
    socket.write(header);
    viewer.writable = this.#ring.segments.write(socket, output.segment, output.bytes);
    socket.uncork();
    // Bytes the kernel did not take at once: the socket's send buffer is full.
    if (socket.writableLength > 0) this.#growSendBuffer(viewer);
  }

  /**
   * Once per viewer, best effort, and only for one that fills the kernel's default buffer (a flood): the
   * tool is a process start, which a console that keeps up (a booting guest's) never pays for.
   */
  #growSendBuffer(viewer: Viewer): void {
    if (viewer.sendBufferAsked) return;
    viewer.sendBufferAsked = true;
    // By its fd: a socket handed to spawn() as a stream would stop being read here.
    const fd = (viewer.socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd === 'number' && fd >= 0) resizeDescriptor('send-buffer', VIEWER_SEND_BUFFER_BYTES, fd).then(
      (bytes) => this.#log(`${viewer.name}: send buffer holds ${bytes} bytes`),
      (error: unknown) => this.#log(`${viewer.name}: cannot enlarge the send buffer: ${(error as Error).message}`),
    );
  }

  /** Sends a viewer what it has not had yet, while its socket takes it. */
  #pump(viewer: Viewer): void {
    while (viewer.state === 'streaming' && viewer.writable) {
      if (viewer.pendingSize !== null) {
        viewer.writable = viewer.socket.write(encodeJsonFrame(FrameType.resize, viewer.pendingSize));
        viewer.pendingSize = null;
        continue;
      }
      const behind = this.#ring.totalWritten - viewer.cursor;
      if (behind === 0) break;
      if (viewer.cursor < this.#ring.startOffset) {
        this.#dropViewer(viewer, 'too-slow', 'the output it had not read yet was overwritten');
        return;
      }
      const backlog = this.#ring.slice(viewer.cursor);
      this.#sendData(viewer, dataHeader(backlog.bytes.length), backlog);
    }
    if (this.#finishing !== null && viewer.state === 'streaming' && viewer.cursor === this.#ring.totalWritten && viewer.pendingSize === null) {
      this.#sayBye(viewer, this.#finishing === 'vm-ended' ? 'vm-ended' : 'keeper-stopped');
    }
  }

  #onViewer(socket: net.Socket): void {
    const viewer: Viewer = {
      socket,
      decoder: new FrameDecoder({ streamed: [FrameType.input] }),
      name: `viewer ${this.#nextViewerNumber++}`,
      state: 'awaiting-hello',
      cursor: 0,
      writable: true,
      pendingSize: null,
      helloTimer: null,
      laggingSince: null,
      sendBufferAsked: false,
    };
    this.#viewers.add(viewer);
    this.#log(`${viewer.name} connected`);
    viewer.helloTimer = setTimeout(() => this.#dropViewer(viewer, 'protocol-error', 'no hello in time'), this.#options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS);
    socket.on('data', (chunk: Buffer) => {
      try {
        viewer.decoder.push(chunk, (type, payload) => this.#onViewerFrame(viewer, type, payload));
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this.#dropViewer(viewer, 'protocol-error', error.message);
      }
    });
    socket.on('drain', () => {
      viewer.writable = true;
      this.#pump(viewer);
      if (this.#serialPaused) this.#reviewFlow();
    });
    // A vanished viewer shows up as EPIPE/ECONNRESET here; 'close' does the cleanup.
    socket.on('error', (error) => this.#log(`${viewer.name}: ${error.message}`));
    socket.on('close', () => this.#forgetViewer(viewer));
  }

  #onViewerFrame(viewer: Viewer, type: number, payload: Buffer): void {
    if (viewer.state === 'leaving') return;
    if (viewer.state === 'awaiting-hello') {
      if (type !== FrameType.hello) throw new ProtocolError(`expected hello, got frame type ${type}`);
      this.#welcome(viewer, parseHello(payload).resumeFrom);
      return;
    }
    switch (type) {
      case FrameType.input:
        this.#forwardInput(viewer, payload);
        return;
      case FrameType.resize:
        this.#onResize(viewer, parseWindowSize(payload));
        return;
      default:
        throw new ProtocolError(`unexpected frame type ${type}`);
    }
  }

  #welcome(viewer: Viewer, resumeFrom: number | null): void {
    if (viewer.helloTimer) clearTimeout(viewer.helloTimer);
    viewer.helloTimer = null;
    const total = this.#ring.totalWritten;
    // An offset beyond what this keeper has seen comes from another keeper's life (the VM was restarted):
    // such a viewer, like a new one, is replayed the newest scrollback.
    const known = resumeFrom !== null && resumeFrom <= total ? resumeFrom : null;
    const replayFrom = Math.max(this.#ring.startOffset, total - (this.#options.replayBytes ?? DEFAULT_REPLAY_BYTES));
    const offset = known === null ? replayFrom : Math.max(known, this.#ring.startOffset);
    const info: Info = { protocol: PROTOCOL_VERSION, offset, end: total, dropped: known === null ? 0 : offset - known, size: this.#lastSize };
    viewer.cursor = offset;
    viewer.state = 'streaming';
    viewer.writable = viewer.socket.write(encodeJsonFrame(FrameType.info, info));
    this.#log(`${viewer.name} attached at offset ${offset} (asked ${resumeFrom ?? 'null'}, dropped ${info.dropped})`);
    this.#pump(viewer);
    this.#reviewFlow();
  }

  /** Pauses or resumes reading qemu by how far behind the viewers are, and cuts off those behind too long. */
  #reviewFlow(): void {
    if (this.#graceMs === 0) return;
    const now = performance.now();
    const holdBackAt = (this.#maxLag * 3) / 4;
    const caughtUpAt = this.#maxLag / 4;
    let oldestLag = Number.POSITIVE_INFINITY;
    for (const viewer of this.#viewers) {
      if (viewer.state !== 'streaming') continue;
      const behind = this.#ring.totalWritten - viewer.cursor;
      if (viewer.laggingSince === null && behind > holdBackAt) viewer.laggingSince = now;
      else if (viewer.laggingSince !== null && behind <= caughtUpAt) viewer.laggingSince = null;
      if (viewer.laggingSince !== null) oldestLag = Math.min(oldestLag, viewer.laggingSince);
    }
    const holdBack = oldestLag !== Number.POSITIVE_INFINITY && this.#finishing === null;
    if (holdBack !== this.#serialPaused) {
      this.#serialPaused = holdBack;
      if (holdBack) this.#fromGuest.pause();
      else this.#fromGuest.resume();
    }
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = holdBack ? setTimeout(() => this.#cutOffLaggards(), Math.max(0, oldestLag + this.#graceMs - now)) : null;
  }

  #cutOffLaggards(): void {
    this.#graceTimer = null;
    const now = performance.now();
    for (const viewer of this.#viewers) {
      if (viewer.state === 'streaming' && viewer.laggingSince !== null && now - viewer.laggingSince >= this.#graceMs) {
        this.#dropViewer(viewer, 'too-slow', `held the serial port back for more than ${this.#graceMs} ms`);
      }
    }
    this.#reviewFlow();
  }

  #forwardInput(viewer: Viewer, bytes: Buffer): void {
    if (this.#finishing !== null || bytes.length === 0) return;
    if (!this.#toGuest.write(bytes)) {
      // The guest reads its serial port slowly: stop reading from the typing viewer, not from qemu.
      viewer.socket.pause();
      this.#inputPaused.add(viewer);
    }
  }

  #resumeInput(): void {
    for (const viewer of this.#inputPaused) viewer.socket.resume();
    this.#inputPaused.clear();
  }

  #onResize(from: Viewer, size: WindowSize): void {
    // A serial line has no window size: there is no TIOCSWINSZ to pass through qemu, and the guest only
    // learns one if someone runs `stty cols C rows R` in it. So the keeper just remembers the last size
    // (for viewers that attach later) and passes it on, so the other viewers can follow or show it.
    this.#lastSize = size;
    for (const viewer of this.#viewers) {
      if (viewer === from || viewer.state !== 'streaming') continue;
      viewer.pendingSize = size;
      this.#pump(viewer);
    }
  }

  #sayBye(viewer: Viewer, reason: ByeReason, message?: string): void {
    if (viewer.state === 'leaving') return;
    viewer.state = 'leaving';
    const bye: Bye = { reason, offset: viewer.cursor, ...(message === undefined ? {} : { message }) };
    // Queued behind whatever the socket still holds, so the viewer reads all it was sent, then this.
    viewer.socket.end(encodeJsonFrame(FrameType.bye, bye));
    this.#log(`${viewer.name} leaves: ${reason}${message ? ` (${message})` : ''}`);
  }

  #dropViewer(viewer: Viewer, reason: ByeReason, message: string): void {
    this.#sayBye(viewer, reason, message);
    if (this.#serialPaused) this.#reviewFlow();
    // A viewer that stopped reading would keep its queued bytes forever; give it the flush time, no more.
    setTimeout(() => viewer.socket.destroy(), this.#options.endFlushTimeoutMs ?? DEFAULT_END_FLUSH_TIMEOUT_MS).unref();
  }

  #forgetViewer(viewer: Viewer): void {
    if (viewer.helloTimer) clearTimeout(viewer.helloTimer);
    this.#viewers.delete(viewer);
    this.#inputPaused.delete(viewer);
    if (viewer.state !== 'leaving') this.#log(`${viewer.name} disconnected`);
    if (this.#serialPaused) this.#reviewFlow();
    if (this.#finishing !== null && this.#viewers.size === 0) this.#complete();
  }

  #finish(reason: KeeperEnd['reason']): void {
    if (this.#finishing !== null) return;
    this.#finishing = reason;
    this.#log(`finishing (${reason}) after ${this.#ring.totalWritten} bytes of output`);
    if (reason === 'keeper-stopped') this.disconnectSerial();
    // No more output will come: whoever is behind now has the flush time, not the grace, to catch up.
    this.#reviewFlow();
    void this.#closeServer();
    for (const viewer of this.#viewers) {
      if (viewer.state === 'awaiting-hello') continue; // served once its hello comes, or timed out
      if (reason === 'keeper-stopped') this.#sayBye(viewer, 'keeper-stopped');
      else this.#pump(viewer);
    }
    this.#flushTimer = setTimeout(() => {
      for (const viewer of this.#viewers) viewer.socket.destroy();
      this.#complete();
    }, this.#options.endFlushTimeoutMs ?? DEFAULT_END_FLUSH_TIMEOUT_MS);
    if (this.#viewers.size === 0) this.#complete();
  }

  /** Stops new viewers (attached ones are still served until they have it all) and removes the socket. */
  #closeServer(): Promise<void> {
    this.#serverClosed ??= new Promise<void>((resolve) => {
      const server = this.#server;
      if (!server) return resolve();
      server.close(() => resolve());
      unlink(this.#options.viewerSocketPath).catch(() => {});
    });
    return this.#serverClosed;
  }

  #complete(): void {
    if (this.#done || this.#finishing === null) return;
    this.#done = true;
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    const end: KeeperEnd = { reason: this.#finishing, totalBytes: this.#ring.totalWritten };
    void this.#closeServer().then(() => {
      this.#log(`ended (${end.reason})`);
      this.#resolveEnded(end);
    });
  }
}

/** Removes a socket left by a keeper that died; refuses if a keeper still answers on it or it is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (stat === null) return;
  if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const alive = await connectOnce(path).then(
    (socket) => {
      socket.destroy();
      return true;
    },
    () => false,
  );
  if (alive) throw new Error(`a console keeper is already serving ${path}`);
  await unlink(path);
}
