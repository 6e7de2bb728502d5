// Wire format between a console keeper and its viewers, on the keeper's unix socket.
//
// Every message in both directions is a frame:  type:u8 | length:u32be | payload[length]
// Control frames carry a JSON object; DATA and INPUT carry raw bytes.
//
//   viewer → keeper  HELLO   {"protocol":1,"resumeFrom":<offset>|null}   must be the first frame
//                    INPUT   raw bytes for the guest's serial port
//                    RESIZE  {"cols":n,"rows":n}
//   keeper → viewer  INFO    {"protocol":1,"offset":n,"dropped":n,"size":{"cols","rows"}|null}   first frame
//                    DATA    raw guest output; contiguous, the first byte is at INFO.offset
//                    RESIZE  {"cols":n,"rows":n}  another viewer resized its window
//                    BYE     {"reason":…,"offset":n,"message"?}  last frame, then the keeper ends the connection
//
// Offsets count bytes of guest output since the keeper started; a viewer adds the DATA lengths to
// INFO.offset to know where it is, and reconnects with resumeFrom to continue without a gap.

export const PROTOCOL_VERSION = 1;

export const FrameType = {
  hello: 1,
  info: 2,
  data: 3,
  input: 4,
  resize: 5,
  bye: 6,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const FRAME_HEADER_BYTES = 5;
/** Larger frames are a protocol error: bounds what a peer can make the other side buffer. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;
/** DATA and INPUT are cut into frames of at most this size. */
export const CHUNK_BYTES = 64 * 1024;

export interface Hello {
  protocol: number;
  resumeFrom: number | null;
}

export interface WindowSize {
  cols: number;
  rows: number;
}

export interface Info {
  protocol: number;
  /** Absolute offset of the first DATA byte that follows. */
  offset: number;
  /** Absolute offset just past the output held at attach: `end - offset` bytes are replayed first. */
  end: number;
  /** Bytes between resumeFrom and offset that the keeper no longer holds. */
  dropped: number;
  /** The last size a viewer announced, if any. */
  size: WindowSize | null;
}

export type ByeReason = 'vm-ended' | 'too-slow' | 'protocol-error' | 'keeper-stopped';

export interface Bye {
  reason: ByeReason;
  /** Absolute offset just past the last DATA byte sent to this viewer. */
  offset: number;
  message?: string;
}

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export function frameHeader(type: FrameType, payloadLength: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(header, type, payloadLength);
  return header;
}

/** Writes a frame header into the first FRAME_HEADER_BYTES of `target` (a buffer with the payload after it). */
export function writeFrameHeader(target: Buffer, type: FrameType, payloadLength: number): void {
  if (payloadLength > MAX_FRAME_PAYLOAD) throw new RangeError(`a frame payload of ${payloadLength} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  target.writeUInt8(type, 0);
  target.writeUInt32BE(payloadLength, 1);
}

export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(type, payload.length), payload]);
}

export function encodeJsonFrame(type: FrameType, message: object): Buffer {
  return encodeFrame(type, Buffer.from(JSON.stringify(message), 'utf8'));
}

export function parseJsonPayload(type: FrameType, payload: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ProtocolError(`frame type ${type}: payload is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError(`frame type ${type}: payload is not a JSON object`);
  return value as Record<string, unknown>;
}

const isOffset = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
// Terminal sizes are u16 in struct winsize; anything else is a broken or hostile peer.
const isDimension = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 0xffff;

export function parseHello(payload: Buffer): Hello {
  const value = parseJsonPayload(FrameType.hello, payload);
  if (value.protocol !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol ${String(value.protocol)}, this keeper speaks ${PROTOCOL_VERSION}`);
  const resumeFrom = value.resumeFrom ?? null;
  if (resumeFrom !== null && !isOffset(resumeFrom)) throw new ProtocolError('hello.resumeFrom must be a non-negative integer or null');
  return { protocol: PROTOCOL_VERSION, resumeFrom };
}

function toWindowSize(value: unknown): WindowSize {
  const size = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (!isDimension(size.cols) || !isDimension(size.rows)) throw new ProtocolError('a window size needs integer cols and rows in 1..65535');
  return { cols: size.cols, rows: size.rows };
}

export function parseWindowSize(payload: Buffer): WindowSize {
  return toWindowSize(parseJsonPayload(FrameType.resize, payload));
}

export function parseInfo(payload: Buffer): Info {
  const value = parseJsonPayload(FrameType.info, payload);
  if (!isOffset(value.offset) || !isOffset(value.end) || !isOffset(value.dropped)) throw new ProtocolError('info needs offset, end and dropped');
  const size = value.size === null || value.size === undefined ? null : toWindowSize(value.size);
  return { protocol: Number(value.protocol), offset: value.offset, end: value.end, dropped: value.dropped, size };
}

const BYE_REASONS: readonly ByeReason[] = ['vm-ended', 'too-slow', 'protocol-error', 'keeper-stopped'];

export function parseBye(payload: Buffer): Bye {
  const value = parseJsonPayload(FrameType.bye, payload);
  if (!BYE_REASONS.includes(value.reason as ByeReason) || !isOffset(value.offset)) throw new ProtocolError('bye needs a known reason and an offset');
  return { reason: value.reason as ByeReason, offset: value.offset, ...(typeof value.message === 'string' ? { message: value.message } : {}) };
}

export interface FrameDecoderOptions {
  /** Larger frames are a ProtocolError. Default MAX_FRAME_PAYLOAD. */
  maxPayload?: number;
  /**
   * Frame types whose payload is a plain byte stream (DATA, INPUT): handed out piece by piece as it
   * arrives, so a frame split across socket reads costs no joining copy and no wait.
   */
  streamed?: readonly number[];
}

/**
 * Splits a byte stream into frames. Whole payloads that arrive in one chunk are handed out as views of
 * it (no copy); only non-streamed payloads spread over several chunks are joined.
 */
export class FrameDecoder {
  readonly #maxPayload: number;
  readonly #streamed: ReadonlySet<number>;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFilled = 0;
  #type = 0;
  #remaining = 0;
  #parts: Buffer[] = [];

  constructor(options: FrameDecoderOptions = {}) {
    this.#maxPayload = options.maxPayload ?? MAX_FRAME_PAYLOAD;
    this.#streamed = new Set(options.streamed ?? []);
  }

  /**
   * Feeds bytes; calls onFrame for each complete frame, and for each piece of a streamed frame.
   * Throws ProtocolError on an oversized frame.
   */
  push(chunk: Buffer, onFrame: (type: number, payload: Buffer) => void): void {
    let position = 0;
    while (position < chunk.length) {
      if (this.#headerFilled < FRAME_HEADER_BYTES) {
        const take = Math.min(FRAME_HEADER_BYTES - this.#headerFilled, chunk.length - position);
        chunk.copy(this.#header, this.#headerFilled, position, position + take);
        this.#headerFilled += take;
        position += take;
        if (this.#headerFilled < FRAME_HEADER_BYTES) return;
        this.#type = this.#header.readUInt8(0);
        this.#remaining = this.#header.readUInt32BE(1);
        if (this.#remaining > this.#maxPayload) throw new ProtocolError(`frame of ${this.#remaining} bytes exceeds the ${this.#maxPayload}-byte limit`);
        if (this.#remaining === 0) {
          this.#headerFilled = 0;
          if (!this.#streamed.has(this.#type)) onFrame(this.#type, Buffer.alloc(0));
        }
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - position);
      const piece = chunk.subarray(position, position + take);
      position += take;
      this.#remaining -= take;
      if (this.#remaining === 0) this.#headerFilled = 0;
      if (this.#streamed.has(this.#type)) {
        onFrame(this.#type, piece);
      } else if (this.#remaining > 0) {
        this.#parts.push(piece);
      } else if (this.#parts.length === 0) {
        onFrame(this.#type, piece);
      } else {
        this.#parts.push(piece);
        const joined = Buffer.concat(this.#parts);
        this.#parts = [];
        onFrame(this.#type, joined);
      }
    }
  }
}
