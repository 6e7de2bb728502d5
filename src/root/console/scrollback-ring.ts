// The most recent console output, with absolute offsets (bytes ever written), so a viewer that remembers
// where it stopped can ask for exactly what came after, and learn how much it missed if the ring has
// already let it go.
//
// The bytes live in segments (fixed-size buffers, lent by a BufferPool) that the keeper reads qemu's
// output into directly (reserve/commit) and sends viewers views of (slice): in a flood, a byte is copied
// by the kernel into the ring and by the kernel out of it, never by the keeper (bench:console: copying
// into a ring, then out of it into a frame, was a fifth of the keeper's CPU). A segment the ring lets go
// is reused only once no socket write still holds it.

import { BufferPool } from './buffer-pool';

/**
 * 8 MiB: what a viewer that is behind (a burst of boot logs into a busy renderer) or reconnecting (the app
 * restarted) can still get; reading the guest pauses only once a viewer is ¾ of it behind, so a larger
 * ring also keeps bursts flowing (bench:console: 0.79× raw at 1 MiB, 0.89× at 8 MiB). Segments are
 * taken only as output arrives. A new viewer is replayed the newest DEFAULT_REPLAY_BYTES of it.
 */
export const DEFAULT_RING_BYTES = 8 * 1024 * 1024;
/** What a viewer attaching afresh is replayed: enough scrollback for a terminal, quick to draw. */
export const DEFAULT_REPLAY_BYTES = 1024 * 1024;
/** One read from qemu, and one frame to a viewer, at most. */
export const DEFAULT_SEGMENT_BYTES = 1024 * 1024;
/** Dropped segments kept for reuse: a flood cycles through the ring without allocating. */
const IDLE_SEGMENTS = 2;

/** What since() answers: the retained bytes after an offset, and how many before them are gone. */
export interface RingSlice {
  /** Absolute offset of bytes[0]. */
  readonly from: number;
  readonly bytes: Buffer;
  /** Bytes between the requested offset and `from` that the ring no longer holds. */
  readonly dropped: number;
}

/** Retained bytes, not copied, and the segment they lie in: hold it (segments.write) while a socket sends them. */
export interface RingView {
  readonly bytes: Buffer;
  readonly segment: Buffer;
}

interface Segment {
  readonly buffer: Buffer;
  /** Absolute offset of buffer[0]. */
  readonly start: number;
  /** Bytes written into it; the rest is free (only the newest segment is still written to). */
  filled: number;
}

export class ScrollbackRing {
  readonly capacity: number;
  readonly segmentBytes: number;
  /** Lends the segments; a socket write of a view holds its segment (BufferPool.write). */
  readonly segments: BufferPool;
  /** A reservation smaller than this starts a new segment: reads stay large, and little of a segment is left unused. */
  readonly #minReservation: number;
  /** Oldest first; their bytes are contiguous in offsets. */
  readonly #held: Segment[] = [];
  #totalWritten = 0;

