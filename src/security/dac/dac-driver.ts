/**
 * The DAC driver: each VM's qemu runs as a uid and gid of its own (src/root/state/vm-ids.ts argues why),
 * and the files only it writes (its private disks, its UEFI variable store) belong to that uid while it
 * runs. It runs under the host's MAC model in the stack, like libvirt's DAC driver, and alone where the
 * host has none: ownership is the one wall every Linux kernel enforces.
 *
 * The uid is the label: `distinct` is the number, `process` and `image` spell it `uid:gid`. It is drawn
 * from the registry's records under the state lock, so it needs no state of its own; release and sweep
 * have nothing to give back (the record's removal frees the uid).
 */
import { readFile } from 'node:fs/promises';
import { isRelabeled } from '../../core/vm-spec';
import { HelperError } from '../../contracts/helper-protocol';
import { allocateVmId, type IdRange } from '../../root/state/vm-ids';
import type { ConfinementDescription, FileHolds, LabelBook, LiveLabel, ProbeResult, ProcessConfinement, SecuredVm, SecurityDriver, VmLabel } from '../security-driver';

/** The VM's uid of a DAC label (the number it was given); undefined for a label that is not one. */
export function dacUid(label: VmLabel | undefined): number | undefined {
  if (label?.model !== 'dac' || label.distinct === null || !/^\d+$/.test(label.distinct)) return undefined;
  return Number(label.distinct);
}

export function dacLabel(uid: number): VmLabel {
  return { model: 'dac', dynamic: true, process: `${uid}:${uid}`, image: `${uid}:${uid}`, distinct: String(uid) };
}

/** The real, effective, saved and filesystem ids of a process (/proc/PID/status's Uid: and Gid: lines). */
async function processIds(pid: number, procRoot: string): Promise<{ uids: number[]; gids: number[] } | null> {
  try {
    const status = await readFile(`${procRoot}/${pid}/status`, 'utf8');
    const ids = (key: string) => (new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
    return { uids: ids('Uid'), gids: ids('Gid') };
  } catch {
    return null;
  }
}

export class DacDriver implements SecurityDriver {
  readonly model = 'dac' as const;
  readonly modelName = 'DAC';

  constructor(private readonly options: { readonly range: IdRange; readonly procRoot?: string }) {}

  async probe(): Promise<ProbeResult> {
    return { model: this.model, state: 'enforcing' };
  }

  async prepare(): Promise<void> {}

  async generate(_vm: SecuredVm, book: LabelBook): Promise<VmLabel> {
    const { range } = this.options;
    const uid = await allocateVmId(range, book.others.flatMap((vm) => dacUid(vm.label) ?? []));
    if (uid === undefined) throw new HelperError('refused', `no free VM uid left in vmIdRange ${range.first}-${range.last}: every one runs a VM`);
    return dacLabel(uid);
  }

  release(): void {}

  async sweep(): Promise<readonly string[]> {
    return [];
  }

  /**
   * A private disk and the UEFI variable store belong to the VM's uid while it runs (journaled, given
   * back at stop): qemu gets fds either way, but no other VM's uid (nor the user's, meanwhile) may open
   * them by name. Shared and read-only files keep their owners: several VMs use them through the fds the
   * helper opened. Files the VM's definition leaves alone (seclabel none, relabel=no) stay as they are.
   */
  async setAll(vm: SecuredVm, label: VmLabel, files: FileHolds): Promise<void> {
    const uid = dacUid(label);
    const { seclabel } = vm.spec;
    if (uid === undefined || seclabel.mode === 'none' || (seclabel.mode === 'static' && !seclabel.relabel)) return;
    const owner = { uid, gid: uid };
    for (const disk of vm.spec.disks) {
      if (disk.class === 'private' && isRelabeled(disk)) await files.hold({ path: disk.path, kind: 'private', owner });
    }
    if (vm.spec.nvram !== undefined) await files.hold({ path: vm.spec.nvram, kind: 'private', owner });
  }

  /** Owners come back with the journal. */
  async restoreAll(): Promise<void> {}

  confineProcess(_vm: SecuredVm, label: VmLabel): ProcessConfinement {
    const uid = dacUid(label);
    return uid === undefined ? {} : { uid, gid: uid };
  }

  async verifyProcess(pid: number, label: VmLabel): Promise<string | null> {
    const uid = dacUid(label);
    if (uid === undefined) return null;
    const ids = await processIds(pid, this.options.procRoot ?? '/proc');
    if (ids === null) return `qemu's uid could not be read (expected ${uid})`;
    const wrong = [...ids.uids, ...ids.gids].some((id) => id !== uid);
    return wrong ? `qemu runs as uids ${ids.uids.join(' ')} and gids ${ids.gids.join(' ')}, not as its own ${uid}` : null;
  }

  /** Other programs' uids are not labels a VM could collide with: allocateVmId skips uids that run anything. */
  async liveLabels(): Promise<LiveLabel[]> {
    return [];
  }

  /** The private copy is owned by the VM's uid already (the lifecycle hands it over): no label. */
  async labelPrivateCopy(): Promise<void> {}

  async fileLabel(): Promise<string | null> {
    return null;
  }

  sharedLabel(): null {
    return null;
  }

  describe(label: VmLabel): ConfinementDescription {
    const uid = dacUid(label);
    const parts = uid === undefined ? [] : [
      { name: 'uid', value: String(uid), meaning: 'no other VM and no user runs as it' },
      { name: 'gid', value: String(uid) },
    ];
    return {
      model: this.model,
      modelName: 'DAC (per-VM uid)',
      processLabel: label.process,
      imageLabel: label.image,
      distinct: label.distinct,
      summary: uid === undefined ? 'qemu runs without a uid of its own' : `qemu runs as uid ${uid}, its own: its private files belong to it while it runs`,
      processParts: parts,
      imageParts: parts,
      layers: [],
    };
  }
}
