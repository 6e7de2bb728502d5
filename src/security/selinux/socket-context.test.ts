import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connectUnixLow, listenUnixAt, ownLowContext } from './socket-context';

// A stand-in for /proc/thread-self/attr/sockcreate: a plain file, whose content at the moment listen()
// runs is what the kernel would have used for the socket.
const VM = 'system_u:system_r:svirt_t:s0:c12,c345';

describe('listenUnixAt', () => {
  let dir: string;
  let attr: string;
  let seenAtListen: string[];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sockcreate-'));
    attr = path.join(dir, 'sockcreate');
    await writeFile(attr, '');
    seenAtListen = [];
    const listen = net.Server.prototype.listen;
    vi.spyOn(net.Server.prototype, 'listen').mockImplementation(function (this: net.Server, ...args: unknown[]) {
      seenAtListen.push(readFileSync(attr, 'utf8'));
      return (listen as (...a: unknown[]) => net.Server).apply(this, args);
    });
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  it('sets the VM context for the socket() of listen and clears it right after', async () => {
    const server = await listenUnixAt(VM, path.join(dir, 's.sock'), { sockcreatePath: attr });
    try {
      expect(seenAtListen).toEqual([VM]);
      expect(readFileSync(attr, 'utf8')).toBe('');
      expect((await stat(path.join(dir, 's.sock'))).isSocket()).toBe(true);
    } finally {
      server.close();
    }
  });

  it('clears the context also when listen fails', async () => {
    const missingDir = path.join(dir, 'no-such-dir', 's.sock');
    await expect(listenUnixAt(VM, missingDir, { sockcreatePath: attr })).rejects.toThrow(/listen/);
    expect(seenAtListen).toEqual([VM]);
    expect(readFileSync(attr, 'utf8')).toBe('');
  });

  it('does not listen when the context cannot be set, and names the context', async () => {
    await expect(listenUnixAt(VM, path.join(dir, 's.sock'), { sockcreatePath: path.join(dir, 'missing-attr') })).rejects.toThrow(
      `cannot create sockets at SELinux context ${VM}`,
    );
    expect(seenAtListen).toEqual([]);
  });

  it('leaves the attribute alone without a context (SELinux off, or an unconfined VM)', async () => {
    await writeFile(attr, 'untouched');
    const server = await listenUnixAt(null, path.join(dir, 's.sock'), { sockcreatePath: attr });
    server.close();
    expect(seenAtListen).toEqual(['untouched']);
    expect(readFileSync(attr, 'utf8')).toBe('untouched');
  });

  it('closes every connection itself: the socket is there to be handed to a child', async () => {
    const socketPath = path.join(dir, 's.sock');
    const server = await listenUnixAt(null, socketPath, { sockcreatePath: attr });
    try {
      const client = net.connect(socketPath);
      await new Promise<void>((resolve) => client.on('close', () => resolve()).on('error', () => undefined));
    } finally {
      server.close();
    }
  });
});

describe('connectUnixLow', () => {
  let dir: string;
  let attr: string;
  let current: string;
  let server: net.Server;
  const socketPath = () => path.join(dir, 'vm.sock');

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sockcreate-'));
    attr = path.join(dir, 'sockcreate');
    current = path.join(dir, 'current');
    await writeFile(attr, '');
    server = net.createServer((c) => c.end());
    await new Promise<void>((resolve) => server.listen(socketPath(), resolve));
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function connectSeeing(options: { currentPath: string }): Promise<string[]> {
    const seen: string[] = [];
    const connect = net.connect;
    vi.spyOn(net, 'connect').mockImplementation(((...args: unknown[]) => {
      seen.push(readFileSync(attr, 'utf8'));
      return (connect as (...a: unknown[]) => net.Socket)(...args);
    }) as typeof net.connect);
    const socket = connectUnixLow(socketPath(), { sockcreatePath: attr, ...options });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.destroy();
    return seen;
  }

  it('connects from this process\'s own context lowered to s0, and clears the attribute right after', async () => {
    await writeFile(current, 'unconfined_u:unconfined_r:svirt_manager_t:s0-s0:c0.c1023\0');
    expect(await connectSeeing({ currentPath: current })).toEqual(['unconfined_u:unconfined_r:svirt_manager_t:s0']);
    expect(readFileSync(attr, 'utf8')).toBe('');
  });

  it('is a plain connect where SELinux is off (no process context to read)', async () => {
    expect(await connectSeeing({ currentPath: path.join(dir, 'no-selinux') })).toEqual(['']);
    expect(ownLowContext(path.join(dir, 'no-selinux'))).toBeNull();
  });
});
