/**
 * Listening unix sockets created at a given SELinux context, for sockets this process hands to a confined
 * child (qemu's serial, QMP and display sockets).
 *
 * Why: a socket is labeled with its creator's context. qemu in `svirt_t:s0:cA,cB` may not listen on or
 * accept from a socket labeled with the helper's range (`s0-s0:c0.c1023`): the MCS constraint on
 * `unix_stream_socket` (`h1 dom h2 or t1 != mcs_constrained_type`) refuses it, and no allow rule can lift a
 * constraint. So the socket is created at the VM's own context, as libvirt does with `setsockcreatecon()`
 * before `socket()`.
 *
 * How: the kernel keeps the socket-creation context per thread, in `/proc/thread-self/attr/sockcreate`. It
 * must be written on the very thread that calls `socket()`, and reset (an empty write, as libselinux
 * clears it) before anything else on that thread creates a socket. In node both hold here:
 *   - a synchronous fs call (openSync/writeSync) runs on the calling thread, the main thread, not in the
 *     libuv thread pool;
 *   - `net.Server.listen({ path })` in a non-cluster process creates the socket before it returns: listen →
 *     listenInCluster → _listen2 (setupListenHandle) → createServerHandle → `new Pipe()` + `handle.bind()`
 *     (libuv `uv_pipe_bind`: `uv__socket(AF_UNIX, SOCK_STREAM, 0)`, then `bind()`) and then `listen()`, all
 *     synchronous on the main thread; only the 'listening' or 'error' event comes later (nextTick).
 * Write, listen and reset therefore run in one synchronous stretch of the main thread: no other socket of
 * this process can be created in between, and the reset happens in a finally, also when listen fails.
 * `strace -f -e trace=openat,write,socket` of a call shows the write, socket() and the reset on one tid.
 *
 * Only where SELinux is enabled and the VM is confined: with `context` null nothing is written (the file
 * exists without SELinux but refuses writes).
 */
import { closeSync, constants as fsc, openSync, readFileSync, writeSync } from 'node:fs';
import net from 'node:net';

export const SOCKCREATE_ATTR = '/proc/thread-self/attr/sockcreate';

export interface ListenAtOptions {
  backlog?: number;
  /** The per-thread socket-creation attribute (a unit test passes a file of its own). */
  sockcreatePath?: string;
}

/** Writes the whole value in one write(2) (the kernel takes no partial writes); '' clears the attribute. */
function writeAttribute(file: string, value: string): void {
  // O_TRUNC is what a shell's `>` does on this file; it makes a stand-in file show the reset too. (libuv
  // opens every file close-on-exec.)
  const fd = openSync(file, fsc.O_WRONLY | fsc.O_TRUNC);
  try {
    const bytes = Buffer.from(value, 'utf8');
    const written = writeSync(fd, bytes, 0, bytes.length, null);
    if (written !== bytes.length) throw new Error(`short write to ${file}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * A listening unix socket at `socketPath`, created at `context` (null: at this process's own context).
 * The returned server accepts nothing itself (every connection is closed at once): it exists to hand its
 * fd to a child process. Throws when the context cannot be set (an invalid context, or a policy without
 * `setsockcreate` for this domain), naming the context.
 */
export async function listenUnixAt(context: string | null, socketPath: string, options: ListenAtOptions = {}): Promise<net.Server> {
  const attribute = options.sockcreatePath ?? SOCKCREATE_ATTR;
  const server = net.createServer((connection) => connection.destroy());
  const listening = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (context !== null) {
    try {
      writeAttribute(attribute, context);
    } catch (err) {
      throw new Error(`cannot create sockets at SELinux context ${context} (${attribute}): ${(err as Error).message}`, { cause: err });
    }
  }
  let resetFailure: Error | undefined;
  try {
    server.listen({ path: socketPath, backlog: options.backlog ?? 16 });
  } finally {
    if (context !== null) {
      try {
        writeAttribute(attribute, '');
      } catch (err) {
        resetFailure = err as Error;
      }
    }
  }
  if (resetFailure) {
    // Every later socket of this thread would be created at the VM's context: that is a failure.
    server.close();
    throw new Error(`cannot reset the socket-creation context (${attribute}): ${resetFailure.message}`, { cause: resetFailure });
  }
  try {
    await listening;
  } catch (err) {
    server.close();
    throw err;
  }
  return server;
}

/**
 * This process's own context at the lowest level of its range (`u:r:t:s0` for `u:r:t:s0-s0:c0.c1023`), or
 * null where SELinux is off or the context has no MLS field.
 */
export function ownLowContext(currentPath = '/proc/self/attr/current'): string | null {
  let current: string;
  try {
    current = readFileSync(currentPath, 'utf8').replace(/\0+$/, '').trim();
  } catch {
    return null; // no SELinux in this kernel
  }
  const fields = current.split(':');
  if (fields.length < 4) return null;
  const low = (fields[3] as string).split('-')[0] as string;
  return `${fields.slice(0, 3).join(':')}:${low}`;
}

/**
 * A client connection to a VM's listening socket (QMP, serial), from a socket created at this process's
 * own context lowered to s0.
 *
 * Why: the kernel gives qemu's end of an accepted connection the listening socket's type with the
 * connecting socket's MLS range. From the helper's range that is `svirt_t:s0-s0:c0.c1023`, which qemu at
 * `s0:cA,cB` may not read or write (the same MCS constraint as above). From s0 it is `svirt_t:s0`, which
 * every VM level dominates; and the helper's own type is not MCS-constrained, so its socket at s0 may still
 * connect to the VM's. (libvirt connects at the VM's own label instead; that needs connectto between
 * svirt_t sockets, which refpolicy does not grant.) Created the same way as listenUnixAt's sockets: the
 * attribute written, `net.connect` (which creates the socket before it returns) and the reset in one
 * synchronous stretch of the main thread. Without SELinux it is a plain connect.
 */
export function connectUnixLow(socketPath: string, options: { onread?: net.OnReadOpts; sockcreatePath?: string; currentPath?: string } = {}): net.Socket {
  const context = ownLowContext(options.currentPath);
  const attribute = options.sockcreatePath ?? SOCKCREATE_ATTR;
  const connectOptions = { path: socketPath, ...(options.onread ? { onread: options.onread } : {}) };
  if (context === null) return net.connect(connectOptions);
  writeAttribute(attribute, context);
  try {
    return net.connect(connectOptions);
  } finally {
    writeAttribute(attribute, '');
  }
}
