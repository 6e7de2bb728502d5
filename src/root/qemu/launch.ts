// Starts qemu confined the way that works on these machines (libvirt's way, see svirt-facts "qemu confinement"):
//   - qemu is spawned directly as an unprivileged uid/gid, in its own session (no -runas, no -daemonize: with the
//     full -sandbox both get qemu killed by SIGSYS, because the filter is installed before privileges drop);
//   - everything it must open is handed over as a file descriptor: the QMP listening socket (created here, as
//     root), the serial line's directory (console/serial-line.ts: qemu opens its two FIFOs through that fd) and each disk (an fd set with a read-only fd, plus a read-write fd unless the disk is read-only),
//     so the qemu user needs no access to the images or the run directory;
//   - -kernel/-initrd are opened by the launcher too and inherited; qemu 7.2 open()s them by path (no /dev/fdset
//     there), so it is given /proc/self/fd/N. That path also carries no comma for a loader to split, but reopening
//     it checks permissions against qemu's uid: the file must be readable by that uid (the helper hands over a
//     private copy owned by the VM's uid); launchQemu checks that;
//   - each VM runs as its own uid and gid (the caller allocates them), so no qemu can reach another's /proc/PID/fd.
//     With KVM, /dev/kvm (root:kvm 0660) is reached through the kvm group as a supplementary group: spawn() drops
//     supplementary groups, so qemu is started through setpriv(1), which sets uid, gid and groups and execs it.
//
// How another process reaches a running VM later (the run directory is root-owned, mode 0700):
//   <runDir>/qmp.sock     QMP (unix stream socket; qemu accepts one client at a time, a new one after it leaves)
//   <runDir>/serial/      the guest's ttyS0: FIFOs ttyS0.out (its output) and ttyS0.in (its input), one reader at a
//                         time (see console/serial-line.ts; output waits in the pipe while nobody reads)
//   <runDir>/qemu.pid     qemu's pid, written by the launcher (qemu itself cannot write into the run directory)
//   <runDir>/qemu.log     qemu's stdout/stderr
//   <displayDir>/vnc.sock the VNC display, when the VM has one (see displayDir below for why qemu creates it)
//
// On an SELinux host qemu execs into the VM's label (runcon), and at that exec the kernel gives it a null file in
// place of every inherited fd its domain may not use. So what it inherits is made usable by the VM's domain:
//   - the QMP socket is created at the VM's own context (socket-context.ts: the MCS constraint on
//     unix_stream_socket refuses a VM sockets made at the helper's range, whatever the allow rules say);
//   - the serial line's directory and FIFOs get the VM's own image label, like qemu.log;
//   - qemu.log gets the VM's own image label (svirt_image_t at the VM's pair) before it is handed over: svirt_t may
//     append to svirt_image_t, and MCS keeps each VM to its own log. A file rather than a pipe, because a pipe needs
//     a reader for qemu's whole life, and the helper that starts a VM does not live that long;
//   - the disks carry the labels the relabeler gave them; using the fds themselves (fd use, /dev/null) is the
//     policy module's grant.
// Nothing here sets no-new-privileges before that exec (neither Debian's nor Fedora's policy has an nnp_transition
// into svirt_t, so the exec would be refused): spawn() does not set it, and qemu's own -sandbox sets it only after,
// in the VM's domain.
// The QMP socket file is the listening socket qemu holds: they work as long as qemu runs; qemu does not remove them
// (it never knew their paths), so a later launch into the same run directory replaces them.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants as fsc, readdirSync, readFileSync, renameSync, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import type net from 'node:net';
import path from 'node:path';
import { writeLabel } from '../../security/selinux/file-labels';
import { createSerialLine, SERIAL_LINE_NAME } from '../console/serial-line';
import { listenUnixAt } from '../../security/selinux/socket-context';
import { probeAccelerator } from './accel';
import { QmpClient } from './qmp';

export const SANDBOX_ARG = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

