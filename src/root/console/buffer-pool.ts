// Reusable buffers for the keeper's output path. Allocating a fresh large buffer for every socket read
// (and every copy out of the ring) costs more CPU than moving the bytes; reusing a few halves the
// keeper's cost per byte. A buffer goes back to the pool only when nothing holds it any more: the read
// that filled it is done and every socket write of it has completed.

import type net from 'node:net';

export class BufferPool {
  readonly bufferBytes: number;
  readonly #maxIdle: number;
  readonly #idle: Buffer[] = [];
  /** Holders of each lent buffer. Weak: a holder that never releases only costs a fresh allocation. */
  readonly #holders = new WeakMap<Uint8Array, number>();

  constructor(bufferBytes: number, maxIdle = 8) {
    this.bufferBytes = bufferBytes;
    this.#maxIdle = maxIdle;
  }

  /** A buffer with one holder (the caller). */
  acquire(): Buffer {
    const buffer = this.#idle.pop() ?? Buffer.allocUnsafeSlow(this.bufferBytes);
    this.#holders.set(buffer, 1);
    return buffer;
  }

  /** Adds a holder, e.g. a socket write that will send (part of) it later. */
  retain(buffer: Uint8Array): void {
    const holders = this.#holders.get(buffer);
    if (holders !== undefined) this.#holders.set(buffer, holders + 1);
  }

  release(buffer: Uint8Array): void {
    const holders = this.#holders.get(buffer);
    if (holders === undefined) return;
    if (holders > 1) {
      this.#holders.set(buffer, holders - 1);
      return;
    }
    this.#holders.delete(buffer);
    if (this.#idle.length < this.#maxIdle) this.#idle.push(buffer as Buffer);
  }

  /** The bytes of `chunk` (a view into a pool buffer) written to `socket`; the buffer is held until the write completes. */
  write(socket: net.Socket, owner: Uint8Array, chunk: Uint8Array): boolean {
    this.retain(owner);
    return socket.write(chunk, () => this.release(owner));
  }
}

/**
 * net.connect's onread, reading into pool buffers after `headroom` bytes (room for a frame header in front
 * of the data, so that header and data go out in one write); onData gets each chunk and the pool buffer
 * it lives in.
 */
export function pooledReads(pool: BufferPool, onData: (chunk: Buffer, owner: Buffer) => void, headroom = 0): net.OnReadOpts {
  // libuv asks for a buffer and reports the read into it before asking again: one is lent at a time.
  let lent: Buffer | undefined;
  return {
    buffer: () => {
      lent = pool.acquire();
      return lent.subarray(headroom);
    },
    callback: (bytesRead) => {
      const owner = lent as Buffer;
      lent = undefined;
      onData(owner.subarray(headroom, headroom + bytesRead), owner);
      pool.release(owner);
      // Flow control is done with pause()/resume(), never by refusing a read here.
      return true;
    },
  };
}
