import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdtemp, readFile, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices } from '../src/user/app-services';
import type { HelperClient } from '../src/user/helper-client';
import { majMinOf, openBlockDevice } from '../src/host/block-devices';
import { readLabel } from '../src/security/selinux/file-labels';
import type { PathPolicyConfig } from '../src/host/path-policy';
import { createDeviceBed, FIXED_DISK_LABEL, nodeOwner, type DeviceBed } from './support/device-bed';
import { GUEST_READY_MARKER } from './support/guest';
import { ConsoleTap, createTestHost, type TestHost } from './support/helper-session';
import { helperEnv, REQUESTER_UID } from './reliability/support/reliability';
import { wireDefinition } from './support/wire-definition';

// Block-device disks on real devices (issue 15): loop devices over sparse files, LVM on a loop device
// (LVs only where the kernel has device-mapper), a real helper and real qemu.
const execFileP = promisify(execFile);
const SHARED = 'system_u:object_r:svirt_image_t:s0';

let dir: string;
let bed: DeviceBed;
let host: TestHost;
let root: HelperClient;
/** The devices granted to REQUESTER_UID in helper.json. */
let granted: string;
let notGranted: string;

const definition = (name: string, disks: { path: string; class: 'private' | 'shared' | 'readonly' }[]) => wireDefinition({
  version: 1, name, memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(),
  boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
  disks: disks.map((d) => ({ ...d, format: 'raw', relabel: true })), seclabel: { mode: 'dynamic' },
});

const state = async (device: string) => ({ label: await readLabel(device), ...(await nodeOwner(device)) });
const registry = async () => JSON.parse(await readFile(path.join(host.stateDir, 'registry.json'), 'utf8').catch(() => '{"vms":{}}')) as { vms: Record<string, unknown> };

