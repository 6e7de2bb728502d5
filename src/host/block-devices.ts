import { execFile } from 'node:child_process';
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, readFile, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { checkPathSyntax, isUnder, mayUsePool, openRelabelTarget, PathRefusedError, type DeviceGrant, type OpenedTarget, type OpenOptions, type PathPolicyConfig, type Requester } from './path-policy';

/**
 * Block devices as VM disks (an LV, a loop device, a disk or partition, an iSCSI LUN), the seed's lesson
 * from the Xen breakout: a VM must never reach the host's disks, so each device a VM gets carries that
 * VM's own label while it runs, and the helper refuses every device the host itself uses.
 *
 * A name is resolved to its node once: /dev/VG/LV and /dev/mapper/NAME links are followed only to the
 * /dev/dm-N node whose device-mapper name they claim, every other link is refused. The node is opened,
 * and every check from then on reads the opened fd (fstat's st_rdev → /sys/dev/block/MAJ:MIN), never the
 * name again: a node swapped between the look and the open is caught, not labeled. What the host uses is
 * read from the kernel (mountinfo, /proc/swaps, sysfs holders, slaves, partitions and loop backing files),
 * walking down from every mount and swap area so that a device anywhere under the root filesystem is
 * refused too. An exclusive open (O_EXCL), which the kernel refuses while a device is mounted, swapped on
 * or claimed by dm/md, backs the checks up and, for a private disk, holds the device for the VM's life.
 */
const run = promisify(execFile);

export interface OpenedDevice extends OpenedTarget {
  /** MAJ:MIN of the opened device. */
  readonly majMin: string;
}

// LVM's names; /dev/VG/LV links are LVM's, /dev/mapper/NAME device-mapper's (udev or lvm itself makes both).
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;
// Directories under /dev whose links are not LVM's (a VG cannot be named like them).
const NOT_VOLUME_GROUPS = new Set(['disk', 'mapper', 'block', 'char', 'fd', 'pts', 'shm', 'input', 'bus', 'net', 'snd', 'dri', 'cpu', 'hugepages', 'mqueue']);

export function majMinOf(rdev: number): string {
  // Linux's dev_t: 12 bits of major at 8..19 and the rest above 32; minor in 0..7 and 20..31, 44.. .
  const high = Math.floor(rdev / 2 ** 32);
  const low = rdev % 2 ** 32;
  const major = ((low >>> 8) & 0xfff) | ((high & 0xfffff000) >>> 0);
  const minor = (low & 0xff) | ((low >>> 12) & 0xfff00) | (((high & 0xfff) << 20) >>> 0);
  return `${major}:${minor}`;
}

/** Device-mapper's name for an LV: VG-LV with every dash inside either name doubled. */
export function dmNameOfLv(vg: string, lv: string): string {
  return `${vg.replaceAll('-', '--')}-${lv.replaceAll('-', '--')}`;
}

/** The VG and LV of a device-mapper name made by LVM (undefined when it splits into none). */
export function splitDmName(name: string): { vg: string; lv: string } | undefined {
  for (let i = 0; i < name.length; i++) {
    if (name[i] !== '-') continue;
    if (name[i + 1] === '-') {
      i++;
      continue;
    }
    return { vg: name.slice(0, i).replaceAll('--', '-'), lv: name.slice(i + 1).replaceAll('--', '-') };
  }
  return undefined;
}

const readSys = (p: string): Promise<string | undefined> => readFile(p, 'utf8').then((t) => t.trim(), () => undefined);

/** Device-mapper facts of a device: its name and uuid (LVM's LVs have `LVM-` + VG and LV uuids). */
async function dmInfo(majMin: string): Promise<{ name: string; uuid: string } | undefined> {
  const name = await readSys(`/sys/dev/block/${majMin}/dm/name`);
  if (name === undefined) return undefined;
  return { name, uuid: (await readSys(`/sys/dev/block/${majMin}/dm/uuid`)) ?? '' };
}

