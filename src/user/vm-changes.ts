import { realpath, stat } from 'node:fs/promises';
import { checkPathSyntax, PathRefusedError } from '../host/path-policy';
import { describeFileError } from '../core/user-words';
import { GUEST_PORT_RANGE, HOST_PORT_RANGE, type BootDefinition, type DiskDefinition, type NetworkDefinition, type PortForward, type VmDefinition, type VmDefinitionInput } from '../core/vm-definition';

/**
 * What a user may change in a stopped VM, as the CLI's flags and the app's edit form say it, and the one
 * place that turns it into a new definition. Every check here names the user's own word for the thing
 * (`--forward`, "Port forwards"), because the store's checks name definition fields the user never typed;
 * the store and the helper check the result again, so nothing here is the only guard.
 *
 * Firmware is the one change with a file behind it (the VM's own variable store): this module only says
 * which store the new definition needs, and the service creates or removes it.
 */
export interface VmChanges {
  readonly name?: string;
  readonly memoryMiB?: number;
  readonly vcpus?: number;
  readonly removeDisks?: readonly string[];
  readonly addDisks?: readonly DiskDefinition[];
  /** An absolute path attaches (or replaces) the installer ISO; null detaches it and boots the first disk. */
  readonly iso?: string | null;
  readonly network?: NetworkDefinition['mode'];
  /** The complete new list of forwards (absent: kept as they are). */
  readonly portForwards?: readonly PortForward[];
  readonly display?: boolean;
  readonly firmware?: 'bios' | 'uefi';
}

/** The user's word for each change: a CLI flag or a form field's label. */
export type ChangeFields = Readonly<Record<'removeDisks' | 'iso' | 'noIso' | 'network' | 'portForwards' | 'firmware', string>>;

export const CLI_CHANGE_FIELDS: ChangeFields = {
  removeDisks: '--remove-disk', iso: '--iso', noIso: '--no-iso', network: '--network', portForwards: '--forward', firmware: '--firmware',
};

export const FORM_CHANGE_FIELDS: ChangeFields = {
  removeDisks: 'Disks', iso: 'ISO image', noIso: 'ISO image', network: 'Network', portForwards: 'Port forwards', firmware: 'Firmware',
};

export class VmChangeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VmChangeError';
  }
}

const forwardText = (f: PortForward) => `${f.hostPort}:${f.guestPort}`;

function parsePort(text: string, range: { min: number; max: number }, what: string, field: string, whole: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= range.min && port <= range.max)) {
    const why = range.min > 1 ? ` (qemu runs unprivileged, so it cannot listen below ${range.min})` : '';
    throw new VmChangeError(`${field} ${whole}: the ${what} port must be a number from ${range.min} to ${range.max}${why}, not "${text}"`);
  }
  return port;
}

/**
 * `HOST:GUEST`, or `127.0.0.1:HOST:GUEST`: a port on the host's loopback that reaches a TCP port of the
 * guest. Any other host address is refused: a forward is for this machine's users, never the network.
 */
export function parsePortForward(text: string, field: string): PortForward {
  const parts = text.trim().split(':');
  if (parts.length === 3) {
    if (parts[0] !== '127.0.0.1' && parts[0] !== 'localhost') {
      throw new VmChangeError(`${field} ${text}: forwards listen on the host's loopback (127.0.0.1) only, not on ${parts[0]}`);
    }
    parts.shift();
  }
  if (parts.length !== 2) throw new VmChangeError(`${field} ${text}: say HOST:GUEST, a host loopback port and a guest port, e.g. 2222:22`);
  return {
    hostPort: parsePort(parts[0] as string, HOST_PORT_RANGE, 'host', field, text),
    guestPort: parsePort(parts[1] as string, GUEST_PORT_RANGE, 'guest', field, text),
  };
}

/** Ranges and duplicates, for a list that did not come through parsePortForward (the form's rows). */
export function checkPortForwards(forwards: readonly PortForward[], field: string): void {
  const seen = new Map<number, PortForward>();
  for (const f of forwards) {
    parsePortForward(forwardText(f), field);
    const first = seen.get(f.hostPort);
    if (first !== undefined) {
      throw new VmChangeError(`${field} ${forwardText(f)}: host port ${f.hostPort} is already forwarded (to guest port ${first.guestPort})`);
    }
    seen.set(f.hostPort, f);
  }
}

