// The viewer side of a console keeper's socket: what the helper, the CLI and tests use to watch and type.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import {
  CHUNK_BYTES,
  FrameDecoder,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeFrame,
  encodeJsonFrame,
  parseBye,
  parseInfo,
  parseWindowSize,
  type ByeReason,
  type Info,
  type WindowSize,
} from '../../contracts/console-protocol';

export interface ConnectConsoleOptions {
  /** Absolute output offset to continue from (a previous viewer's `offset`); null or absent: the whole scrollback. */
  resumeFrom?: number | null;
}

/** Why a viewer's stream ended: the keeper's BYE reason, or what happened locally. */
export interface ViewerEnd {
  reason: ByeReason | 'closed' | 'connection-lost' | 'connect-failed';
  /** Offset just past the last output byte received; resume from here. */
  offset: number;
  message?: string;
}

interface ConsoleViewerEvents {
  info: [Info];
  data: [Buffer];
  resize: [WindowSize];
  end: [ViewerEnd];
}

export class ConsoleViewer extends EventEmitter<ConsoleViewerEvents> {
  /** Settles with the keeper's INFO once attached; rejects if the connection fails first. */
  readonly ready: Promise<Info>;
  readonly #socket: net.Socket;
  readonly #decoder = new FrameDecoder({ streamed: [FrameType.data] });
  #offset = 0;
  #attached = false;
  #end: ViewerEnd | null = null;
  #settleReady!: { resolve: (info: Info) => void; reject: (error: Error) => void };

  constructor(viewerSocketPath: string, options: ConnectConsoleOptions = {}) {
    super();
    this.ready = new Promise<Info>((resolve, reject) => (this.#settleReady = { resolve, reject }));
    // Callers that only listen for events need not handle this promise.
    this.ready.catch(() => {});
    const onData = (chunk: Buffer): void => {
      try {
        this.#decoder.push(chunk, (type, payload) => this.#onFrame(type, payload));
      } catch (error) {
        this.#finish({ reason: 'protocol-error', offset: this.#offset, message: (error as Error).message });
        this.#socket.destroy();
      }
    };
    this.#socket = net.connect({ path: viewerSocketPath });
    this.#socket.on('data', onData);
    this.#socket.write(encodeJsonFrame(FrameType.hello, { protocol: PROTOCOL_VERSION, resumeFrom: options.resumeFrom ?? null }));
    this.#socket.on('error', (error) => {
      const reason = this.#attached ? 'connection-lost' : 'connect-failed';
      this.#finish({ reason, offset: this.#offset, message: error.message });
    });
    this.#socket.on('close', () => this.#finish({ reason: 'connection-lost', offset: this.#offset }));
  }

  /** Absolute offset just past the last output byte received. */
  get offset(): number {
    return this.#offset;
  }

  /** Set once the stream has ended. */
  get ended(): ViewerEnd | null {
    return this.#end;
  }

  /** Sends keyboard input to the guest's serial port. False: wait for 'drain' on the socket before more. */
  write(input: string | Uint8Array): boolean {
    const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
    let flowing = true;
    for (let start = 0; start < bytes.length; start += CHUNK_BYTES) {
      flowing = this.#send(encodeFrame(FrameType.input, bytes.subarray(start, start + CHUNK_BYTES)));
    }
    return flowing;
  }

  /** Announces this viewer's window size; the keeper passes it on to the other viewers. */
  resize(cols: number, rows: number): void {
    this.#send(encodeJsonFrame(FrameType.resize, { cols, rows }));
  }

  /** Disconnects; resolves once the socket is closed. */
  close(): Promise<void> {
    this.#finish({ reason: 'closed', offset: this.#offset });
    if (this.#socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#socket.once('close', () => resolve());
      this.#socket.destroy();
    });
  }

  #send(frame: Buffer): boolean {
    if (this.#end !== null) return false;
    return this.#socket.write(frame);
  }

  #onFrame(type: number, payload: Buffer): void {
    if (this.#end !== null) return;
    if (!this.#attached) {
      if (type !== FrameType.info) throw new ProtocolError(`expected info, got frame type ${type}`);
      const info = parseInfo(payload);
      this.#attached = true;
      this.#offset = info.offset;
      this.#settleReady.resolve(info);
      this.emit('info', info);
      return;
    }
    switch (type) {
      case FrameType.data:
        this.#offset += payload.length;
        this.emit('data', payload);
        return;
      case FrameType.resize:
        this.emit('resize', parseWindowSize(payload));
        return;
      case FrameType.bye: {
        const bye = parseBye(payload);
        this.#finish({ reason: bye.reason, offset: this.#offset, ...(bye.message === undefined ? {} : { message: bye.message }) });
        return;
      }
      default:
        throw new ProtocolError(`unexpected frame type ${type}`);
    }
  }

  #finish(end: ViewerEnd): void {
    if (this.#end !== null) return;
    this.#end = end;
    if (!this.#attached) this.#settleReady.reject(new Error(`console viewer: ${end.reason}${end.message ? `: ${end.message}` : ''}`));
    this.emit('end', end);
  }
}

/**
 * Attaches to a console keeper. Listen for 'data' right away (synchronously): the replay of the
 * scrollback starts as soon as the keeper answers.
 */
export function connectConsole(viewerSocketPath: string, options: ConnectConsoleOptions = {}): ConsoleViewer {
  return new ConsoleViewer(viewerSocketPath, options);
}
