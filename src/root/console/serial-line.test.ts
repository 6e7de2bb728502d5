import { closeSync, constants as fsc, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { holdSerialLine } from '../../../test/support/qemu-serial-stand-in';
import { enlargeSerialPipe, openSerialLine, serialFifos, SERIAL_PIPE_BYTES, type SerialLine } from './serial-line';

describe('serial line pipe', () => {
  let dir = '';
  const cleanups: (() => void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Writes up to `bytes` into the line's output pipe without blocking, as qemu would; returns how many fit. */
  async function fillOutput(line: SerialLine, chardev: string, bytes: number): Promise<number> {
    line.fromGuest.pause();
    const fd = openSync(serialFifos(chardev).fromGuest, fsc.O_WRONLY | fsc.O_NONBLOCK);
    cleanups.push(() => closeSync(fd));
    return writeSync(fd, Buffer.alloc(bytes, 0x41));
  }

  async function openLine(): Promise<{ line: SerialLine; chardev: string }> {
    dir = await mkdtemp(path.join(os.tmpdir(), 'svirt-serial-line-'));
    const held = await holdSerialLine(dir);
    const line = await openSerialLine(held.line);
    cleanups.push(() => [held.fromGuest, held.toGuest, line.fromGuest, line.toGuest].forEach((s) => s.destroy()));
    return { line, chardev: held.line };
  }

  it('an enlarged line holds a megabyte of unread output, where the kernel default holds 64 KiB', async () => {
    const plain = await openLine();
    expect(await fillOutput(plain.line, plain.chardev, SERIAL_PIPE_BYTES)).toBe(64 * 1024);
    for (const cleanup of cleanups.splice(0)) cleanup();
    await rm(dir, { recursive: true, force: true });

    const enlarged = await openLine();
    expect(await enlargeSerialPipe(enlarged.line)).toBe(SERIAL_PIPE_BYTES);
    expect(await fillOutput(enlarged.line, enlarged.chardev, SERIAL_PIPE_BYTES)).toBe(SERIAL_PIPE_BYTES);
  });

  it("leaves the reader's fd non-blocking: the keeper's event loop must never wait in read()", async () => {
    const { line } = await openLine();
    // The open file's flags (octal); O_NONBLOCK is 04000. A child given the fd as its stdin would clear
    // it for both: the flag belongs to the open file, which they share.
    const nonBlocking = (): boolean => (Number.parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${line.fromGuestFd}`, 'utf8'))?.[1] ?? '0', 8) & fsc.O_NONBLOCK) !== 0;
    expect(nonBlocking()).toBe(true);
    await enlargeSerialPipe(line);
    expect(nonBlocking()).toBe(true);
  });
});
