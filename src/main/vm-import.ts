import { execFile } from 'node:child_process';
import { realpath, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { checkPathSyntax } from './labels/path-policy';
import { DISK_FORMATS, type DiskClass, type DiskFormat, type SeclabelDefinition, type VmDefinitionInput } from './vm-definition';

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
 * A draft definition booting from an existing disk image, its format as qemu-img reports it.
 *
 * Images with a backing file are refused rather than recorded: VmSpec has no backing layers, so the
 * planner would not label them (libvirt gives them the read-only content label), and the launcher hands
 * qemu each disk as a file descriptor, so qemu would have to open the layers by path itself, which its
 * confinement forbids. The error says how to flatten the chain.
 */
export async function importDiskImage(imagePath: string, options: DiskImportOptions): Promise<VmDefinitionInput> {
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
    throw new VmImportError(`cannot import ${imagePath}: ${(e as Error).message}`);
  }
  const stats = await stat(image);
  if (!stats.isFile() && !stats.isBlockDevice()) throw new VmImportError(`${image} is neither a regular file nor a block device`);

  const info = await runQemuImgInfo(options.qemuImg ?? 'qemu-img', image);
  if (info.backingFile !== undefined) {
    throw new VmImportError(
      `${image} has a backing file (${info.backingFile}), which is not supported; ` +
        `flatten it first: qemu-img convert -O ${info.format} ${image} FLAT.${info.format}`,
    );
  }
  if (info.encrypted) throw new VmImportError(`${image} is encrypted, which is not supported`);
  if (!isSupportedFormat(info.format)) {
    throw new VmImportError(
      `${image} is in ${info.format} format; supported are ${DISK_FORMATS.join(', ')}: convert it first: qemu-img convert -O qcow2 ${image} CONVERTED.qcow2`,
    );
  }
  return {
    name: options.name,
    memoryMiB: options.memoryMiB ?? DEFAULT_MEMORY_MIB,
    vcpus: options.vcpus ?? DEFAULT_VCPUS,
    boot: { kind: 'disk' },
    disks: [{ path: image, format: info.format, class: options.diskClass ?? 'private', relabel: true }],
    seclabel: options.seclabel ?? { mode: 'dynamic' },
  };
}