export interface DiskSpec {
  /** Image path, opened by the launcher (root), never by qemu. */
  path: string;
  readonly?: boolean;
  /** Image format (default raw). */
  format?: 'raw' | 'qcow2';
  /** Written by several VMs at once (libvirt's <shareable/>): the image's write lock is shared. */
  shared?: boolean;
  /** A CD-ROM (ide-cd on q35's AHCI) instead of a virtio disk; always read-only. */
  cdrom?: boolean;
  /** Firmware boot order (lowest first); absent: not a boot device. */
  bootIndex?: number;
  /**
   * A qcow2 image's backing chain, top-most backing layer first, as the caller read and checked it. When
   * present the disk is a -blockdev graph with one node per layer, each opened read-only from its own fd
   * set: qemu never opens the backing file named in the image's header itself.
   */
  backing?: BackingLayer[];
  /** A host block device (qemu's host_device driver); the path is still opened by the launcher. */
  blockDevice?: boolean;
  /**
   * An fd this process holds open read-write on the block device, handed to qemu as the disk's read-write
   * fd instead of a reopen: it carries an exclusive claim (O_EXCL), which a reopen would be refused, and
   * qemu keeps the claim for the VM's life.
   */
  heldRwFd?: number;
}

export interface BackingLayer {
  /** Opened by the launcher read-only, like a disk's path. */
  path: string;
  format: 'raw' | 'qcow2';
}

/** UEFI firmware: both files are opened by the launcher and handed over as fd sets, like disks. */
export interface FirmwareSpec {
  /** OVMF code, read-only. */
  code: string;
  /** This VM's own variable store, which qemu writes. */
  vars: string;
}

export interface PortForwardSpec {
  hostPort: number;
  guestPort: number;
}

export interface LaunchSpec {
  /** VM name: letters, digits, '.', '_', '-' (it lands in qemu's -name and in logs). */
  name: string;
  /** Per-VM run directory: created (or re-moded) root-owned 0700; holds the sockets, pidfile and log. */
  runDir: string;
  memoryMiB: number;
  cpus: number;
  /** Direct kernel boot: absolute paths, opened by the launcher; the files must be readable by `uid` (qemu reopens them). */
  kernel?: string;
  initrd?: string;
  append?: string;
  disks?: DiskSpec[];
  /** User-mode networking behind a virtio NIC, with host-loopback port forwards; absent: no NIC. */
  network?: { portForwards?: PortForwardSpec[] };
  /** UEFI (OVMF in pflash); absent: SeaBIOS. */
  firmware?: FirmwareSpec;
  /**
   * A VGA display served over VNC on <displayDir>/vnc.sock. qemu 7.2's -vnc takes only an address, never a
   * listening fd (its parser knows unix: and inet), so qemu creates this socket itself: the directory is made
   * for the qemu uid alone (0700) outside the root-only run directory. A socket qemu creates carries qemu's
   * own context, which the SELinux socket rule also allows (see selinux-enforcing.md).
   */
  displayDir?: string;
  /** Machine type (default q35). */
  machine?: string;
  /** Accelerator arguments (default: probeAccelerator()'s choice). */
  accelArgs?: readonly string[];
  /** The VM's own unprivileged uid and gid qemu runs as (no passwd entry needed). */
  uid: number;
  gid: number;
  /** qemu binary (default qemu-system-x86_64 on PATH). */
  qemu?: string;
  /** Start with the vCPUs stopped (-S): lets a caller attach to the serial line before the guest prints. */
  paused?: boolean;
  /** How long to wait for qemu's QMP greeting before calling the start failed (default 15 s). */
  startTimeoutMs?: number;
  /**
   * Hand the QMP connection the launcher checked qemu with to the caller (LaunchedQemu.qmp), who closes
   * it: qemu serves one QMP client at a time, so a caller that resumes a paused VM would otherwise wait for
   * this one to go and connect and negotiate again.
   */
  keepQmp?: boolean;
  /**
   * The program (and its arguments) that execs qemu confined, put before qemu's argv: the security stack's
   * choice (`runcon CONTEXT` on an SELinux host, `aa-exec -p PROFILE --` on an AppArmor one). It must exec
   * qemu in place (same pid, same fds).
   */
  execPrefix?: readonly string[];
  /** SELinux context the QMP socket is created at (the VM's label); only where SELinux is enabled. */
  socketContext?: string;
  /**
   * SELinux label qemu.log and the serial line get before qemu inherits them (the VM's image label); only where SELinux is enabled.
   * The display directory gets it too: svirt_t may create sock_files in svirt_image_t directories, and the VNC
   * socket it creates there carries the VM's pair.
   */
  logLabel?: string;
}

export interface QemuRunPaths {
  qmpSocket: string;
  /** The serial line's directory. */
  serialDir: string;
  /** The serial line (serial-line.ts): its FIFOs are this path plus .in and .out. */
  serialLine: string;
  pidFile: string;
  logFile: string;
}

