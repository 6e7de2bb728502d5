import { execFile } from 'node:child_process';
import { realpath, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { isRelabeled, type DiskSpec } from '../core/vm-spec';
import { checkPathSyntax } from '../host/path-policy';
import { openLayerAsUser, readBackingChain } from '../host/backing-chain';
import { parseLibvirtDomainXml, readLibvirtDomainDevices, type LibvirtDeviceNote } from '../core/libvirt-xml';
import { describeFileError } from '../core/user-words';
import {
  DISK_FORMATS, type BootDefinition, type DiskClass, type DiskDefinition, type DiskFormat, type DisplayDefinition, type NetworkDefinition,
  type SeclabelDefinition, type VmDefinitionInput,
} from '../core/vm-definition';

/**
 * Turning things the user already has into VM definitions (drafts: the caller reviews them and saves
 * them with VmStore.define). Nothing here writes anything.
 */

export class VmImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VmImportError';
  }
}

export interface DiskImportOptions {
  readonly name: string;
  readonly memoryMiB?: number;
  readonly vcpus?: number;
  /** How the image is shared; private unless said otherwise. */
  readonly diskClass?: DiskClass;
  readonly seclabel?: SeclabelDefinition;
  /** The qemu-img binary; found on PATH by default. */
  readonly qemuImg?: string;
}

const DEFAULT_MEMORY_MIB = 1024;
const DEFAULT_VCPUS = 1;
// qemu-img info reads a header; anything slower is a hung network mount.
const QEMU_IMG_TIMEOUT_MS = 30_000;

const execFileAsync = promisify(execFile);

/** The fields of `qemu-img info --output=json` this module reads. */
interface QemuImgInfo {
  readonly format: string;
  readonly backingFile?: string;
  readonly encrypted: boolean;
}

function parseQemuImgInfo(stdout: string, image: string): QemuImgInfo {
  let info: unknown;
  try {
    info = JSON.parse(stdout);
  } catch (e) {
    throw new VmImportError(`qemu-img info printed no JSON for ${image}: ${(e as Error).message}`);
  }
  if (typeof info !== 'object' || info === null || typeof (info as { format?: unknown }).format !== 'string') {
    throw new VmImportError(`qemu-img info reported no format for ${image}`);
  }
  const record = info as Record<string, unknown>;
  const backing = record['full-backing-filename'] ?? record['backing-filename'];
  return {
    format: record.format as string,
    ...(typeof backing === 'string' ? { backingFile: backing } : {}),
    encrypted: record.encrypted === true,
  };
}

async function runQemuImgInfo(qemuImg: string, image: string): Promise<QemuImgInfo> {
  try {
    // The path is absolute, so qemu never reads it as a protocol (nbd:, json:); the format is probed
    // here once and stored, so a guest that later writes a qcow2 header into a raw disk changes nothing.
    const { stdout } = await execFileAsync(qemuImg, ['info', '--output=json', image], { timeout: QEMU_IMG_TIMEOUT_MS, maxBuffer: 1 << 20 });
    return parseQemuImgInfo(stdout, image);
  } catch (err) {
    if (err instanceof VmImportError) throw err;
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean };
    if (e.code === 'ENOENT') throw new VmImportError(`${qemuImg} was not found: install qemu-img (Debian: qemu-utils, Fedora: qemu-img)`);
    if (e.killed) throw new VmImportError(`qemu-img info ${image} did not answer within ${QEMU_IMG_TIMEOUT_MS / 1000} s`);
    throw new VmImportError(`qemu-img cannot read ${image}: ${(e.stderr ?? e.message).trim()}`);
  }
}

const isSupportedFormat = (format: string): format is DiskFormat => (DISK_FORMATS as readonly string[]).includes(format);

/**
 * The real path and format of a disk image, refusing what the launcher and planner cannot handle.
 *
 * A qcow2 image may have a backing chain: it is read here as the user, layer by layer, so that a chain
 * the helper would refuse (no recorded backing format, protocol names, loops) is refused at definition
 * time with the same message. The helper reads it again at each start, under its own path rules.
 */
export async function probeDiskImage(imagePath: string, qemuImg = 'qemu-img'): Promise<{ path: string; format: DiskFormat }> {
  try {
    checkPathSyntax(imagePath);
  } catch (e) {
    throw new VmImportError((e as Error).message);
  }
  let image: string;
  try {
    // The helper relabels without following symlinks: store the file itself.
    image = await realpath(imagePath);
  } catch (e) {
    throw new VmImportError(describeFileError(imagePath, e));
  }
  const stats = await stat(image);
  if (!stats.isFile() && !stats.isBlockDevice()) throw new VmImportError(`${image} is neither a regular file nor a block device`);

  const info = await runQemuImgInfo(qemuImg, image);
  if (info.backingFile !== undefined) {
    if (info.format !== 'qcow2') throw new VmImportError(`${image} is a ${info.format} image with a backing file; only qcow2 backing chains are supported`);
    await readBackingChain(image, openLayerAsUser, qemuImg).catch((e: Error) => { throw new VmImportError(e.message); });
  }
  if (info.encrypted) throw new VmImportError(`${image} is encrypted, which is not supported`);
  if (!isSupportedFormat(info.format)) {
    throw new VmImportError(
      `${image} is in ${info.format} format; supported are ${DISK_FORMATS.join(', ')}: convert it first: qemu-img convert -O qcow2 ${image} CONVERTED.qcow2`,
    );
  }
  return { path: image, format: info.format };
}

