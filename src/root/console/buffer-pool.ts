// Reusable buffers for the keeper's output path: the scrollback ring's segments. Allocating a fresh large
// buffer for every read costs more CPU than moving the bytes; reusing a few halves the keeper's cost per
// byte. A buffer goes back to the pool only when nothing holds it any more: the ring has let go of it and
// every socket write of it has completed.

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