export interface LaunchedQemu {
  pid: number;
  name: string;
  uid: number;
  gid: number;
  runDir: string;
  qmpSocketPath: string;
  /** The serial line (console/serial-line.ts). */
  serialPath: string;
  pidFile: string;
  logFile: string;
  /** The VNC socket, when the VM has a display. */
  vncSocketPath?: string;
  /** Full qemu argv (after the binary), as run. */
  argv: string[];
  /** Accelerator arguments used. */
  accelArgs: string[];
  /** The launcher's QMP connection, negotiated, when the spec asked to keep it (keepQmp). */
  qmp?: QmpClient;
}

/** The child-side fd numbers: 0-2 are stdio, 3 the serial line's directory, 4 QMP, then each disk's fds. */
export interface FdLayout {
  serialFd: number;
  qmpFd: number;
  /** Per disk, in spec order: its fd set number, read-only fd, and read-write fd (absent for read-only disks). */
  disks: (FdSlot & { backing?: FdSlot[] })[];
  /** UEFI code (read-only) and variable store (read-write), after the disks. */
  firmware?: { code: FdSlot; vars: FdSlot };
  /** The kernel and initrd, when given, after everything else (qemu opens /proc/self/fd/N). */
  kernelFd?: number;
  initrdFd?: number;
  /** Highest child fd used. */
  maxFd: number;
}

export interface FdSlot {
  fdSet: number;
  roFd: number;
  rwFd?: number;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CONTEXT_RE = /^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+(:[A-Za-z0-9:.,-]+)?$/;

export function qemuRunPaths(runDir: string): QemuRunPaths {
  return {
    qmpSocket: path.join(runDir, 'qmp.sock'),
    serialDir: path.join(runDir, 'serial'),
    serialLine: path.join(runDir, 'serial', SERIAL_LINE_NAME),
    pidFile: path.join(runDir, 'qemu.pid'),
    logFile: path.join(runDir, 'qemu.log'),
  };
}

/** Throws on a spec that must not reach qemu. */
export function validateLaunchSpec(spec: LaunchSpec): void {
  if (!NAME_RE.test(spec.name)) throw new Error(`invalid VM name ${JSON.stringify(spec.name)}`);
  if (!path.isAbsolute(spec.runDir)) throw new Error(`runDir must be absolute: ${spec.runDir}`);
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16 || spec.memoryMiB > 1024 * 1024) throw new Error(`invalid memoryMiB ${spec.memoryMiB}`);
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > 255) throw new Error(`invalid cpus ${spec.cpus}`);
  for (const [what, p] of [['kernel', spec.kernel], ['initrd', spec.initrd]] as const) {
    if (p !== undefined && !path.isAbsolute(p)) throw new Error(`${what} must be an absolute path: ${p}`);
  }
  if ((spec.initrd !== undefined || spec.append !== undefined) && spec.kernel === undefined) throw new Error('initrd/append need a kernel');
  if (spec.append !== undefined && /[\0\n]/.test(spec.append)) throw new Error('append must be one line');
  for (const d of spec.disks ?? []) {
    if (!path.isAbsolute(d.path)) throw new Error(`disk path must be absolute: ${d.path}`);
    if (d.format !== undefined && d.format !== 'raw' && d.format !== 'qcow2') throw new Error(`unsupported disk format ${String(d.format)}`);
    if (d.backing !== undefined && (d.format !== 'qcow2' || d.cdrom)) throw new Error(`only a qcow2 disk has a backing chain: ${d.path}`);
    for (const layer of d.backing ?? []) {
      if (!path.isAbsolute(layer.path)) throw new Error(`backing file path must be absolute: ${layer.path}`);
      if (layer.format !== 'raw' && layer.format !== 'qcow2') throw new Error(`unsupported backing format ${String(layer.format)}`);
    }
    // A raw layer has no backing of its own: one below it could never be reached.
    if ((d.backing ?? []).slice(0, -1).some((l) => l.format === 'raw')) throw new Error(`a raw backing layer must be the last one: ${d.path}`);
  }
  for (const f of spec.network?.portForwards ?? []) {
    for (const [what, port, min] of [['hostPort', f.hostPort, 1024], ['guestPort', f.guestPort, 1]] as const) {
      if (!Number.isInteger(port) || port < min || port > 65535) throw new Error(`invalid port forward ${what} ${port}`);
    }
  }
  if (new Set((spec.network?.portForwards ?? []).map((f) => f.hostPort)).size !== (spec.network?.portForwards ?? []).length) {
    throw new Error('a host port is forwarded twice');
  }
  for (const p of [spec.firmware?.code, spec.firmware?.vars, spec.displayDir]) {
    if (p !== undefined && !path.isAbsolute(p)) throw new Error(`firmware and display paths must be absolute: ${p}`);
  }
  if (spec.machine !== undefined && !/^[A-Za-z0-9._-]+$/.test(spec.machine)) throw new Error(`invalid machine ${spec.machine}`);
  for (const [what, id] of [['uid', spec.uid], ['gid', spec.gid]] as const) {
    if (!Number.isInteger(id) || id <= 0 || id >= 0xffffffff) throw new Error(`invalid ${what} ${id}: qemu never runs as root`);
  }
  const [program, ...prefixArgs] = spec.execPrefix ?? [];
  if (program !== undefined && !/^[A-Za-z0-9._-]+$/.test(program)) throw new Error(`invalid confining program ${JSON.stringify(program)}`);
  if (prefixArgs.some((a) => a === '' || /[\0\n]/.test(a))) throw new Error('invalid confining program arguments');
  for (const context of [spec.socketContext, spec.logLabel]) {
    if (context !== undefined && !CONTEXT_RE.test(context)) throw new Error(`invalid SELinux context ${context}`);
  }
}