/** A draft definition booting from an existing disk image, its format as qemu-img reports it. */
export async function importDiskImage(imagePath: string, options: DiskImportOptions): Promise<VmDefinitionInput> {
  const { path: image, format } = await probeDiskImage(imagePath, options.qemuImg);
  return {
    name: options.name,
    memoryMiB: options.memoryMiB ?? DEFAULT_MEMORY_MIB,
    vcpus: options.vcpus ?? DEFAULT_VCPUS,
    boot: { kind: 'disk' },
    disks: [{ path: image, format, class: options.diskClass ?? 'private', relabel: true }],
    seclabel: options.seclabel ?? { mode: 'dynamic' },
  };
}

/** A device of the XML that the definition does not have, and why. */
export interface DroppedDevice {
  /** e.g. `interface type='bridge' (br0) at domain/devices/interface[2]`. */
  readonly device: string;
  readonly reason: string;
}

/** A draft from a foreign description, with what could not be carried over. */
export interface LibvirtImport {
  readonly definition: VmDefinitionInput;
  /** Things the definition does differently from the XML; the UI shows them before saving. */
  readonly notes: readonly string[];
  /** Devices left out (network interfaces, displays, sound the manager does not provide); said, never silent. */
  readonly dropped: readonly DroppedDevice[];
}

const describeDevice = (tag: string, d: LibvirtDeviceNote) =>
  `${tag}${d.type === '' ? '' : ` ${tag === 'sound' ? 'model' : 'type'}='${d.type}'`}${d.source === null ? '' : ` (${d.source})`} at ${d.where}`;

/**
 * The manager's network is qemu's user-mode networking, one NIC, no host side to set up: a libvirt
 * `user` interface is exactly that. Networks, bridges and direct devices need host networking (and
 * privileges) the manager does not set up, so they are dropped, each said.
 */
function importNetwork(interfaces: readonly LibvirtDeviceNote[], dropped: DroppedDevice[]): NetworkDefinition | undefined {
  let network: NetworkDefinition | undefined;
  for (const nic of interfaces) {
    if (nic.type === 'user' && network === undefined) network = { mode: 'user' };
    else if (nic.type === 'user') dropped.push({ device: describeDevice('interface', nic), reason: 'a VM here has one network interface' });
    else dropped.push({ device: describeDevice('interface', nic), reason: 'it needs host networking (a libvirt network, a bridge or a host device) the manager does not set up; the VM can have user-mode networking (NAT through qemu) instead' });
  }
  return network;
}

/** VNC and SPICE become the manager's display (VNC, relayed to the app); others are dropped. */
function importDisplay(graphics: readonly LibvirtDeviceNote[], dropped: DroppedDevice[], notes: string[]): DisplayDefinition | undefined {
  let display: DisplayDefinition | undefined;
  for (const g of graphics) {
    if ((g.type === 'vnc' || g.type === 'spice') && display === undefined) {
      display = 'vnc';
      if (g.type === 'spice') notes.push(`graphics type='spice' becomes a VNC display (the manager's graphical console)`);
    } else if (g.type === 'vnc' || g.type === 'spice') {
      dropped.push({ device: describeDevice('graphics', g), reason: 'a VM here has one display' });
    } else {
      dropped.push({ device: describeDevice('graphics', g), reason: 'the manager offers a VNC display only' });
    }
  }
  return display;
}

export interface LibvirtImportOptions {
  /** Replaces the domain's name (libvirt allows names this store cannot use as file names). */
  readonly name?: string;
}

function diskDefinition(disk: DiskSpec, diskClass: DiskClass = disk.class): DiskDefinition {
  return {
    path: disk.path,
    // libvirt does not probe formats: a disk without <driver type> is raw.
    format: disk.format ?? 'raw',
    class: diskClass,
    relabel: isRelabeled(disk),
    ...(disk.label === undefined ? {} : { label: disk.label }),
  };
}

/** Whether `<os><boot dev=…/>` puts the CD-ROM before the hard disk (libvirt's default is the hard disk). */
const cdromBootsFirst = (order: readonly string[]) => {
  const cdrom = order.indexOf('cdrom');
  const hd = order.indexOf('hd');
  return cdrom >= 0 && (hd < 0 || cdrom < hd);
};