function changedBoot(current: VmDefinition, iso: string | null | undefined, disks: readonly DiskDefinition[], fields: ChangeFields): BootDefinition {
  const { boot } = current;
  if (iso === undefined) {
    if (boot.kind === 'disk' && disks.length === 0) {
      throw new VmChangeError(`${fields.removeDisks}: ${current.name} boots from its first disk, so it cannot lose its last one (attach an ISO or another disk first)`);
    }
    return boot;
  }
  if (iso === null) {
    if (boot.kind !== 'iso') throw new VmChangeError(`${fields.noIso}: ${current.name} has no ISO attached`);
    if (disks.length === 0) throw new VmChangeError(`${fields.noIso}: ${current.name} has no disk to boot from once the ISO is gone; attach one first`);
    return { kind: 'disk' };
  }
  if (boot.kind === 'kernel') {
    throw new VmChangeError(`${fields.iso} ${iso}: ${current.name} boots a kernel directly; define a new VM to install from an ISO`);
  }
  if (disks.some((d) => d.path === iso)) throw new VmChangeError(`${fields.iso} ${iso}: this file is already one of ${current.name}'s disks`);
  return { kind: 'iso', iso };
}

function changedNetwork(current: VmDefinition, changes: VmChanges, fields: ChangeFields): NetworkDefinition {
  const mode = changes.network ?? current.network?.mode ?? 'none';
  if (mode === 'none') {
    if (changes.portForwards !== undefined && changes.portForwards.length > 0) {
      throw new VmChangeError(`${fields.portForwards}: ${current.name} would have no network; forwards need user-mode networking (${fields.network} user)`);
    }
    return { mode: 'none' };
  }
  const forwards = changes.portForwards ?? (current.network?.mode === 'user' ? current.network.portForwards ?? [] : []);
  checkPortForwards(forwards, fields.portForwards);
  return forwards.length === 0 ? { mode: 'user' } : { mode: 'user', portForwards: forwards.map((f) => ({ hostPort: f.hostPort, guestPort: f.guestPort })) };
}

/**
 * The definition a stopped VM gets from `changes`. A switch to UEFI leaves `firmware.nvram` empty: the
 * caller creates the variable store (only it knows where the VM's files live) before saving.
 */
export function applyVmChanges(current: VmDefinition, changes: VmChanges, fields: ChangeFields): VmDefinitionInput {
  for (const p of changes.removeDisks ?? []) {
    if (!current.disks.some((d) => d.path === p)) throw new VmChangeError(`${fields.removeDisks} ${p}: ${current.name} has no such disk`);
  }
  const disks = [...current.disks.filter((d) => !(changes.removeDisks ?? []).includes(d.path)), ...(changes.addDisks ?? [])];
  const boot = changedBoot(current, changes.iso, disks, fields);
  const network = changedNetwork(current, changes, fields);
  const kind = changes.firmware ?? current.firmware?.kind ?? 'bios';
  const firmware = kind === 'bios' ? { kind } : current.firmware?.kind === 'uefi' ? current.firmware : { kind, nvram: '' };
  const display = changes.display === undefined ? current.display ?? 'none' : changes.display ? 'vnc' : 'none';
  const { version: _v, createdAt: _c, ...rest } = current;
  return {
    ...rest,
    ...(changes.name === undefined ? {} : { name: changes.name }),
    ...(changes.memoryMiB === undefined ? {} : { memoryMiB: changes.memoryMiB }),
    ...(changes.vcpus === undefined ? {} : { vcpus: changes.vcpus }),
    boot, disks, network, firmware, display,
  };
}

/** An installer ISO as the user names it: the file itself (the helper labels without following links), a regular file. */
export async function readableIso(isoPath: string, field: string): Promise<string> {
  try {
    checkPathSyntax(isoPath);
    const file = await realpath(isoPath);
    if (!(await stat(file)).isFile()) throw new VmChangeError(`${field} ${isoPath} is not a regular file`);
    return file;
  } catch (e) {
    if (e instanceof VmChangeError) throw e;
    // One wording per condition, shared with --kernel and --disk (user-words.ts).
    throw new VmChangeError(`${field} ${e instanceof PathRefusedError ? `${isoPath}: ${e.message}` : describeFileError(isoPath, e)}`);
  }
}
