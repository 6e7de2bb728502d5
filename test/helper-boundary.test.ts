import { execFileSync, spawnSync } from 'node:child_process';
import { chown, copyFile, mkdir, readdir, readFile, readlink, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/user/helper-client';
import { OVMF_VARS_TEMPLATE } from '../src/host/firmware';
import { GUEST_READY_MARKER } from './support/guest';
import { ConsoleTap, createTestHost, type TestHost } from './support/helper-session';
import { wireDefinition } from './support/wire-definition';

// The helper as a boundary between local users (issue 12): real helpers acting for two uids, real qemu.
const OTHER_UID = 4242;
let host: TestHost;
let root: HelperClient;
let other: HelperClient;

const definition = (name: string, disks: object[], boot: object = { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append }) => wireDefinition({
  version: 1, name, memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(), boot, disks, seclabel: { mode: 'dynamic' },
});
const disk = (p: string, cls: 'private' | 'shared' | 'readonly') => ({ path: p, format: 'raw', class: cls, relabel: true });

/** What a promise settled with within `ms`, or 'pending'. */
const within = <T>(p: Promise<T>, ms: number): Promise<{ value: T } | { error: Error } | 'pending'> =>
  Promise.race([
    p.then((value) => ({ value }), (error: Error) => ({ error })),
    new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms)),
  ]);

beforeAll(async () => {
  // A uid range of its own: test files run side by side, and another file's VM could take the id this file
  // expects back (the allocator rightly skips ids that running processes hold).
  host = await createTestHost({ vmIdRange: `${VM_IDS.first}-${VM_IDS.last}` });
  root = host.startHelper();
  other = host.startHelper({ SUDO_UID: String(OTHER_UID) });
  // Each helper probes the accelerator once (a real guest run): done here, not inside a timed request.
  await Promise.all([root.request('status'), other.request('status')]);
});
afterAll(async () => {
  for (const helper of [root, other]) {
    const running = await within(helper.request('list'), 5_000);
    if (running !== 'pending' && 'value' in running) for (const vm of running.value) await within(helper.request('forceOff', { vm: vm.id }), 30_000);
  }
  await host.dispose();
});

describe('helper boundary between users', () => {
  it('refuses a FIFO given as a disk at once, and another user\'s start proceeds meanwhile', async () => {
    const fifo = path.join(host.dir, 'disk.fifo');
    execFileSync('mkfifo', ['-m', '0600', fifo]);
    await chown(fifo, OTHER_UID, OTHER_UID);
    const fifoStart = other.request('start', { definition: definition('fifo-vm', [disk(fifo, 'private')], { kind: 'disk' }), allowUnconfined: true });
    const rootStart = root.request('start', { definition: definition('beside-fifo', [disk(await host.disk('beside.img'), 'private')]), allowUnconfined: true });
    // A refusal needs no waiting at all; 30 s only bounds a busy machine (the old code never returned).
    const fifoResult = await within(fifoStart, 30_000);
    expect(fifoResult === 'pending' ? 'still waiting after 30 s' : 'error' in fifoResult ? fifoResult.error.message : 'started').toMatch(/not a regular file/);
    const rootResult = await within(rootStart, 60_000);
    expect(rootResult !== 'pending' && 'value' in rootResult ? rootResult.value.name : rootResult).toBe('beside-fifo');
    await root.request('forceOff', { vm: 'beside-fifo' });
  });
});

/** Real, effective, saved and fs uids and gids of a process. */
async function ids(pid: number): Promise<{ uids: number[]; gids: number[] }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => (new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/).map(Number);
  return { uids: field('Uid'), gids: field('Gid') };
}

const VM_IDS = { first: 62100, last: 62199 };

/** The one uid (= gid) a VM's qemu runs as, checked to be one of the configured range. */
async function vmUid(pid: number): Promise<number> {
  const { uids, gids } = await ids(pid);
  expect(new Set([...uids, ...gids]).size).toBe(1);
  const uid = uids[0] as number;
  expect(uid).toBeGreaterThanOrEqual(VM_IDS.first);
  expect(uid).toBeLessThanOrEqual(VM_IDS.last);
  return uid;
}

/** Boot files and a disk owned by the other user, as that user's own would be. */
async function otherUsersFiles(name: string): Promise<{ boot: object; disk: string }> {
  const boot = { kind: 'kernel', kernel: path.join(host.dir, `${name}-vmlinuz`), initrd: path.join(host.dir, `${name}-initrd.gz`), cmdline: host.append };
  await copyFile(host.kernel, boot.kernel);
  await copyFile(host.initrd, boot.initrd);
  const img = await host.disk(`${name}.img`);
  for (const p of [boot.kernel, boot.initrd, img]) await chown(p, OTHER_UID, OTHER_UID);
  return { boot, disk: img };
}