/** Asks `helper` to start a VM on `device` and expects the refusal `message`, with the device untouched and no VM recorded. */
async function expectRefusedStart(helper: HelperClient, name: string, device: string, message: RegExp, cls: 'private' | 'shared' = 'private'): Promise<void> {
  const before = await state(device);
  await expect(helper.request('start', { definition: definition(name, [{ path: device, class: cls }]), allowUnconfined: true })).rejects.toThrow(message);
  expect(await state(device)).toEqual(before);
  expect(Object.keys((await registry()).vms)).not.toContain(`0/${name}`);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-blockdev-'));
  bed = await createDeviceBed(dir);
  granted = await bed.loop();
  notGranted = await bed.loop();
  host = await createTestHost({ devices: [{ device: granted, users: [String(REQUESTER_UID)] }] });
  root = host.startHelper(helperEnv(0));
});
afterAll(async () => {
  const running = await root?.request('list').catch(() => []) ?? [];
  for (const vm of running) await root.request('forceOff', { vm: vm.id }).catch(() => undefined);
  await host?.dispose();
  await bed?.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('opening a block device', () => {
  const policy = (): PathPolicyConfig => ({ pools: [], devices: [{ device: granted, users: [String(REQUESTER_UID)], groups: [] }] });
  const requester = { uid: REQUESTER_UID };

  it('checks the opened fd, so a node swapped between the look and the open is caught: the race was live and nothing is opened', async () => {
    const mounted = await bed.loop();
    await bed.mount(mounted);
    const node = `/dev/${bed.tag}-race`;
    bed.madeUnderDev(node);
    const mknod = (of: string) => execFileP('mknod', [node, 'b', ...majMinOf(statSync(of).rdev).split(':')]);
    await mknod(granted);
    // The name is the granted device when looked at; the hook swaps it for the mounted one before the open.
    let swapped = false;
    const attempt = openBlockDevice(node, {
      config: policy(), requester,
      hooks: {
        beforeOpen: async () => {
          await rm(node);
          await mknod(mounted);
          swapped = true;
        },
      },
    });
    await expect(attempt).rejects.toThrow(/changed while it was being opened \(looked at 7:\d+, opened 7:\d+\)/);
    expect(swapped).toBe(true);
    // Without the hook the same name (now the mounted device) is refused for what it is.
    await expect(openBlockDevice(node, { config: policy(), requester })).rejects.toThrow(/not allowed for this user/);
  });

  it('follows a /dev/mapper link only to its own device-mapper node', async () => {
    const link = `/dev/mapper/${bed.tag}-evil`;
    bed.madeUnderDev(link);
    await symlink(`../${path.basename(granted)}`, link);
    await expect(openBlockDevice(link, { config: policy(), requester: { uid: 0 } })).rejects.toThrow(`it points to ${granted}, not to its device-mapper node`);
    // A link that is neither LVM's nor device-mapper's is not followed at all.
    const other = `/dev/${bed.tag}-link`;
    bed.madeUnderDev(other);
    await symlink(path.basename(granted), other);
    await expect(openBlockDevice(other, { config: policy(), requester: { uid: 0 } })).rejects.toThrow(/it is a symbolic link \(only \/dev\/VG\/LV and \/dev\/mapper\/NAME links are followed\)/);
  });

  it('allows a device only to the users helper.json names for it (root: any)', async () => {
    const opened = await openBlockDevice(granted, { config: policy(), requester });
    expect(opened.path).toBe(granted);
    await opened.handle.close();
    await expect(openBlockDevice(notGranted, { config: policy(), requester })).rejects.toThrow(/is not allowed for this user: an administrator lists it/);
    await expect(openBlockDevice(granted, { config: policy(), requester: { uid: REQUESTER_UID + 1 } })).rejects.toThrow(/not allowed for this user/);
    await expect(openBlockDevice(granted, { config: { pools: [], devices: [] }, requester })).rejects.toThrow(/not allowed for this user/);
    const byRoot = await openBlockDevice(notGranted, { config: { pools: [], devices: [] }, requester: { uid: 0 } });
    await byRoot.handle.close();
  });
});

describe('refusals, each with nothing changed', () => {
  it('refuses a device not in the user\'s allowed list', async () => {
    const user = host.startHelper(helperEnv(REQUESTER_UID));
    try {
      await expectRefusedStart(user, 'not-granted', notGranted, /disks\[0\]\.path: refusing ".*": block device 7:\d+ is not allowed for this user/);
    } finally {
      await user.close();
    }
  });

  it('refuses a mounted loop device', async () => {
    const device = await bed.loop();
    const point = await bed.mount(device);
    await expectRefusedStart(root, 'mounted', device, new RegExp(`it holds the filesystem mounted on ${point}; nothing was changed`));
  });

  it('refuses an active swap device', async () => {
    const device = await bed.loop();
    await bed.swapOn(device);
    await expectRefusedStart(root, 'swap', device, /it holds active swap/);
  });

  it('refuses an LVM physical volume (and, with device-mapper, one whose LVs are active), shared or private', async () => {
    const device = await bed.loop(32);
    const { lvs } = await bed.volumeGroup(device, bed.deviceMapper ? ['busy'] : []);
    await expectRefusedStart(root, 'pv', device, /it is an LVM physical volume/);
    await expectRefusedStart(root, 'pv-shared', device, /it is an LVM physical volume/, 'shared');
    if (lvs.length > 0) await expectRefusedStart(root, 'pv-active', device, /it is in use by \/dev\/dm-\d+/);
  });

  it('refuses a device anywhere below a mounted filesystem: a loop device over it is mounted', async () => {
    const lower = await bed.loop();
    const upper = await bed.loop(0, lower);
    const point = await bed.mount(upper);
    await expectRefusedStart(root, 'below-mount', lower, new RegExp(`it lies below the filesystem mounted on ${point} \\(through ${path.basename(upper)}\\)`));
  });

  it('refuses the host\'s own root disk', async () => {
    const rootDev = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')).find((f) => f[4] === '/')?.[2];
    expect(rootDev).toMatch(/^[1-9]\d*:\d+$/);
    const node = `/dev/${path.basename(await realpath(`/sys/dev/block/${rootDev}`))}`;
    // Where the host lets root open its disk the walk names it; where it does not (a sandboxed VM's virtio
    // disk is EPERM even for root), the open itself refuses.
    await expectRefusedStart(root, 'host-root', node, /it holds the host's root filesystem \(\/\)|refusing "\/dev\/\w+": EPERM/);
  });

  it('refuses a symbolic link in /dev/mapper that points elsewhere than its device-mapper node', async () => {
    const link = `/dev/mapper/${bed.tag}-start`;
    bed.madeUnderDev(link);
    await symlink(`../${path.basename(granted)}`, link);
    const before = await state(granted);
    await expectRefusedStart(root, 'mapper-link', link, /not to its device-mapper node/);
    // The node it points at stays untouched too.
    expect(await state(granted)).toEqual(before);
  });
});

describe('VMs on block devices', () => {
  it('runs two VMs each on its own device and a third device shared by both: each private node carries its VM\'s pair and uid, the shared one svirt_image_t:s0, the guest\'s bytes land on the device, another VM is refused it, and stop restores label and owner', async () => {
    // LVs where device-mapper exists, else loop devices: the same code path (an opened block device).
    let a: string;
    let b: string;
    if (bed.deviceMapper) {
      const { lvs } = await bed.volumeGroup(await bed.loop(64), ['lv1', 'lv2']);
      [a, b] = lvs as [string, string];
    } else {
      [a, b] = [await bed.loop(), await bed.loop()];
    }
    const shared = await bed.loop();
    const before = { a: await state(a), b: await state(b), shared: await state(shared) };
    expect(before.a.label).toBe(FIXED_DISK_LABEL);

    const vmA = await root.request('start', { definition: definition('bd-a', [{ path: a, class: 'private' }, { path: shared, class: 'shared' }]), allowUnconfined: true });
    const vmB = await root.request('start', { definition: definition('bd-b', [{ path: b, class: 'private' }, { path: shared, class: 'shared' }]), allowUnconfined: true });
    const nodeOf = (p: string) => realpath(p);
    expect(await readLabel(await nodeOf(a))).toBe(`system_u:object_r:svirt_image_t:${vmA.level}`);
    expect(await readLabel(await nodeOf(b))).toBe(`system_u:object_r:svirt_image_t:${vmB.level}`);
    expect(vmA.level).not.toBe(vmB.level);
    expect(await readLabel(shared)).toBe(SHARED);
    const qemuUidOf = async (pid: number | null) => Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]);
    expect((await nodeOwner(a)).uid).toBe(await qemuUidOf(vmA.pid));
    expect((await nodeOwner(b)).uid).toBe(await qemuUidOf(vmB.pid));
    expect((await nodeOwner(shared)).uid).toBe(before.shared.uid);

    // Another VM asking for A's device privately: refused, A's node keeps A's pair.
    await expectRefusedStart(root, 'bd-thief', a, /in use by VM 0\/bd-a, privately|already in use by VM 0\/bd-a/);
    expect(await readLabel(await nodeOf(a))).toBe(`system_u:object_r:svirt_image_t:${vmA.level}`);

    for (const [vm, marker] of [['bd-a', 'SVIRT-BD-A-WROTE'], ['bd-b', 'SVIRT-BD-B-WROTE']] as const) {
      const tap = await ConsoleTap.attach(root, vm);
      await tap.waitFor(new RegExp(GUEST_READY_MARKER), 120_000);
      await tap.run(`echo ${marker} > /dev/vda && sync && echo done-$((6*7))`, /done-42/, 60_000);
    }
    await root.request('stop', { vm: 'bd-a', force: true });
    await root.request('stop', { vm: 'bd-b', force: true });

    expect((await readFile(a)).subarray(0, 16).toString()).toBe('SVIRT-BD-A-WROTE');
    expect((await readFile(b)).subarray(0, 16).toString()).toBe('SVIRT-BD-B-WROTE');
    expect(await state(a)).toEqual(before.a);
    expect(await state(b)).toEqual(before.b);
  }, 300_000);
});

describe('crashes and recreated nodes', () => {
  const journal = async () => JSON.parse(await readFile(path.join(host.stateDir, 'journal.json'), 'utf8')) as { entries: Record<string, { applied: string; owner?: unknown }> };

  it('restores a device\'s label and owner when the helper was killed after labeling it and before qemu ran', async () => {
    const device = await bed.loop();
    const before = await state(device);
    const doomed = host.startHelper(helperEnv(0, 'mid-relabel'));
    await expect(doomed.request('start', { definition: definition('bd-crash', [{ path: device, class: 'private' }]), allowUnconfined: true })).rejects.toThrow(/exited|signal|closed/);
    // Killed with the device labeled for the VM and given to its uid: the journal holds the original.
    expect((await readLabel(device))?.startsWith('system_u:object_r:svirt_image_t:s0:c')).toBe(true);
    expect((await nodeOwner(device)).uid).not.toBe(before.uid);
    expect((await journal()).entries[device]?.owner).toEqual({ uid: before.uid, gid: before.gid });

    const next = host.startHelper(helperEnv(0));
    try {
      await next.request('list');
      expect(await state(device)).toEqual(before);
      expect((await journal()).entries[device]).toBeUndefined();
    } finally {
      await next.close();
    }
  });

  it('leaves alone a node that udev made anew since it was labeled (a reboot, vgchange): it keeps its default label, the old entry goes', async () => {
    const device = await bed.loop();
    const node = `/dev/${bed.tag}-udev`;
    bed.madeUnderDev(node);
    const mknod = () => execFileP('mknod', ['-m', '0660', node, 'b', ...majMinOf(statSync(device).rdev).split(':')]);
    await mknod();
    await execFileP('setfattr', ['-n', 'security.selinux', '-v', FIXED_DISK_LABEL, node]);
    const doomed = host.startHelper(helperEnv(0, 'mid-relabel'));
    await expect(doomed.request('start', { definition: definition('bd-udev', [{ path: node, class: 'private' }]), allowUnconfined: true })).rejects.toThrow(/exited|signal|closed/);
    expect((await journal()).entries[node]).toBeDefined();
    // udev's way: the node goes and a new one comes, with the default label (here: none) and owner.
    await rm(node);
    await mknod();
    const fresh = await state(node);
    const next = host.startHelper(helperEnv(0));
    try {
      await next.request('list');
      expect(await state(node)).toEqual(fresh);
      expect((await journal()).entries[node]).toBeUndefined();
    } finally {
      await next.close();
    }
  });
});

describe('the CLI and the device list', () => {
  const svirt = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await execFileP(process.execPath, [path.resolve('bin/svirt.js'), ...args], {
        env: { ...host.env, SUDO_UID: '0', XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_DATA_HOME: path.join(dir, 'data') }, timeout: 120_000,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };

  it('defines a VM on --disk /dev/… as given, and refuses a device the host uses with the start\'s own message, naming the flag', async () => {
    const free = await bed.loop();
    const defined = await svirt('define', '--name', 'cli-dev', '--kernel', host.kernel, '--initrd', host.initrd, '--disk', `${free}:shared`);
    expect(defined).toMatchObject({ code: 0, stdout: 'defined cli-dev\n' });
    const stored = JSON.parse(await readFile(path.join(dir, 'config', 'svirt-manager', 'vms', 'cli-dev.json'), 'utf8')) as { disks?: unknown[] };
    expect(stored.disks).toEqual([{ path: free, format: 'raw', class: 'shared', relabel: true }]);

    const mounted = await bed.loop();
    const point = await bed.mount(mounted);
    const before = await state(mounted);
    const refused = await svirt('define', '--name', 'cli-mounted', '--kernel', host.kernel, '--disk', mounted);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(`--disk ${mounted}: path: refusing "${mounted}" (${mounted}, ${majMinOf(statSync(mounted).rdev)}): it holds the filesystem mounted on ${point}; nothing was changed`);
    expect(await state(mounted)).toEqual(before);
    const link = `/dev/mapper/${bed.tag}-cli`;
    bed.madeUnderDev(link);
    await symlink(`../${path.basename(free)}`, link);
    expect((await svirt('define', '--name', 'cli-link', '--kernel', host.kernel, '--disk', link)).stderr).toContain(`--disk ${link}: path: refusing "${link}": it points to ${free}, not to its device-mapper node`);
  });

  it('lists the devices a user may use, with size, content and whether the host uses them; nothing for a user nobody granted one', async () => {
    const user = host.startHelper(helperEnv(REQUESTER_UID));
    const stranger = host.startHelper(helperEnv(REQUESTER_UID + 1));
    try {
      const listed = await user.request('listDevices');
      expect(listed.map((d) => d.path)).toEqual([granted]);
      expect(listed[0]).toMatchObject({ sizeBytes: 16 * 1024 * 1024, inUse: [] });
      expect(await stranger.request('listDevices')).toEqual([]);
      const all = await root.request('listDevices');
      expect(all.map((d) => d.path)).toContain(notGranted);
    } finally {
      await user.close();
      await stranger.close();
    }
  });
});

describe('the app on a device', () => {
  it('defines a VM on a device through the helper\'s check, and its details and audit show the node\'s label and whether the host uses it', async () => {
    const device = await bed.loop();
    const services = createServices({ vmDirectory: path.join(dir, 'app-vms'), helperEnv: { ...host.env, SUDO_UID: '0' } });
    try {
      const mounted = await bed.loop();
      await bed.mount(mounted);
      await expect(services.defineVm({
        name: 'app-busy', memoryMiB: 128, vcpus: 1, disks: [{ path: mounted, format: 'raw', class: 'private', relabel: true }], seclabel: { mode: 'dynamic' },
        boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
      })).rejects.toThrow(/it holds the filesystem mounted on/);
      await services.defineVm({
        name: 'app-dev', memoryMiB: 128, vcpus: 1, disks: [{ path: device, format: 'raw', class: 'private', relabel: true }], seclabel: { mode: 'dynamic' },
        boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
      });
      const stopped = (await services.getVm({ name: 'app-dev' })).resources.find((r) => r.path === device);
      expect(stopped).toMatchObject({ actualLabel: FIXED_DISK_LABEL, hostDevice: { node: device, inUse: [] } });

      const vm = await services.startVm({ name: 'app-dev', allowUnconfined: true });
      const running = (await services.getVm({ name: 'app-dev' })).resources.find((r) => r.path === device);
      const image = `system_u:object_r:svirt_image_t:${vm.imageLevel?.level ?? ''}`;
      expect(running).toMatchObject({ expectedLabel: image, actualLabel: image, match: true, hostDevice: { node: device, inUse: [] } });
      const audit = await services.audit();
      expect(audit.resources.find((r) => r.path === device)).toMatchObject({ label: image, usedBy: ['app-dev'] });
      await services.forceOffVm({ name: 'app-dev' });
      expect(await readLabel(device)).toBe(FIXED_DISK_LABEL);
    } finally {
      await services.forceOffVm({ name: 'app-dev' }).catch(() => undefined);
      await services.dispose?.();
    }
  }, 240_000);
});

