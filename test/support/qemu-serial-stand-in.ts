import { closeSync, constants as fsc, openSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createSerialLine, serialFifos } from '../../src/root/console/serial-line';

/**
 * qemu's side of a serial line (src/root/console/serial-line.ts), for stand-ins of qemu in tests and the
 * console benchmark: the line's FIFOs made in `dir`/serial, then opened read-write as qemu's pipe chardev
 * opens them. `toGuest` reads what a keeper types, `fromGuest` takes output; destroying both is qemu exiting.
 */
export async function holdSerialLine(dir: string): Promise<{ line: string; fromGuest: net.Socket; toGuest: net.Socket }> {
  await mkdir(dir, { recursive: true });
  const line = await createSerialLine(path.join(dir, 'serial'), { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  const fifos = serialFifos(line);
  const open = (p: string): number => openSync(p, fsc.O_RDWR | fsc.O_NONBLOCK);
  const inFd = open(fifos.toGuest);
  let outFd: number;
  try {
    outFd = open(fifos.fromGuest);
  } catch (error) {
    closeSync(inFd);
    throw error;
  }
  return {
    line,
    fromGuest: new net.Socket({ fd: outFd, readable: false, writable: true }),
    toGuest: new net.Socket({ fd: inFd, readable: true, writable: false }),
  };
}
