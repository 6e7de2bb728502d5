import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';

/**
 * Real block devices for tests: loop devices over sparse files, and LVM volume groups on them (with LVs
 * where the kernel has device-mapper). Everything made here is undone by `dispose` (mounts, swap, VGs,
 * loop devices, nodes and links made under /dev), also after a failed test. Names carry the process id
 * and random bytes, so parallel runs never touch each other's devices.
 */
const execFileP = promisify(execFile);
const sh = (cmd: string, args: string[]) => execFileP(cmd, args, { maxBuffer: 16 << 20 });

/** The label a host's disk node carries in the reference policy. */
export const FIXED_DISK_LABEL = 'system_u:object_r:fixed_disk_device_t:s0';

export interface DeviceBed {
  /** A unique tag for names (VGs, /dev entries). */
  readonly tag: string;
  /** Whether LVs can be activated here (device-mapper in the kernel). */
  readonly deviceMapper: boolean;
  /** A new loop device over a sparse file of `sizeMiB` (or over the device `over`), labeled FIXED_DISK_LABEL, root:disk 0660. */
  loop(sizeMiB?: number, over?: string): Promise<string>;
  /** A volume group on `pv` (a loop device) with a unique name; `lvs` LVs of 8 MiB when device-mapper is there. */
  volumeGroup(pv: string, lvs?: string[]): Promise<{ vg: string; lvs: string[] }>;
  /** mkfs.ext4 on the device and mounts it under the bed's directory. */
  mount(device: string): Promise<string>;
  /** mkswap and swapon. */
  swapOn(device: string): Promise<void>;
  /** Records a path made under /dev (a node, a link) for removal. */
  madeUnderDev(p: string): void;
  dispose(): Promise<void>;
}

async function labelAsHostDisk(device: string): Promise<void> {
  await sh('setfattr', ['-n', 'security.selinux', '-v', FIXED_DISK_LABEL, device]);
  await sh('chown', ['root:disk', device]).catch(() => sh('chown', ['root:root', device]));
  await sh('chmod', ['0660', device]);
}

export async function createDeviceBed(dir: string): Promise<DeviceBed> {
  const tag = `svt${process.pid}x${randomBytes(3).toString('hex')}`;
  const deviceMapper = existsSync('/sys/class/misc/device-mapper') || (await sh('dmsetup', ['version']).then(() => true, () => false));
  const backing = path.join(dir, `devices-${tag}`);
  await mkdir(backing, { recursive: true });
  const loops: string[] = [];
  const vgs: string[] = [];
  const mounts: string[] = [];
  const swaps: string[] = [];
  const devEntries: string[] = [];
  return {
    tag,
    deviceMapper,
    async loop(sizeMiB = 16, over) {
      const file = over ?? path.join(backing, `loop-${loops.length}.img`);
      if (over === undefined) await sh('truncate', ['-s', `${sizeMiB}M`, file]);
      const { stdout } = await sh('losetup', ['--find', '--show', file]);
      const device = stdout.trim();
      loops.push(device);
      await labelAsHostDisk(device);
      return device;
    },
    async volumeGroup(pv, lvs = []) {
      const vg = `${tag}vg${vgs.length}`;
      await sh('vgcreate', ['-q', vg, pv]);
      vgs.push(vg);
      if (!deviceMapper) return { vg, lvs: [] };
      const made: string[] = [];
      for (const lv of lvs) {
        await sh('lvcreate', ['-q', '-y', '-L', '8M', '-n', lv, vg]);
        const node = `/dev/${vg}/${lv}`;
        await labelAsHostDisk(node);
        made.push(node);
      }
      return { vg, lvs: made };
    },
    async mount(device) {
      await sh('mkfs.ext4', ['-q', '-F', device]);
      const point = path.join(backing, `mnt-${mounts.length}`);
      await mkdir(point);
      await sh('mount', [device, point]);
      mounts.push(point);
      return point;
    },
    async swapOn(device) {
      await sh('mkswap', ['-q', device]).catch(() => sh('mkswap', [device]));
      await sh('swapon', [device]);
      swaps.push(device);
    },
    madeUnderDev(p) {
      devEntries.push(p);
    },
    async dispose() {
      const quietly = (p: Promise<unknown>) => p.catch(() => undefined);
      for (const m of mounts.reverse()) await quietly(sh('umount', ['-l', m]));
      for (const s of swaps) await quietly(sh('swapoff', [s]));
      for (const vg of vgs) {
        await quietly(sh('vgchange', ['-q', '-an', vg]));
        await quietly(sh('vgremove', ['-q', '-f', vg]));
      }
      for (const loop of loops) {
        await quietly(sh('pvremove', ['-q', '-ff', '-y', loop]));
        await quietly(sh('losetup', ['-d', loop]));
      }
      for (const p of devEntries) await quietly(rm(p, { force: true }));
      await rm(backing, { recursive: true, force: true });
    },
  };
}

/** Owner and mode of a device node, for before/after comparisons. */
export async function nodeOwner(p: string): Promise<{ uid: number; gid: number; mode: number; ino: number }> {
  const st = await stat(p);
  return { uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino };
}
