// A fixed-capacity byte ring holding the most recent console output.
// Offsets are absolute (bytes ever written), so a viewer that remembers where it stopped can ask for
// exactly what came after, and learn how much it missed if the ring has already overwritten it.

/**
 * 8 MiB: what a viewer that is behind (a burst of boot logs into a busy renderer) or reconnecting (the app
 * restarted) can still get; reading the guest pauses only once a viewer is ¾ of it behind, so a larger
 * ring also keeps bursts flowing (bench:console: 0.79× raw at 1 MiB, 0.89× at 8 MiB). The memory is
 * touched only as output arrives. A new viewer is replayed the newest DEFAULT_REPLAY_BYTES of it.
 */
export const DEFAULT_RING_BYTES = 8 * 1024 * 1024;
/** What a viewer attaching afresh is replayed: enough scrollback for a terminal, quick to draw. */
export const DEFAULT_REPLAY_BYTES = 1024 * 1024;

/** What since() answers: the retained bytes after an offset, and how many before them are gone. */
export interface RingSlice {
  /** Absolute offset of bytes[0]. */
  readonly from: number;
  readonly bytes: Buffer;
  /** Bytes between the requested offset and `from` that the ring no longer holds. */
  readonly dropped: number;
}

export class ScrollbackRing {
  readonly capacity: number;
  readonly #store: Buffer;
  /** Index in #store where the next byte goes. */
  #head = 0;
  #size = 0;
  #totalWritten = 0;

  constructor(capacity: number = DEFAULT_RING_BYTES) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.#store = Buffer.allocUnsafe(capacity);
  }

  /** Bytes ever appended; also the absolute offset just past the newest byte. */
  get totalWritten(): number {
    return this.#totalWritten;
  }

  /** Absolute offset of the oldest byte still held. */
  get startOffset(): number {
    return this.#totalWritten - this.#size;
  }

  /** Bytes currently held (≤ capacity). */
  get size(): number {
    return this.#size;
  }

  append(chunk: Uint8Array): void {
    const length = chunk.length;
    if (length === 0) return;
    this.#totalWritten += length;
    if (length >= this.capacity) {
      // Only the tail can survive: copy it once instead of cycling the whole chunk through the ring.
      this.#store.set(chunk.subarray(length - this.capacity));
      this.#head = 0;
      this.#size = this.capacity;
      return;
    }
    const untilEnd = this.capacity - this.#head;
    if (length <= untilEnd) {
      this.#store.set(chunk, this.#head);
    } else {
      this.#store.set(chunk.subarray(0, untilEnd), this.#head);
      this.#store.set(chunk.subarray(untilEnd), 0);
    }
    this.#head = (this.#head + length) % this.capacity;
    this.#size = Math.min(this.capacity, this.#size + length);
  }

  /** A copy of every retained byte, oldest first. */
  snapshot(): Buffer {
    return this.read(this.startOffset, this.#size);
  }

  /**
   * The retained bytes after absolute `offset`. An offset older than the ring starts at the oldest byte
   * and reports the gap as `dropped`; an offset past totalWritten is a caller error (it was never written).
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
    const length = Math.min(target.length, this.#totalWritten - offset);
    if (offset < this.startOffset || length < 0) {
      throw new RangeError(`offset ${offset} is not retained (${this.startOffset}..${this.#totalWritten})`);
    }
    if (length === 0) return 0;
    // Where `offset` sits in #store: #head is the slot of offset totalWritten (mod capacity).
    const back = this.#totalWritten - offset;
    const start = (this.#head - back + this.capacity * 2) % this.capacity;
    const firstPart = Math.min(length, this.capacity - start);
    this.#store.copy(target, 0, start, start + firstPart);
    if (firstPart < length) this.#store.copy(target, firstPart, 0, length - firstPart);
    return length;
  }
}
