import { copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/user/helper-client';
import { readLabel, writeLabel } from '../src/security/selinux/file-labels';
import { createNvram } from '../src/host/firmware';
import { GUEST_READY_MARKER } from './support/guest';
import { ConsoleTap, createTestHost, ORIGINAL_LABEL, type TestHost } from './support/helper-session';
import { testIso } from './support/test-iso';
import { freePort } from './support/free-port';
import { wireDefinition } from './support/wire-definition';

// Installing from an ISO, through the real helper: a CD-ROM booted by SeaBIOS or OVMF, user-mode networking,
// a VNC display, and the labels of every file the VM opens (real qemu under TCG, real xattrs).
let host: TestHost;
let helper: HelperClient;
let iso: string;
let page: http.Server;
let pagePort: number;
const PAGE = `svirt-loopback-page-${process.pid}`;

const CONTENT_LABEL = 'system_u:object_r:virt_content_t:s0';

const definition = (name: string, extra: object = {}) => wireDefinition({
  version: 1, name, memoryMiB: 256, vcpus: 1, createdAt: new Date().toISOString(),
  boot: { kind: 'iso', iso }, disks: [], seclabel: { mode: 'dynamic' }, network: { mode: 'user' }, ...extra,
});

const qemuArgs = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');

/** Connects to the guest's forwarded port until the guest's listener answers (it starts in the background). */
async function readForwarded(port: number, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await new Promise<string>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let got = '';
      socket.setEncoding('latin1').on('data', (d: string) => (got += d));
      socket.on('close', () => resolve(got));
      socket.on('error', () => resolve(''));
    });
    if (text !== '' || Date.now() > deadline) return text;
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  host = await createTestHost();
  helper = host.startHelper();
  iso = path.join(host.dir, 'install.iso');
  await copyFile(await testIso(), iso);
  await writeLabel(iso, ORIGINAL_LABEL);
  page = http.createServer((_req, res) => res.end(`${PAGE}\n`));
  await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
  pagePort = (page.address() as net.AddressInfo).port;
}, 300_000);

afterAll(async () => {
  const running = await helper.request('list').catch(() => []);
  for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  page?.close();
  await host.dispose();
});

