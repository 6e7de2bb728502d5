// Every byte a real guest writes to its serial console reaches the console keeper, from the very first one,
// also while the host is busy.
//
// The reference is the guest's own kernel log of the same boot, carried out through a lossless channel:
// the guest shell writes `dmesg -r` onto the VM's private disk, and the test reads the image afterwards.
// The kernel prints each record with a level below the console log level (7, Debian's default) to the
// console as "[time] text" lines ending in "\r\n" (the 8250 console turns "\n" into "\r\n"), in log order,
// and nothing else reaches ttyS0 until /init prints its ready line. So the keeper's capture before that
// line must be exactly the first records of that log, formatted so, starting at offset 0, with every
// record up to the start of userspace. One lost or changed byte breaks a record and fails the match.
// The burst goes the same way (`echo > /dev/kmsg` with the console log level raised): N numbered lines
// of known content, each of which must appear once, whole and in order.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/user/helper-client';
import { GUEST_READY_MARKER } from './support/guest';
import { ConsoleTap, createTestHost, type TestHost } from './support/helper-session';
import { wireDefinition } from './support/wire-definition';

const CONSOLE_LOGLEVEL = 7;
const BURST_LINES = 600;
const BURST_TEXT = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

let host: TestHost;
let helper: HelperClient;
const hogs: ChildProcess[] = [];

beforeAll(async () => {
  host = await createTestHost();
  helper = host.startHelper();
});
afterAll(async () => {
  for (const hog of hogs) hog.kill('SIGKILL');
  const running = await helper.request('list').catch(() => []);
  for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  await host.dispose();
});

/** The console lines the kernel prints for a `dmesg -r` dump ("<prio>[time] text" per line). */
function consoleLines(dump: string): string[] {
  const lines: string[] = [];
  for (const line of dump.split('\n')) {
    const match = /^<(\d+)>(.*)$/.exec(line);
    if (match && Number(match[1]) % 8 < CONSOLE_LOGLEVEL) lines.push(`${match[2]}\r\n`);
  }
  return lines;
}

/** How many of `lines`, in order from the first, make up `text` exactly; throws at the first byte that differs. */
function matchRecords(text: string, lines: string[]): number {
  let at = 0;
  let count = 0;
  for (const line of lines) {
    if (at === text.length) break;
    if (!text.startsWith(line, at)) {
      throw new Error(`console output differs from the guest's log at byte ${at} (record ${count}):\n  expected ${JSON.stringify(line)}\n  got      ${JSON.stringify(text.slice(at, at + line.length + 40))}`);
    }
    at += line.length;
    count++;
  }
  if (at !== text.length) throw new Error(`console output has ${text.length - at} bytes after the last of the guest's ${lines.length} records: ${JSON.stringify(text.slice(at, at + 200))}`);
  return count;
}

describe('console bytes from a real guest', () => {
  it('the keeper has the whole boot log from byte 0 and every line of a burst, with the host busy', async () => {
    // Busy host: one CPU hog per core, beside the guest, the helper and the keeper.
    for (let i = 0; i < 2; i++) hogs.push(spawn('sha256sum', ['/dev/zero'], { stdio: 'ignore' }));
    const log = await host.disk('log.img');
    const definition = wireDefinition({
      version: 1, name: 'bytes', memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(),
      // devkmsg=on: /dev/kmsg lines are not rate-limited, so the burst prints whole.
      boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: `${host.append} printk.devkmsg=on` },
      disks: [{ path: log, format: 'raw', class: 'private', relabel: true }],
      seclabel: { mode: 'dynamic' },
    });
    await helper.request('start', { definition, allowUnconfined: true });
    const tap = await ConsoleTap.attach(helper, 'bytes');
    await tap.waitFor(/guest# /, 240_000);
    await tap.run('dmesg -r > /dev/vda; sync; echo dumped-$((2*3))', /dumped-6/, 60_000);

    const burstFrom = tap.output.length;
    await tap.run(
      `dmesg -n 8; i=0; while [ $i -lt ${BURST_LINES} ]; do echo "burst-$i-${BURST_TEXT}" > /dev/kmsg; i=$((i+1)); done; dmesg -n 1; echo burst-done-$((${BURST_LINES}))`,
      new RegExp(`burst-done-${BURST_LINES}\\r?\\n`),
      240_000,
    );
    const burst = tap.output.slice(burstFrom);
    await helper.request('forceOff', { vm: 'bytes' });
    for (const hog of hogs) hog.kill('SIGKILL');

    // Boot: the keeper's capture up to the ready line is the guest's log, record for record, from byte 0.
    const ready = tap.output.indexOf(`${GUEST_READY_MARKER}\r\n`);
    expect(ready).toBeGreaterThan(0);
    const dump = (await readFile(log)).toString('latin1').split('\0')[0] as string;
    const lines = consoleLines(dump);
    const userspace = lines.findIndex((l) => / Run \/init as init process\r\n$/.test(l));
    expect(userspace).toBeGreaterThan(0);
    const printed = matchRecords(tap.output.slice(0, ready), lines);
    expect(printed).toBeGreaterThan(userspace);
    console.log(`boot: ${ready} bytes, ${printed} of the guest's ${lines.length} console records, identical from byte 0`);

    // Burst: every numbered line once, whole, in order.
    const seen = [...burst.matchAll(/\[\s*\d+\.\d+\] burst-(\d+)-(\S*)\r\n/g)];
    const broken = seen.filter((m) => m[2] !== BURST_TEXT).map((m) => m[0]);
    expect(broken).toEqual([]);
    expect(seen.map((m) => Number(m[1]))).toEqual(Array.from({ length: BURST_LINES }, (_, i) => i));
    console.log(`burst: ${seen.length} of ${BURST_LINES} lines whole, ${burst.length} bytes`);
  });
});