const describeDisk = (disk: DiskSpec) => (disk.target === undefined ? disk.path : `${disk.target} (${disk.path})`);

/**
 * A draft definition from a libvirt domain XML. Definitions know a CD-ROM only as a boot device (the
 * ISO, which boots before the first disk) and keep no other boot order, so: a kernel boots the kernel; a
 * lone CD-ROM boots as the ISO when there is no hard disk or the domain boots the CD-ROM first; otherwise
 * hard disks boot the first disk, and CD-ROMs become read-only disks. A user-mode interface and a VNC or
 * SPICE display are carried over; other interfaces, displays and sound devices are listed in `dropped`. The first file-backed
 * serial port becomes the serial log; other character devices are dropped (the manager brings its own
 * console). Each such change is listed in `notes`.
 */
export function importLibvirtXml(xmlText: string, options: LibvirtImportOptions = {}): LibvirtImport {
  const spec = parseLibvirtDomainXml(xmlText);
  const devices = readLibvirtDomainDevices(xmlText);
  const notes: string[] = [];
  const dropped: DroppedDevice[] = [];
  if (spec.memoryMiB === undefined) throw new VmImportError('domain/memory is missing: the definition needs a memory size');

  const hardDisks = spec.disks.filter((d) => d.device !== 'cdrom');
  const cdroms = spec.disks.filter((d) => d.device === 'cdrom');
  let boot: BootDefinition;
  let disks: DiskDefinition[] = hardDisks.map((d) => diskDefinition(d));
  if (spec.kernel !== undefined) {
    boot = {
      kind: 'kernel',
      kernel: spec.kernel,
      ...(spec.initrd === undefined ? {} : { initrd: spec.initrd }),
      ...(spec.dtb === undefined ? {} : { dtb: spec.dtb }),
      ...(spec.cmdline === undefined ? {} : { cmdline: spec.cmdline }),
    };
  } else if (cdroms.length === 1 && cdroms[0] !== undefined && (hardDisks.length === 0 || cdromBootsFirst(devices.bootOrder))) {
    const cdrom = cdroms[0];
    boot = { kind: 'iso', iso: cdrom.path };
    if (!isRelabeled(cdrom) || cdrom.label !== undefined) {
      notes.push(`CD-ROM ${describeDisk(cdrom)}: its seclabel is not kept; the ISO gets the read-only content label`);
    }
  } else if (hardDisks.length > 0) {
    boot = { kind: 'disk' };
  } else {
    throw new VmImportError(
      cdroms.length === 0 ? 'the domain has no kernel and no disk to boot from' : 'the domain has several CD-ROMs and no hard disk: a definition boots from one ISO',
    );
  }
  if (boot.kind !== 'iso') {
    disks = [...disks, ...cdroms.map((d) => diskDefinition(d, 'readonly'))];
    for (const cdrom of cdroms) notes.push(`CD-ROM ${describeDisk(cdrom)} is attached as a read-only disk`);
  }
  if (spec.initrd !== undefined && spec.kernel === undefined) notes.push('an initrd without a kernel is dropped');

  const fileSerials = spec.charDevices.filter((c) => c.role === 'serial' && c.kind === 'file');
  const serialLog = fileSerials[0];
  if (serialLog !== undefined && (!isRelabeled(serialLog) || serialLog.label !== undefined)) {
    notes.push(`serial log ${serialLog.path}: its seclabel is not kept; it gets the VM's image label`);
  }
  for (const dropped of spec.charDevices.filter((c) => c !== serialLog)) {
    notes.push(`${dropped.role ?? 'character device'} ${dropped.kind} ${dropped.path} is dropped: the manager provides its own serial console`);
  }
  if (spec.live !== undefined) notes.push(`the running domain's label ${spec.live.label} is not kept: a definition describes a stopped VM`);
  if (spec.currentMemoryMiB !== undefined && spec.currentMemoryMiB !== spec.memoryMiB) {
    notes.push(`currentMemory (${spec.currentMemoryMiB} MiB) is dropped: the VM gets its full memory (${spec.memoryMiB} MiB)`);
  }

  const network = importNetwork(devices.interfaces, dropped);
  const display = importDisplay(devices.graphics, dropped, notes);
  for (const sound of devices.sound) dropped.push({ device: describeDevice('sound', sound), reason: 'the manager gives VMs no sound device' });

  const definition: VmDefinitionInput = {
    name: options.name ?? spec.name,
    memoryMiB: spec.memoryMiB,
    // libvirt's default when <vcpu> is absent.
    vcpus: spec.vcpus ?? 1,
    boot,
    disks,
    seclabel: spec.seclabel,
    ...(serialLog === undefined ? {} : { serialLog: serialLog.path }),
    ...(network === undefined ? {} : { network }),
    ...(display === undefined ? {} : { display }),
  };
  return { definition, notes, dropped };
}