  constructor(capacity: number = DEFAULT_RING_BYTES, segmentBytes: number = Math.min(capacity, DEFAULT_SEGMENT_BYTES)) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity must be a positive integer, got ${capacity}`);
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < 1 || segmentBytes > capacity) {
      throw new RangeError(`segment size must be an integer from 1 to the capacity (${capacity}), got ${segmentBytes}`);
    }
    this.capacity = capacity;
    this.segmentBytes = segmentBytes;
    this.segments = new BufferPool(segmentBytes, IDLE_SEGMENTS);
    this.#minReservation = Math.max(1, Math.floor(segmentBytes / 8));
  }

  /** Bytes ever appended; also the absolute offset just past the newest byte. */
  get totalWritten(): number {
    return this.#totalWritten;
  }

  /** Absolute offset of the oldest byte still held. */
  get startOffset(): number {
    return Math.max(this.#totalWritten - this.capacity, this.#held[0]?.start ?? this.#totalWritten);
  }

  /** Bytes currently held (≤ capacity). */
  get size(): number {
    return this.#totalWritten - this.startOffset;
  }

  /**
   * Free room at the end of the ring to read new output into (at most segmentBytes), then commit() what
   * was read. For the ring's one writer: anything appended in between is written over by the commit.
   */
  reserve(): Buffer {
    let tail = this.#held.at(-1);
    if (tail === undefined || tail.buffer.length - tail.filled < this.#minReservation) {
      tail = { buffer: this.segments.acquire(), start: this.#totalWritten, filled: 0 };
      this.#held.push(tail);
    }
    return tail.buffer.subarray(tail.filled);
  }

  /** Adds the `length` bytes read into the last reserve()'s room; returns them, not copied. */
  commit(length: number): RingView {
    const tail = this.#held.at(-1);
    if (tail === undefined || !Number.isSafeInteger(length) || length < 0 || length > tail.buffer.length - tail.filled) {
      throw new RangeError(`cannot commit ${length} bytes: more than the room reserved`);
    }
    const bytes = tail.buffer.subarray(tail.filled, tail.filled + length);
    tail.filled += length;
    this.#totalWritten += length;
    this.#letGoOfOld();
    return { bytes, segment: tail.buffer };
  }

  /** Copies `chunk` in. */
  append(chunk: Uint8Array): void {
    let position = 0;
    if (chunk.length > this.capacity) {
      // Only the chunk's last `capacity` bytes survive it: let go of all held, skip what would be let go
      // at once instead of cycling it through, and start afresh.
      for (const segment of this.#held.splice(0)) this.segments.release(segment.buffer);
      position = chunk.length - this.capacity;
      this.#totalWritten += position;
    }
    while (position < chunk.length) {
      const room = this.reserve();
      const take = Math.min(room.length, chunk.length - position);
      room.set(chunk.subarray(position, position + take));
      this.commit(take);
      position += take;
    }
  }

  /**
   * Retained bytes from absolute `offset`, up to `maxBytes` and the end of the segment that holds them,
   * not copied (empty at totalWritten). The offset must be retained.
   */
  slice(offset: number, maxBytes: number = this.segmentBytes): RingView {
    this.#checkRetained(offset);
    for (let i = this.#held.length - 1; i >= 0; i--) {
      const segment = this.#held[i] as Segment;
      if (offset < segment.start) continue;
      const at = offset - segment.start;
      return { bytes: segment.buffer.subarray(at, Math.min(segment.filled, at + maxBytes)), segment: segment.buffer };
    }
    return { bytes: Buffer.alloc(0), segment: Buffer.alloc(0) };
  }

  /** A copy of every retained byte, oldest first. */
  snapshot(): Buffer {
    return this.read(this.startOffset, this.size);
  }

  /**
   * The retained bytes after absolute `offset`, copied. An offset older than the ring starts at the oldest
   * byte and reports the gap as `dropped`; an offset past totalWritten is a caller error (it was never written).
   */
  since(offset: number, maxBytes: number = Number.POSITIVE_INFINITY): RingSlice {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.#totalWritten) {
      throw new RangeError(`offset ${offset} is outside 0..${this.#totalWritten}`);
    }
    const from = Math.max(offset, this.startOffset);
    const length = Math.min(this.#totalWritten - from, maxBytes);
    return { from, bytes: this.read(from, length), dropped: from - offset };
  }

  /** Copies `length` retained bytes starting at absolute `offset` (which must be retained). */
  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    this.readInto(offset, out);
    return out;
  }

  /** Copies retained bytes from absolute `offset` into `target`, as many as fit; returns how many. */
  readInto(offset: number, target: Uint8Array): number {
    this.#checkRetained(offset);
    const length = Math.min(target.length, this.#totalWritten - offset);
    let copied = 0;
    while (copied < length) {
      const { bytes } = this.slice(offset + copied, length - copied);
      if (bytes.length === 0) throw new Error(`the ring holds no bytes at offset ${offset + copied}`); // never: its offsets are contiguous
      target.set(bytes, copied);
      copied += bytes.length;
    }
    return length;
  }

  #checkRetained(offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < this.startOffset || offset > this.#totalWritten) {
      throw new RangeError(`offset ${offset} is not retained (${this.startOffset}..${this.#totalWritten})`);
    }
  }

  /** Lets go of the segments wholly older than the capacity (the newest ends at totalWritten, so it stays). */
  #letGoOfOld(): void {
    const keepFrom = this.#totalWritten - this.capacity;
    while (this.#held.length > 0) {
      const oldest = this.#held[0] as Segment;
      if (oldest.start + oldest.filled > keepFrom) break;
      this.segments.release(oldest.buffer);
      this.#held.shift();
    }
  }
}