/** Which child fd carries what. Pure. */
export function fdLayout(spec: Pick<LaunchSpec, 'disks' | 'firmware' | 'kernel' | 'initrd'>): FdLayout {
  let next = 5;
  let fdSet = 1;
  const slot = (readonly: boolean): FdSlot => {
    const roFd = next++;
    return readonly ? { fdSet: fdSet++, roFd } : { fdSet: fdSet++, roFd, rwFd: next++ };
  };
  const disks: FdLayout['disks'] = (spec.disks ?? []).map((d) => slot(Boolean(d.readonly || d.cdrom)));
  const firmware = spec.firmware ? { code: slot(true), vars: slot(false) } : undefined;
  // Backing layers last, so a chain does not renumber the other fd sets.
  (spec.disks ?? []).forEach((d, i) => {
    if (d.backing !== undefined) (disks[i] as FdLayout['disks'][number]).backing = d.backing.map(() => slot(true));
  });
  const kernelFd = spec.kernel === undefined ? undefined : next++;
  const initrdFd = spec.initrd === undefined ? undefined : next++;
  return {
    serialFd: 3, qmpFd: 4, disks, ...(firmware ? { firmware } : {}),
    ...(kernelFd === undefined ? {} : { kernelFd }), ...(initrdFd === undefined ? {} : { initrdFd }), maxFd: next - 1,
  };
}

/** The -add-fd arguments of one fd set; qemu picks the fd whose access mode matches how it opens the file. */
function addFdArgs(slot: FdSlot, what: string): string[] {
  const args = ['-add-fd', `fd=${slot.roFd},set=${slot.fdSet},opaque=${optValue(`ro:${what}`)}`];
  if (slot.rwFd !== undefined) args.push('-add-fd', `fd=${slot.rwFd},set=${slot.fdSet},opaque=${optValue(`rw:${what}`)}`);
  return args;
}

/** The node name of disk `index`'s top format node (QMP snapshots address it). */
export function diskNodeName(index: number): string {
  return `disk${index}`;
}

/**
 * A qcow2 disk with its backing chain as -blockdev nodes (JSON, which can say `"backing": null`): each
 * layer a file node on its own fd set and a format node whose `backing` names the layer below, the bottom
 * one `null`, so qemu opens no file by the name in a header. Backing layers are read-only.
 */