/** Until the pid is gone and reaped (not only a zombie). */
async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 400 && (await readFile(`/proc/${pid}/status`, 'utf8').then(() => true, () => false)); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('each VM runs as its own uid', () => {
  it('runs two VMs as two uids of the range, and one VM\'s uid cannot open the other\'s disk through /proc/PID/fd', async () => {
    const rootDisk = await host.disk('uid-root.img');
    const theirs = await otherUsersFiles('uid-other');
    const a = await root.request('start', { definition: definition('uid-a', [disk(rootDisk, 'private')]), allowUnconfined: true });
    const b = await other.request('start', { definition: definition('uid-b', [disk(theirs.disk, 'private')], theirs.boot), allowUnconfined: true });
    const [uidA, uidB] = [await vmUid(a.pid!), await vmUid(b.pid!)];
    expect(uidA).not.toBe(uidB);
    // A private disk belongs to its VM's uid while it runs.
    expect((await stat(rootDisk)).uid).toBe(uidA);
    expect((await stat(theirs.disk)).uid).toBe(uidB);

    // B's qemu holds B's disk open; A's uid (a process of its own, as a compromised qemu would be) cannot reach it.
    const fds = await readdir(`/proc/${b.pid}/fd`);
    const links = await Promise.all(fds.map((fd) => readlink(`/proc/${b.pid}/fd/${fd}`).catch(() => '')));
    const diskFd = fds.find((_, i) => links[i] === theirs.disk);
    expect(diskFd).toBeDefined();
    const asA = spawnSync('head', ['-c', '16', `/proc/${b.pid}/fd/${diskFd}`], { uid: uidA, gid: uidA, encoding: 'utf8' });
    expect({ status: asA.status, stderr: asA.stderr }).toMatchObject({ status: 1, stderr: expect.stringMatching(/Permission denied/) });

    await Promise.all([root.request('forceOff', { vm: 'uid-a' }), other.request('forceOff', { vm: 'uid-b' })]);
    expect((await stat(rootDisk)).uid).toBe(0);
    expect((await stat(theirs.disk)).uid).toBe(OTHER_UID);
  });

  it('gives the UEFI variable store, which qemu writes, to the VM\'s uid while it runs and back to its owner at stop', async () => {
    const nvram = await host.disk('uid-nvram.fd');
    await copyFile(OVMF_VARS_TEMPLATE, nvram);
    await chown(nvram, OTHER_UID, OTHER_UID);
    const vm = await root.request('start', { definition: { ...definition('uid-uefi', []), firmware: { kind: 'uefi', nvram } }, allowUnconfined: true });
    expect((await stat(nvram)).uid).toBe(await vmUid(vm.pid!));
    await root.request('forceOff', { vm: 'uid-uefi' });
    expect((await stat(nvram)).uid).toBe(OTHER_UID);
  });

  it('boots a kernel and initrd whose paths hold commas', async () => {
    const dir = path.join(host.dir, 'boot,files');
    await mkdir(dir);
    const boot = { kind: 'kernel', kernel: path.join(dir, 'vmlinuz,1'), initrd: path.join(dir, 'initrd,1.gz'), cmdline: host.append };
    await copyFile(host.kernel, boot.kernel);
    await copyFile(host.initrd, boot.initrd);
    await root.request('start', { definition: definition('comma-boot', [], boot), allowUnconfined: true });
    const tap = await ConsoleTap.attach(root, 'comma-boot');
    await tap.waitFor(new RegExp(GUEST_READY_MARKER), 120_000);
    await root.request('forceOff', { vm: 'comma-boot' });
  });

  it('after a helper crash and a dead qemu, reconcile gives the disk its owner back and frees the VM\'s uid', async () => {
    const theirs = await otherUsersFiles('crash');
    const vm = await other.request('start', { definition: definition('crashed', [disk(theirs.disk, 'private')], theirs.boot), allowUnconfined: true });
    const uid = await vmUid(vm.pid!);
    expect((await stat(theirs.disk)).uid).toBe(uid);
    other.kill('SIGKILL');
    await other.exited;
    process.kill(vm.pid!, 'SIGKILL');
    await waitGone(vm.pid!);

    other = host.startHelper({ SUDO_UID: String(OTHER_UID) });
    expect(await other.request('list')).toEqual([]);
    expect((await stat(theirs.disk)).uid).toBe(OTHER_UID);
    const registry = JSON.parse(await readFile(path.join(host.stateDir, 'registry.json'), 'utf8')) as { vms: Record<string, { qemuUid?: number }> };
    expect(Object.values(registry.vms).map((r) => r.qemuUid)).not.toContain(uid);
    // The id is free again: the next VM gets it.
    const again = await other.request('start', { definition: definition('crashed', [disk(theirs.disk, 'private')], theirs.boot), allowUnconfined: true });
    expect(await vmUid(again.pid!)).toBe(uid);
    await other.request('forceOff', { vm: 'crashed' });
  });
});