/** The volume group of an LV device (a top-level LV only: LVM's internal sub-volumes have uuid suffixes). */
async function volumeGroupOf(majMin: string): Promise<string | undefined> {
  const dm = await dmInfo(majMin);
  if (!dm || !/^LVM-[A-Za-z0-9]{64}$/.test(dm.uuid)) return undefined;
  return splitDmName(dm.name)?.vg;
}

/**
 * The node a device name stands for, and the device-mapper name the opened node must then have. Only
 * LVM's and device-mapper's own links are followed, one step, to a /dev/dm-N node.
 */
export async function resolveDeviceName(target: string): Promise<{ node: string; dmName?: string }> {
  checkPathSyntax(target);
  if (!isUnder(target, '/dev') || target === '/dev') throw new PathRefusedError(target, 'a block device is named by its path under /dev');
  let st: Stats;
  try {
    st = await lstat(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new PathRefusedError(target, 'no such device');
    throw new PathRefusedError(target, (err as Error).message);
  }
  const parts = target.split('/');
  const mapperName = parts.length === 4 && parts[2] === 'mapper' ? parts[3] : undefined;
  if (st.isSymbolicLink()) {
    const [, , vg, lv] = parts;
    const lvmLink = parts.length === 4 && vg !== undefined && lv !== undefined && !NOT_VOLUME_GROUPS.has(vg) && LVM_NAME.test(vg) && LVM_NAME.test(lv);
    const dmName = mapperName ?? (lvmLink ? dmNameOfLv(vg, lv) : undefined);
    if (dmName === undefined) throw new PathRefusedError(target, 'it is a symbolic link (only /dev/VG/LV and /dev/mapper/NAME links are followed); name the device node');
    const node = path.resolve(path.dirname(target), await readlink(target));
    if (!/^\/dev\/dm-[0-9]+$/.test(node)) throw new PathRefusedError(target, `it points to ${node}, not to its device-mapper node`);
    return { node, dmName };
  }
  if (!st.isBlockDevice()) throw new PathRefusedError(target, `it is not a block device`);
  return { node: target, ...(mapperName ? { dmName: mapperName } : {}) };
}

/** Whether the requester may hand the opened device to a VM (root: any device). */
async function grantFor(config: PathPolicyConfig, requester: Requester, rdev: number, majMin: string): Promise<DeviceGrant | 'root' | undefined> {
  if (requester.uid === 0) return 'root';
  const vg = await volumeGroupOf(majMin);
  for (const grant of config.devices) {
    if (!mayUsePool(grant, requester)) continue;
    if (grant.volumeGroup !== undefined && grant.volumeGroup === vg) return grant;
    if (grant.device !== undefined) {
      // The administrator's name, followed as the administrator meant it (a by-id link, an LV link).
      const granted = await stat(grant.device).catch(() => undefined);
      if (granted?.isBlockDevice() && granted.rdev === rdev) return grant;
    }
  }
  return undefined;
}

/**
 * Opens a block device for labeling or for a VM: resolves the name, opens the node without following a
 * link, and checks the opened fd: still the node that was looked at, a block device, the device-mapper
 * device its name claims, and allowed for the requester. Whether the host uses it is `deviceUseProblems`.
 */
export async function openBlockDevice(
  target: string, options: Pick<OpenOptions, 'config' | 'requester'> & { hooks?: { beforeOpen?: () => Promise<void> } },
): Promise<OpenedDevice> {
  const { node, dmName } = await resolveDeviceName(target);
  const seen = await lstat(node).catch(() => undefined);
  // Tests only: the moment a name can change under the helper, made wide to prove the fd check catches it.
  await options.hooks?.beforeOpen?.();
  let handle: FileHandle;
  try {
    // Read-only and non-blocking: this handle is only looked at (fstat, xattrs, chown through /proc).
    handle = await open(node, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new PathRefusedError(target, `${node} is a symbolic link`);
    if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV') throw new PathRefusedError(target, 'no such device');
    throw new PathRefusedError(target, (err as Error).message);
  }
  try {
    const fdPath = `/proc/${process.pid}/fd/${handle.fd}`;
    if ((await readlink(fdPath)) !== node) throw new PathRefusedError(target, `${node} resolves elsewhere (a link in a parent directory)`);
    const st = await handle.stat();
    if (!st.isBlockDevice()) throw new PathRefusedError(target, `${node} is not a block device`);
    const majMin = majMinOf(st.rdev);
    if (seen === undefined || seen.ino !== st.ino || seen.rdev !== st.rdev) {
      throw new PathRefusedError(target, `${node} changed while it was being opened (looked at ${seen ? majMinOf(seen.rdev) : 'nothing'}, opened ${majMin}); nothing was changed`);
    }
    if (dmName !== undefined) {
      const dm = await dmInfo(majMin);
      if (dm?.name !== dmName) throw new PathRefusedError(target, `it leads to device ${majMin}${dm ? ` (device-mapper ${dm.name})` : ''}, not to device-mapper device ${dmName}`);
    }
    if (!(await grantFor(options.config, options.requester, st.rdev, majMin))) {
      throw new PathRefusedError(target, `block device ${majMin} is not allowed for this user: an administrator lists it (or its volume group) under "devices" in helper.json`);
    }
    return { path: node, handle, stat: st, fdPath, majMin };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** A file or, under /dev, a block device: the one way the relabeler and the VM start open a target. */
export function openLabelTarget(target: string, options: OpenOptions): Promise<OpenedTarget> {
  return isUnder(target, '/dev') ? openBlockDevice(target, options) : openRelabelTarget(target, options);
}

/** What a device is used for on the host, keyed by MAJ:MIN; `via` names the device in between when it lies below the use. */
type HostUse = Map<string, { use: string; via?: string }>;

const sysName = async (majMin: string): Promise<string> => path.basename(await realpath(`/sys/dev/block/${majMin}`).catch(() => majMin));

/** Marks a device as used and walks down its stack: dm/md slaves, a partition's disk, a loop device's backing file. */
async function markStack(uses: HostUse, majMin: string, use: string, via: string | undefined, seen = new Set<string>()): Promise<void> {
  if (seen.has(majMin)) return;
  seen.add(majMin);
  if (!uses.has(majMin)) uses.set(majMin, via === undefined ? { use } : { use, via });
  const sys = `/sys/dev/block/${majMin}`;
  const name = await sysName(majMin);
  const below: string[] = [];
  for (const slave of await readdir(`${sys}/slaves`).catch(() => [])) {
    const dev = await readSys(`/sys/class/block/${slave}/dev`);
    if (dev) below.push(dev);
  }
  if ((await readSys(`${sys}/partition`)) !== undefined) {
    const disk = await readSys(path.join(path.dirname(await realpath(sys)), 'dev'));
    if (disk) below.push(disk);
  }
  const backing = await readSys(`${sys}/loop/backing_file`);
  if (backing) {
    const st = await stat(backing).catch(() => undefined);
    if (st) below.push(majMinOf(st.isBlockDevice() ? st.rdev : st.dev));
  }
  for (const dev of below) await markStack(uses, dev, use, via ?? name, seen);
}

/** Every device the host uses now: mounted filesystems, swap, loop devices' backing devices, all the way down. */
async function hostDeviceUse(): Promise<HostUse> {
  const uses: HostUse = new Map();
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const fields = line.split(' ');
    let majMin = fields[2];
    const mountPoint = (fields[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (!majMin) continue;
    // btrfs and others report an anonymous device: the source named after " - " is the real one.
    if (majMin.startsWith('0:')) {
      const source = fields[fields.indexOf('-') + 2];
      const st = source?.startsWith('/dev/') ? await stat(source).catch(() => undefined) : undefined;
      if (!st?.isBlockDevice()) continue;
      majMin = majMinOf(st.rdev);
    }
    await markStack(uses, majMin, mountPoint === '/' ? "the host's root filesystem (/)" : `the filesystem mounted on ${mountPoint}`, undefined);
  }
  for (const line of (await readFile('/proc/swaps', 'utf8').catch(() => '')).split('\n').slice(1)) {
    const file = line.split(/\s+/)[0];
    if (!file) continue;
    const st = await stat(file.replace(/\\040/g, ' ')).catch(() => undefined);
    if (!st) continue;
    await markStack(uses, majMinOf(st.isBlockDevice() ? st.rdev : st.dev), st.isBlockDevice() ? 'active swap' : `the swap file ${file}`, undefined);
  }
  for (const loop of await readdir('/sys/block').catch(() => [])) {
    if (!loop.startsWith('loop')) continue;
    const backing = await readSys(`/sys/block/${loop}/loop/backing_file`);
    const st = backing ? await stat(backing).catch(() => undefined) : undefined;
    if (st?.isBlockDevice()) await markStack(uses, majMinOf(st.rdev), `the backing device of /dev/${loop}`, undefined);
  }
  return uses;
}

/** The device's partitions (MAJ:MIN and name), from sysfs. */
async function partitionsOf(majMin: string): Promise<{ majMin: string; name: string }[]> {
  const dir = await realpath(`/sys/dev/block/${majMin}`).catch(() => undefined);
  if (!dir) return [];
  const out: { majMin: string; name: string }[] = [];
  for (const entry of await readdir(dir).catch(() => [])) {
    if ((await readSys(path.join(dir, entry, 'partition'))) === undefined) continue;
    const dev = await readSys(path.join(dir, entry, 'dev'));
    if (dev) out.push({ majMin: dev, name: entry });
  }
  return out;
}

/** Signatures of what lies on a device (blkid's low-level probe on the opened fd): TYPE, LABEL, … */
export async function probeSignature(fdPath: string): Promise<Record<string, string>> {
  try {
    const { stdout } = await run('blkid', ['-p', '-o', 'export', '--', fdPath]);
    return Object.fromEntries(stdout.split('\n').flatMap((l) => {
      const i = l.indexOf('=');
      return i > 0 ? [[l.slice(0, i), l.slice(i + 1)]] : [];
    }));
  } catch {
    // Exit 2: nothing recognized on it.
    return {};
  }
}

/**
 * Why the host's own use of an opened device forbids giving it to a VM: a filesystem mounted from it or
 * from anything built on it, swap, a dm/md device or a loop device on top of it (an active PV, a RAID
 * member), a partition of it in use, the host's root anywhere above it, or a PV/RAID signature on it.
 * Empty when it is free.
 */
export async function deviceUseProblems(opened: OpenedDevice): Promise<string[]> {
  return useProblemsOf(opened.majMin, (await probeSignature(opened.fdPath)).TYPE, await hostDeviceUse());
}

async function useProblemsOf(majMin: string, signatureType: string | undefined, uses: HostUse): Promise<string[]> {
  const problems: string[] = [];
  const describe = (what: { use: string; via?: string }) => (what.via === undefined ? `it holds ${what.use}` : `it lies below ${what.use} (through ${what.via})`);
  const own = uses.get(majMin);
  if (own) problems.push(describe(own));
  const holders = async (majMin: string) => readdir(`/sys/dev/block/${majMin}/holders`).catch(() => [] as string[]);
  const held = await holders(majMin);
  if (held.length > 0) problems.push(`it is in use by ${held.map((h) => `/dev/${h}`).join(', ')} (a device-mapper or RAID device built on it, such as an active LVM volume)`);
  for (const part of await partitionsOf(majMin)) {
    const use = uses.get(part.majMin);
    const partHolders = await holders(part.majMin);
    if (use && !own) problems.push(`its partition ${part.name}: ${describe(use)}`);
    if (partHolders.length > 0) problems.push(`its partition ${part.name} is in use by ${partHolders.map((h) => `/dev/${h}`).join(', ')}`);
  }
  if (signatureType === 'LVM2_member') problems.push('it is an LVM physical volume (give a VM one of its logical volumes instead)');
  if (signatureType === 'linux_raid_member') problems.push('it is a member of a RAID array');
  return problems;
}

/** One device the requester may give a VM, as the app's picker shows it. */
export interface DeviceChoice {
  /** The name to put in a definition: an LV's /dev/VG/LV, else the node. */
  readonly path: string;
  readonly node: string;
  readonly majMin: string;
  readonly sizeBytes: number;
  readonly type: string;
  /** What lies on it (filesystem, swap, PV…), from lsblk; null when nothing is recognized. */
  readonly content: string | null;
  readonly label: string | null;
  /** Why the host's use of it forbids giving it to a VM now; empty when it is free. */
  readonly inUse: readonly string[];
}

interface LsblkDevice {
  path?: string;
  'maj:min'?: string;
  size?: number | string;
  type?: string;
  fstype?: string | null;
  label?: string | null;
  children?: LsblkDevice[];
}

/** The block devices the requester may hand to VMs (root: every one), with size, content and host use (lsblk). */
export async function listDeviceChoices(config: PathPolicyConfig, requester: Requester): Promise<DeviceChoice[]> {
  const { stdout } = await run('lsblk', ['--json', '--bytes', '--output', 'PATH,MAJ:MIN,SIZE,TYPE,FSTYPE,LABEL'], { maxBuffer: 16 << 20 });
  const all: LsblkDevice[] = [];
  const flatten = (list: LsblkDevice[] | undefined) => {
    for (const d of list ?? []) {
      all.push(d);
      flatten(d.children);
    }
  };
  flatten((JSON.parse(stdout) as { blockdevices?: LsblkDevice[] }).blockdevices);
  const uses = await hostDeviceUse();
  const out: DeviceChoice[] = [];
  const seen = new Set<string>();
  for (const d of all) {
    const majMin = d['maj:min'];
    if (!d.path || !majMin || seen.has(majMin)) continue;
    seen.add(majMin);
    const st = await stat(d.path).catch(() => undefined);
    if (!st?.isBlockDevice() || !(await grantFor(config, requester, st.rdev, majMin))) continue;
    const dm = await dmInfo(majMin);
    const lv = dm && /^LVM-/.test(dm.uuid) ? splitDmName(dm.name) : undefined;
    out.push({
      path: lv ? `/dev/${lv.vg}/${lv.lv}` : d.path, node: d.path, majMin, sizeBytes: Number(d.size ?? 0), type: d.type ?? 'disk',
      content: d.fstype ?? null, label: d.label ?? null, inUse: await useProblemsOf(majMin, d.fstype ?? undefined, uses),
    });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** A device's size in bytes (sysfs counts 512-byte sectors whatever the device's block size). */
export async function deviceSize(majMin: string): Promise<number> {
  return Number((await readSys(`/sys/dev/block/${majMin}/size`)) ?? 0) * 512;
}

/**
 * Opens the device again through its fd (the same device whatever its name does meanwhile) with O_EXCL:
 * the kernel refuses while anything holds it exclusively (a mount, swap, dm, md, or another VM's private
 * claim). Read-write for a private disk, which keeps the claim for the VM's life (qemu gets this fd);
 * a read-only probe, closed at once, for shared and read-only disks.
 */
export async function claimDevice(opened: OpenedDevice, writable: boolean): Promise<FileHandle> {
  const handle = await open(opened.fdPath, (writable ? constants.O_RDWR : constants.O_RDONLY) | constants.O_EXCL | constants.O_NOCTTY);
  try {
    const st = await handle.stat();
    if (st.rdev !== opened.stat.rdev) throw new PathRefusedError(opened.path, 'it changed while it was being claimed');
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * A definition's device as the app's details show it: the node its name leads to now and why the host
 * uses it (empty: it does not). Read from world-readable kernel files, so the user side needs no helper.
 */
export async function hostUseOfDevice(name: string): Promise<{ node: string; inUse: string[] } | undefined> {
  const st = await stat(name).catch(() => undefined);
  if (!st?.isBlockDevice()) return undefined;
  const node = await realpath(name).catch(() => name);
  return { node, inUse: await useProblemsOf(majMinOf(st.rdev), undefined, await hostDeviceUse()) };
}