function blockdevChain(d: DiskSpec, f: FdLayout['disks'][number], index: number): string[] {
  const args: string[] = [];
  const layers = d.backing ?? [];
  const slots = f.backing ?? [];
  const nodeOf = (k: number) => (k === 0 ? diskNodeName(index) : `${diskNodeName(index)}-b${k}`);
  layers.forEach((layer, k) => {
    const slot = slots[k];
    if (!slot) throw new Error('fd layout out of step with backing layers');
    args.push(...addFdArgs(slot, layer.path));
  });
  // Bottom-up: a node's backing must exist before it is named.
  for (let k = layers.length; k >= 0; k--) {
    const format = k === 0 ? 'qcow2' : (layers[k - 1] as BackingLayer).format;
    const fdSet = k === 0 ? f.fdSet : (slots[k - 1] as FdSlot).fdSet;
    const readOnly = k > 0 || Boolean(d.readonly);
    const node = nodeOf(k);
    args.push('-blockdev', JSON.stringify({ driver: 'file', filename: `/dev/fdset/${fdSet}`, 'node-name': `${node}-file`, 'read-only': readOnly }));
    const formatNode: Record<string, unknown> = { driver: format, file: `${node}-file`, 'node-name': node, 'read-only': readOnly };
    if (format === 'qcow2') formatNode.backing = k < layers.length ? nodeOf(k + 1) : null;
    args.push('-blockdev', JSON.stringify(formatNode));
  }
  const boot = d.bootIndex === undefined ? '' : `,bootindex=${d.bootIndex}`;
  args.push('-device', `virtio-blk-pci,drive=${nodeOf(0)},id=${nodeOf(0)}-dev${d.shared ? ',share-rw=on' : ''}${boot}`);
  return args;
}

/** The VNC socket qemu creates in the display directory. */
export function vncSocketPath(displayDir: string): string {
  return path.join(displayDir, 'vnc.sock');
}

/** QemuOpts values double their commas. */
function optValue(v: string): string {
  return v.replace(/,/g, ',,');
}