describe('installing from an ISO', () => {
  it('boots the ISO from a CD-ROM before the disk under SeaBIOS, reaches the host loopback by user networking, forwards a port, serves VNC', async () => {
    const disk = await host.disk('bios-disk.img');
    const hostPort = await freePort();
    const vm = await helper.request('start', {
      definition: definition('bios-iso', {
        disks: [{ path: disk, format: 'raw', class: 'private', relabel: true }],
        network: { mode: 'user', portForwards: [{ hostPort, guestPort: 8080 }] },
        display: 'vnc',
      }),
      allowUnconfined: true,
    });
    // While it runs: the ISO is read-only content, the disk the VM's private image.
    expect(await readLabel(iso)).toBe(CONTENT_LABEL);
    expect(await readLabel(disk)).toBe(`system_u:object_r:svirt_image_t:${vm.level}`);
    const args = await qemuArgs(vm.pid!);
    expect(args.filter((a) => a.startsWith('ide-cd,') || a.startsWith('virtio-blk-pci,'))).toEqual([
      'virtio-blk-pci,drive=drive1,bootindex=2',
      'ide-cd,drive=drive2,bootindex=1',
    ]);
    expect(args.some((a) => a.includes(iso))).toBe(false); // handed over as an fd, never opened by path
    const status = await readFile(`/proc/${vm.pid}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).not.toBe('0');
    expect(status).toMatch(/^Seccomp:\s+2$/m);

    const tap = await ConsoleTap.attach(helper, 'bios-iso');
    await tap.waitFor(new RegExp(GUEST_READY_MARKER), 120_000);
    // The kernel came from GRUB on the CD-ROM, with the ISO's command line.
    await tap.run('cat /proc/cmdline', /console=tty0 console=ttyS0/);
    await tap.run('udhcpc -i eth0 -n -q -t 10 >/dev/null 2>&1; ip -4 addr show eth0', /inet 10\.0\.2\.15\//, 60_000);
    await tap.run(`wget -q -O - http://10.0.2.2:${pagePort}/`, new RegExp(`^${PAGE}`, 'm'), 60_000);
    await tap.run('(echo forwarded-ok | nc -l -p 8080) & echo listening', /^listening/m);
    expect(await readForwarded(hostPort)).toContain('forwarded-ok');

    // qemu made its VNC socket in a directory only the qemu uid may enter, and speaks RFB on it.
    const vncDir = path.join(`${host.stateDir}-display`, '0-bios-iso');
    const dirStat = await stat(vncDir);
    expect([dirStat.uid, dirStat.mode & 0o777]).toEqual([Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]), 0o700]);
    const greeting = await new Promise<string>((resolve, reject) => {
      const s = net.connect(path.join(vncDir, 'vnc.sock'));
      s.once('data', (d) => {
        resolve(d.toString('latin1'));
        s.destroy();
      });
      s.once('error', reject);
    });
    expect(greeting).toMatch(/^RFB 003\.00\d\n/);

    await helper.request('forceOff', { vm: 'bios-iso' });
    expect(await readLabel(disk)).toBe(ORIGINAL_LABEL);
    // The installer ISO is the VM's boot medium, like a kernel: its original label is back after stop.
    expect(await readLabel(iso)).toBe(ORIGINAL_LABEL);
    await expect(stat(vncDir)).rejects.toThrow(/ENOENT/);
  }, 300_000);

  it("boots the ISO under UEFI with the VM's own variable store, labeled with its pair while it runs and restored after", async () => {
    const nvram = path.join(host.dir, 'uefi.nvram.fd');
    await createNvram(nvram);
    await writeLabel(nvram, ORIGINAL_LABEL);
    // GRUB's EFI loader runs out of memory for the kernel and initramfs with 256 MiB.
    const vm = await helper.request('start', {
      definition: definition('uefi-iso', { firmware: { kind: 'uefi', nvram }, memoryMiB: 512 }),
      allowUnconfined: true,
    });
    expect(await readLabel(nvram)).toBe(`system_u:object_r:svirt_image_t:${vm.level}`);
    const args = await qemuArgs(vm.pid!);
    expect(args.filter((a) => a.startsWith('if=pflash'))).toEqual([
      expect.stringMatching(/^if=pflash,unit=0,format=raw,readonly=on,file=\/dev\/fdset\/\d+$/),
      expect.stringMatching(/^if=pflash,unit=1,format=raw,readonly=off,file=\/dev\/fdset\/\d+$/),
    ]);
    expect(args.some((a) => a.includes(nvram))).toBe(false);
    const tap = await ConsoleTap.attach(helper, 'uefi-iso');
    await tap.waitFor(new RegExp(GUEST_READY_MARKER), 240_000);
    await tap.run('ls /sys/firmware/efi >/dev/null && echo efi-booted', /^efi-booted/m);
    await helper.request('forceOff', { vm: 'uefi-iso' });
    expect(await readLabel(nvram)).toBe(ORIGINAL_LABEL);
  }, 360_000);

  it('refuses a variable store that is not the size of the template, naming the field and labeling nothing', async () => {
    const nvram = path.join(host.dir, 'short.nvram.fd');
    await writeFile(nvram, Buffer.alloc(4096));
    await writeLabel(nvram, ORIGINAL_LABEL);
    await expect(helper.request('start', { definition: definition('bad-nvram', { firmware: { kind: 'uefi', nvram } }), allowUnconfined: true }))
      .rejects.toThrow(/firmware\.nvram is 4096 bytes/);
    expect(await readLabel(nvram)).toBe(ORIGINAL_LABEL);
    expect(await helper.request('list')).toEqual([]);
  });
});
