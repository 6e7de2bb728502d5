import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';

/**
 * A qcow2 image's backing chain, read one layer at a time. qemu follows the backing file name written in
 * a qcow2 header, which the guest-facing image's owner controls; a root helper that let qemu (or
 * `qemu-img info --backing-chain`) follow it would open whatever file that name points to. So each layer
 * is first opened by the caller's opener, which applies the same checks as to a disk (the helper's path
 * rules: location, owner, no symlink), and only then is its header read, through the opened fd, with
 * `qemu-img info` (which does not open a backing file without --backing-chain). The chain found is handed
 * to qemu as explicit -blockdev nodes, each from its own fd.
 */

export type LayerFormat = 'raw' | 'qcow2';

export interface BackingLayer {
  /** Absolute, as the opener checked it. */
  readonly path: string;
  readonly format: LayerFormat;
}

/** A file opened by the opener, whose /proc fd path tools can read without reopening by name. */
export interface OpenedLayer {
  readonly fdPath: string;
  readonly dev: number;
  readonly ino: number;
  close(): Promise<void>;
}

export type LayerOpener = (layerPath: string) => Promise<OpenedLayer>;

export class BackingChainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackingChainError';
  }
}

/** Deeper chains are almost certainly a mistake (or a loop through hard links); libvirt allows 200. */
export const MAX_CHAIN_DEPTH = 16;
const QEMU_IMG_TIMEOUT_MS = 30_000;
const execFileAsync = promisify(execFile);

/** The parts of one image's `qemu-img info --output=json` that decide its chain. */
export interface ImageHeader {
  readonly format: string;
  readonly virtualSize: number;
  readonly backingFilename?: string;
  readonly backingFormat?: string;
  readonly dataFile?: string;
  readonly encrypted: boolean;
}

export function parseImageHeader(stdout: string, image: string): ImageHeader {
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(stdout) as Record<string, unknown>;
  } catch (e) {
    throw new BackingChainError(`qemu-img info printed no JSON for ${image}: ${(e as Error).message}`);
  }
  if (typeof info.format !== 'string') throw new BackingChainError(`qemu-img info reported no format for ${image}`);
  const specific = (info['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data;
  return {
    format: info.format,
    virtualSize: typeof info['virtual-size'] === 'number' ? info['virtual-size'] : 0,
    ...(typeof info['backing-filename'] === 'string' ? { backingFilename: info['backing-filename'] } : {}),
    ...(typeof info['backing-filename-format'] === 'string' ? { backingFormat: info['backing-filename-format'] } : {}),
    ...(typeof specific?.['data-file'] === 'string' ? { dataFile: specific['data-file'] } : {}),
    encrypted: info.encrypted === true,
  };
}

/** One image's header, read through `file` (a /proc fd path or a plain path) as `format`, never probed. */
export async function readImageHeader(file: string, format: LayerFormat, shownAs: string, qemuImg = 'qemu-img'): Promise<ImageHeader> {
  try {
    // -U: a layer shared with a running VM is locked by its qemu; reading the header needs no lock.
    const { stdout } = await execFileAsync(qemuImg, ['info', '-U', '-f', format, '--output=json', file], { timeout: QEMU_IMG_TIMEOUT_MS, maxBuffer: 1 << 20 });
    return parseImageHeader(stdout, shownAs);
  } catch (err) {
    if (err instanceof BackingChainError) throw err;
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean };
    if (e.code === 'ENOENT') throw new BackingChainError(`${qemuImg} was not found: install qemu-img (Debian: qemu-utils)`);
    if (e.killed) throw new BackingChainError(`qemu-img info ${shownAs} did not answer within ${QEMU_IMG_TIMEOUT_MS / 1000} s`);
    throw new BackingChainError(`qemu-img cannot read ${shownAs}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/**
 * Where a backing name points: absolute as written, or relative to the directory of the image naming it
 * (qemu's rule). Protocol names (`json:{…}`, `nbd:…`, `file:…`) are refused: they are not files.
 */
export function resolveBackingName(image: string, name: string): string {
  if (name.startsWith('json:') || /^[A-Za-z0-9+.-]+:/.test(name)) {
    throw new BackingChainError(`${image} names its backing store "${name}", which is not a plain file name: only files are supported`);
  }
  return path.resolve(path.dirname(image), name);
}

function checkedFormat(image: string, format: string | undefined): LayerFormat {
  if (format === undefined) {
    throw new BackingChainError(
      `${image} has a backing file without a recorded backing format (qemu would have to guess it, which a guest can exploit); ` +
        `record it with: qemu-img rebase -u -F qcow2 -b BACKING ${image}`,
    );
  }
  if (format !== 'raw' && format !== 'qcow2') throw new BackingChainError(`${image}: backing format ${format} is not supported (raw or qcow2)`);
  return format;
}

/**
 * The backing layers below `top` (a qcow2 image), top-most first; [] when it has none. Every layer is
 * opened with `openLayer` (which refuses what the caller's rules refuse) before its header is read.
 */
export async function readBackingChain(top: string, openLayer: LayerOpener, qemuImg = 'qemu-img'): Promise<BackingLayer[]> {
  const layers: BackingLayer[] = [];
  const seen = new Set<string>();
  let current = top;
  let format: LayerFormat = 'qcow2';
  for (;;) {
    const opened = await openLayer(current);
    let header: ImageHeader;
    try {
      const inode = `${opened.dev}:${opened.ino}`;
      if (seen.has(inode)) throw new BackingChainError(`the backing chain of ${top} loops back to ${current}`);
      seen.add(inode);
      header = await readImageHeader(opened.fdPath, format, current, qemuImg);
    } finally {
      await opened.close();
    }
    if (header.dataFile !== undefined) throw new BackingChainError(`${current} keeps its data in an external file (${header.dataFile}), which is not supported`);
    if (header.encrypted) throw new BackingChainError(`${current} is encrypted, which is not supported`);
    if (header.backingFilename === undefined) return layers;
    if (layers.length >= MAX_CHAIN_DEPTH) throw new BackingChainError(`the backing chain of ${top} is deeper than ${MAX_CHAIN_DEPTH} layers`);
    const next = { path: resolveBackingName(current, header.backingFilename), format: checkedFormat(current, header.backingFormat) };
    layers.push(next);
    current = next.path;
    format = next.format;
  }
}

/**
 * The opener for the unprivileged side (the user's own view of a chain): the file itself, not a symlink
 * at its last component, and the name it was opened by must be the kernel's name for it.
 */
export async function openLayerAsUser(layerPath: string): Promise<OpenedLayer> {
  let handle: FileHandle;
  try {
    handle = await open(layerPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new BackingChainError(`cannot open ${layerPath}: ${(err as Error).message}`);
  }
  try {
    const fdPath = `/proc/${process.pid}/fd/${handle.fd}`;
    const actual = await readlink(fdPath);
    if (actual !== layerPath) throw new BackingChainError(`${layerPath} resolves to ${actual}: name the file itself, not a link to it`);
    const stat = await handle.stat();
    return { fdPath, dev: stat.dev, ino: stat.ino, close: () => handle.close() };
  } catch (err) {
    await handle.close();
    throw err;
  }
}
