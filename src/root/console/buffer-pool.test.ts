import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BufferPool } from './buffer-pool';

describe('BufferPool', () => {
  it('lends a released buffer again, but not one still held', () => {
    const pool = new BufferPool(1024);
    const first = pool.acquire();
    expect(first.length).toBe(1024);
    pool.retain(first);
    pool.release(first);
    expect(pool.acquire()).not.toBe(first);
    pool.release(first);
    expect(pool.acquire()).toBe(first);
  });

  it('ignores buffers it did not lend and keeps at most maxIdle', () => {
    const pool = new BufferPool(16, 1);
    pool.release(Buffer.alloc(16));
    const [a, b] = [pool.acquire(), pool.acquire()];
    pool.release(a);
    pool.release(b);
    expect(pool.acquire()).toBe(a);
    expect(pool.acquire()).not.toBe(b);
  });

  it('holds a buffer until the socket write of it has completed', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'svirt-pool-'));
    try {
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(path.join(dir, 's.sock'), resolve));
      const accepted = once(server, 'connection');
      const client = net.connect({ path: path.join(dir, 's.sock') });
      const [peer] = (await accepted) as [net.Socket];
      const pool = new BufferPool(64 * 1024);
      // More than the socket buffers take at once, so the write stays pending until the peer reads.
      const held: Buffer[] = [];
      for (let i = 0; i < 64; i++) {
        const buffer = pool.acquire();
        pool.write(client, buffer, buffer);
        pool.release(buffer);
        held.push(buffer);
      }
      expect(held).not.toContain(pool.acquire());
      peer.resume();
      await new Promise<void>((resolve) => client.write(Buffer.alloc(0), () => resolve()));
      expect(held).toContain(pool.acquire());
      client.destroy();
      peer.destroy();
      server.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