/** The qemu argv (without the binary) for a spec and accelerator. Pure: no I/O. */
export function buildQemuArgv(spec: LaunchSpec, accelArgs: readonly string[]): string[] {
  validateLaunchSpec(spec);
  const fds = fdLayout(spec);
  const argv = [
    '-name', `guest=${optValue(spec.name)}`,
    '-no-user-config', '-nodefaults',
    '-display', 'none',
    '-machine', spec.machine ?? 'q35',
    ...accelArgs,
    '-m', String(spec.memoryMiB),
    '-smp', String(spec.cpus),
    '-sandbox', SANDBOX_ARG,
    '-msg', 'timestamp=on',
    // The pipe chardev opens <path>.in and <path>.out read-write: the FIFOs in the directory of fd serialFd.
    '-chardev', `pipe,id=serial0,path=/proc/self/fd/${fds.serialFd}/${SERIAL_LINE_NAME}`,
    '-serial', 'chardev:serial0',
    '-chardev', `socket,id=qmp0,fd=${fds.qmpFd},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
  ];
  if (fds.firmware && spec.firmware) {
    // OVMF in two pflash units: the shared code read-only, then this VM's variable store, which qemu writes.
    const { code, vars } = fds.firmware;
    argv.push(...addFdArgs(code, spec.firmware.code), '-drive', `if=pflash,unit=0,format=raw,readonly=on,file=/dev/fdset/${code.fdSet}`);
    argv.push(...addFdArgs(vars, spec.firmware.vars), '-drive', `if=pflash,unit=1,format=raw,readonly=off,file=/dev/fdset/${vars.fdSet}`);
  }
  (spec.disks ?? []).forEach((d, i) => {
    const f = fds.disks[i];
    if (!f) throw new Error('fd layout out of step with disks');
    argv.push(...addFdArgs(f, d.path));
    if (d.backing !== undefined) {
      argv.push(...blockdevChain(d, f, i));
      return;
    }
    const readonly = `readonly=${d.readonly || d.cdrom ? 'on' : 'off'}`;
    const drive = `drive${f.fdSet}`;
    // qemu's default 'file' driver refuses a device; host_device takes it (and asks it its size itself).
    const file = d.blockDevice ? `file.driver=host_device,file.filename=/dev/fdset/${f.fdSet}` : `file=/dev/fdset/${f.fdSet}`;
    argv.push('-drive', `${file},format=${d.format ?? 'raw'},if=none,id=${drive},${readonly}${d.cdrom ? ',media=cdrom' : ''}`);
    const boot = d.bootIndex === undefined ? '' : `,bootindex=${d.bootIndex}`;
    // qemu locks images against a second writer; a shareable disk needs the device to say share-rw.
    const device = d.cdrom ? `ide-cd,drive=${drive}` : `virtio-blk-pci,drive=${drive}${d.shared ? ',share-rw=on' : ''}`;
    argv.push('-device', `${device}${boot}`);
  });
  if (spec.network) {
    // slirp needs no privilege and no host interface; forwards listen on the host's loopback only.
    const forwards = (spec.network.portForwards ?? []).map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
    // romfile= : no iPXE option ROM (nothing boots from the network, and qemu would open the ROM by path).
    argv.push('-netdev', `user,id=net0${forwards}`, '-device', 'virtio-net-pci,netdev=net0,romfile=');
  }
  if (spec.displayDir !== undefined) {
    // A USB tablet gives absolute pointer positions, so the viewer's pointer and the guest's stay together.
    argv.push('-device', 'VGA', '-device', 'qemu-xhci,id=usb', '-device', 'usb-tablet,bus=usb.0');
    argv.push('-vnc', `unix:${optValue(vncSocketPath(spec.displayDir))}`);
  }
  if (fds.kernelFd !== undefined) argv.push('-kernel', `/proc/self/fd/${fds.kernelFd}`);
  if (fds.initrdFd !== undefined) argv.push('-initrd', `/proc/self/fd/${fds.initrdFd}`);
  if (spec.append !== undefined) argv.push('-append', spec.append);
  if (spec.paused) argv.push('-S');
  return argv;
}

/** The gid of a group, read from /etc/group (no process spawned). */
async function groupId(name: string): Promise<number | undefined> {
  const text = await fs.readFile('/etc/group', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [groupName, , gid] = line.split(':');
    if (groupName === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** Whether uid/gid may read a file, by its mode bits (what the kernel checks when qemu reopens /proc/self/fd/N). */
function readableBy(st: Stats, uid: number, gid: number): boolean {
  if (st.uid === uid) return (st.mode & 0o400) !== 0;
  if (st.gid === gid) return (st.mode & 0o040) !== 0;
  return (st.mode & 0o004) !== 0;
}

/**
 * Opens a file qemu gets by fd: non-blocking, so a FIFO or device cannot make the launcher wait; anything
 * but a regular file is refused. (qemu sets the status flags it wants on the fds it takes from an fd set.)
 */
async function openRegularFile(p: string, flags: number, blockDevice = false): Promise<fs.FileHandle> {
  // A device is opened blocking: qemu uses the fd as it is, and O_NONBLOCK on a device fd may fail its I/O.
  const handle = await fs.open(p, flags | (blockDevice ? 0 : fsc.O_NONBLOCK) | fsc.O_NOCTTY);
  try {
    const st = await handle.stat();
    if (blockDevice ? !st.isBlockDevice() : !st.isFile()) throw new Error(`${p} is not a ${blockDevice ? 'block device' : 'regular file'}`);
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

async function prepareRunDir(runDir: string): Promise<void> {
  await fs.mkdir(runDir, { recursive: true, mode: 0o700 });
  const st = await fs.lstat(runDir);
  if (!st.isDirectory()) throw new Error(`${runDir} is not a directory`);
  if (st.uid !== process.getuid?.()) throw new Error(`${runDir} is owned by uid ${st.uid}, not by this process`);
  await fs.chmod(runDir, 0o700);
}

/** A fresh directory only the qemu uid (and root) may enter, for the socket qemu creates itself. */
async function prepareDisplayDir(dir: string, uid: number, gid: number, label: string | undefined): Promise<void> {
  // Whatever a previous run left (qemu's socket, or anything else) goes; the directory is made anew.
  await fs.rm(dir, { recursive: true, force: true });
  // Its parent only needs to be passable (0711), so qemu reaches its own directory by name and lists none.
  await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o711 });
  await fs.mkdir(dir, { mode: 0o700 });
  await fs.chown(dir, uid, gid);
  if (label !== undefined) await writeLabel(dir, label);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** pid from <runDir>/qemu.pid if that process still runs qemu, else undefined. */
export function readQemuPid(runDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(qemuRunPaths(runDir).pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
  try {
    // A recycled pid is not our VM.
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]?.includes('qemu') ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The fd of a listening net.Server. Node's spawn() accepts fd numbers in stdio but not a Server (it would try to
 * pause it as a stream), and net has no public accessor for a server's fd: the handle's fd is read here, checked.
 */
export function listeningFd(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw new Error('cannot get the fd of a listening socket from net.Server');
  return fd;
}

/**
 * This process's fds above stderr that lack O_CLOEXEC, i.e. that every child would inherit. Read
 * synchronously: a few dozen small procfs reads cost less than a trip through the thread pool each.
 */
function inheritableFds(): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc/self/fdinfo');
  } catch {
    return out;
  }
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < 3) continue;
    let info = '';
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      // closed meanwhile
    }
    const flags = /^flags:\s*([0-7]+)/m.exec(info)?.[1];
    // O_CLOEXEC is 02000000 (octal) in fdinfo's flags.
    if (flags !== undefined && (parseInt(flags, 8) & 0o2000000) === 0) out.push(fd);
  }
  return out;
}

/** Starts qemu confined (unprivileged uid, seccomp sandbox, everything by fd), detached from this process. */
export async function launchQemu(spec: LaunchSpec): Promise<LaunchedQemu> {
  validateLaunchSpec(spec);
  const qemuBin = spec.qemu ?? 'qemu-system-x86_64';
  const { uid, gid } = spec;
  const accelArgs = [...(spec.accelArgs ?? (await probeAccelerator({ qemu: qemuBin })).args)];
  let kvmGid: number | undefined;
  if (accelArgs.includes('kvm')) {
    // /dev/kvm is root:kvm 0660 and qemu opens it by name: the VM's uid gets the kvm group as its one
    // supplementary group (its primary group stays the VM's own).
    kvmGid = await groupId('kvm');
    if (kvmGid === undefined || kvmGid === 0) throw new Error('KVM needs a kvm group owning /dev/kvm: use TCG or create it');
  }

  await prepareRunDir(spec.runDir);
  const paths = qemuRunPaths(spec.runDir);
  const running = readQemuPid(spec.runDir);
  if (running !== undefined) throw new Error(`${spec.name}: qemu ${running} from ${paths.pidFile} is still running`);
  await Promise.all([paths.qmpSocket, paths.serialDir, paths.pidFile].map((p) => fs.rm(p, { recursive: true, force: true })));
  if (spec.displayDir !== undefined) await prepareDisplayDir(spec.displayDir, uid, gid, spec.logLabel);

  const argv = buildQemuArgv(spec, accelArgs);
  const layout = fdLayout(spec);
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const tmpSerial = `${paths.serialDir}.${tag}`;
  const tmpQmp = `${paths.qmpSocket}.${tag}`;

  const toClose: fs.FileHandle[] = [];
  const servers: net.Server[] = [];
  let child: ChildProcess;
  try {
    // Under a temporary name until qemu holds it: a keeper waiting for the line opens only one qemu has.
    await createSerialLine(tmpSerial, { uid, gid }, spec.logLabel);
    const serialDir = await fs.open(tmpSerial, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    toClose.push(serialDir);
    // Nobody knows the temporary name, so the launcher's own accept loop never takes a connection meant for qemu.
    const qmpServer = await listenUnixAt(spec.socketContext ?? null, tmpQmp);
    servers.push(qmpServer);
    const log = await fs.open(paths.logFile, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND, 0o600);
    toClose.push(log);
    // The opened file itself (through its fd), whatever its name points to meanwhile.
    if (spec.logLabel !== undefined) await writeLabel(`/proc/${process.pid}/fd/${log.fd}`, spec.logLabel);
    await log.write(`${new Date().toISOString()} launch ${qemuBin} ${argv.join(' ')}\n`);

    const stdio: (number | 'ignore')[] = ['ignore', log.fd, log.fd];
    stdio[layout.serialFd] = serialDir.fd;
    stdio[layout.qmpFd] = listeningFd(qmpServer);
    const openSlot = async (slot: FdSlot, file: string, device?: Pick<DiskSpec, 'blockDevice' | 'heldRwFd'>): Promise<void> => {
      const ro = await openRegularFile(file, fsc.O_RDONLY, device?.blockDevice);
      toClose.push(ro);
      stdio[slot.roFd] = ro.fd;
      if (slot.rwFd !== undefined && device?.heldRwFd !== undefined) {
        stdio[slot.rwFd] = device.heldRwFd;
      } else if (slot.rwFd !== undefined) {
        const rw = await openRegularFile(file, fsc.O_RDWR, device?.blockDevice);
        toClose.push(rw);
        stdio[slot.rwFd] = rw.fd;
      }
    };
    for (const [i, d] of (spec.disks ?? []).entries()) {
      const f = layout.disks[i];
      if (!f) throw new Error('fd layout out of step with disks');
      await openSlot(f, d.path, d);
      for (const [k, layer] of (d.backing ?? []).entries()) {
        const slot = f.backing?.[k];
        if (!slot) throw new Error('fd layout out of step with backing layers');
        await openSlot(slot, layer.path);
      }
    }
    if (layout.firmware && spec.firmware) {
      await openSlot(layout.firmware.code, spec.firmware.code);
      await openSlot(layout.firmware.vars, spec.firmware.vars);
    }
    for (const [what, p, fd] of [['kernel', spec.kernel, layout.kernelFd], ['initrd', spec.initrd, layout.initrdFd]] as const) {
      if (p === undefined || fd === undefined) continue;
      const h = await openRegularFile(p, fsc.O_RDONLY);
      toClose.push(h);
      if (!readableBy(await h.stat(), uid, gid)) throw new Error(`${what} ${p} is not readable by the VM's uid ${uid}: qemu reopens it as /proc/self/fd/${fd}`);
      stdio[fd] = h.fd;
    }

    // Whatever this process inherited without close-on-exec (node opens its own fds with it) would leak into
    // qemu: those slots get /dev/null instead.
    const leaked = inheritableFds().filter((fd) => fd > layout.maxFd);
    if (leaked.length > 0) {
      const devNull = await fs.open('/dev/null', fsc.O_RDONLY);
      toClose.push(devNull);
      for (const fd of leaked) stdio[fd] = devNull.fd;
    }

    // The confining program (runcon, aa-exec) sets the label and execs qemu in place: same pid, same fds.
    const [confiner, ...confinerArgs] = spec.execPrefix ?? [];
    const [command, args] = confiner === undefined ? [qemuBin, argv] : [confiner, [...confinerArgs, qemuBin, ...argv]];
    // setpriv likewise: it sets uid, gid and the kvm group, then execs; without KVM, spawn sets uid and gid itself.
    const [finalCommand, finalArgs] = kvmGid === undefined
      ? [command, args]
      : ['setpriv', [`--reuid=${uid}`, `--regid=${gid}`, `--groups=${kvmGid}`, '--', command, ...args]];
    child = spawn(finalCommand, finalArgs, {
      ...(kvmGid === undefined ? { uid, gid } : {}),
      // Own session and process group: no controlling terminal, untouched by signals to the launcher's group.
      detached: true,
      stdio,
      cwd: '/',
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
    // spawn() has forked and exec'd by now, so qemu holds its own copies. In this same tick (no accept can run in
    // between) the socket and the serial line take their public names, and closing the server (which unlinks the
    // temporary name) leaves qemu the only process listening on it.
    if (child.pid !== undefined) {
      renameSync(tmpSerial, paths.serialDir);
      renameSync(tmpQmp, paths.qmpSocket);
    }
  } finally {
    for (const s of servers) s.close();
    await Promise.all(toClose.map((h) => h.close()));
    await fs.rm(tmpSerial, { recursive: true, force: true });
    await fs.rm(tmpQmp, { force: true });
  }

  const pid = child.pid;
  if (pid === undefined) {
    const [err] = (await once(child, 'error')) as [Error];
    throw new Error(`cannot start ${qemuBin}: ${err.message}`);
  }
  child.on('error', () => {});
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)));
  child.unref();
  // Started means qemu got past its option parsing and sandbox and answers QMP: asked at once, while the
  // pid file is written (qemu's own start-up is the longer wait).
  const timeoutMs = spec.startTimeoutMs ?? 15_000;
  let kept: QmpClient | undefined;
  const started = Promise.race([
    (async () => {
      const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs });
      try {
        await qmp.execute('query-status');
      } catch (e) {
        await qmp.close();
        throw e;
      }
      if (spec.keepQmp) kept = qmp;
      else await qmp.close();
      return undefined;
    })().catch((e: unknown) => `QMP: ${(e as Error).message}`),
    exited.then((how) => `qemu ended (${how})`),
  ]);
  const pidTmp = `${paths.pidFile}.${tag}`;
  await fs.writeFile(pidTmp, `${pid}\n`, { mode: 0o644 });
  await fs.rename(pidTmp, paths.pidFile);
  const failure = await started;
  if (failure !== undefined) {
    await kept?.close();
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    const logText = await fs.readFile(paths.logFile, 'utf8').catch(() => '');
    await fs.rm(paths.pidFile, { force: true });
    throw new Error(`${spec.name}: qemu did not start: ${failure}\n${logText.split('\n').slice(-20).join('\n')}`);
  }

  return {
    pid,
    name: spec.name,
    uid,
    gid,
    runDir: spec.runDir,
    qmpSocketPath: paths.qmpSocket,
    serialPath: paths.serialLine,
    pidFile: paths.pidFile,
    logFile: paths.logFile,
    ...(spec.displayDir === undefined ? {} : { vncSocketPath: vncSocketPath(spec.displayDir) }),
    argv,
    accelArgs,
    ...(kept === undefined ? {} : { qmp: kept }),
  };
}
