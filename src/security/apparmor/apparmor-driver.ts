/**
 * The AppArmor driver: each VM's qemu runs in a profile of its own, written at its start from its own
 * files (src/core/apparmor/vm-profile.ts), loaded before qemu is exec'd into it (aa-exec) and removed
 * once qemu is gone, as libvirt's AppArmor driver and virt-aa-helper do. AppArmor labels no files: what
 * keeps VM A from VM B's disk is that B's disk is not in A's profile. So setAll hands the journal no file
 * change, and restoreAll removes the profile. The profile name is the label: `svirt-vm-<uid>-<name>`.
 *
 * A VM profile never outlives its VM: sweep (every reconcile) removes each loaded or stored VM
 * profile no running VM's record names, so a crash of qemu, of the helper or of the host leaves none.
 */
import { readFile, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { vmProfileName, type ProfileFile } from '../../core/apparmor/vm-profile';
import type { VmSpec } from '../../core/vm-spec';
import type { ConfinementDescription, FileHolds, LabelBook, LiveLabel, ProbeResult, ProcessConfinement, SecuredVm, SecurityDriver, VmLabel } from '../security-driver';
import { AppArmorVmConfinement, type VmConfinementRequest } from './vm-confinement';
import { probeAppArmor, VmProfileStore, type AppArmorProbe } from './apparmor-host';

export interface AppArmorDriverOptions {
  /** Where the VMs' profiles are kept (the helper's state directory's `apparmor`). */
  readonly profileDir: string;
  /** A VM's run and display directories (the state store's). */
  readonly vmDirs: (vm: Pick<SecuredVm, 'ownerUid' | 'name'>) => readonly string[];
  readonly probe?: () => Promise<AppArmorProbe>;
  /** The global mode parameter (complain turns every profile into complain mode). */
  readonly modeParameter?: string;
  /** The profiles' store (a test passes one with a stand-in parser); by default apparmor_parser in profileDir. */
  readonly store?: VmProfileStore;
}

/** The files of a VM's spec, as its profile names them: canonical paths (a device's node, not a link to it). */
async function specFiles(spec: VmSpec): Promise<ProfileFile[]> {
  const canonical = (p: string) => realpath(p).catch(() => p);
  const files: ProfileFile[] = [];
  for (const d of spec.disks) {
    files.push({ path: await canonical(d.path), use: d.class });
    for (const layer of d.backingStore ?? []) files.push({ path: await canonical(layer.path), use: 'readonly' });
  }
  for (const p of [spec.kernel, spec.initrd, spec.dtb]) if (p !== undefined) files.push({ path: await canonical(p), use: 'boot' });
  if (spec.nvram !== undefined) files.push({ path: await canonical(spec.nvram), use: 'private' });
  // A pipe backend is two FIFOs beside its base name.
  for (const c of spec.charDevices) {
    for (const p of c.kind === 'pipe' ? [c.path, `${c.path}.in`, `${c.path}.out`] : [c.path]) files.push({ path: await canonical(p), use: 'private' });
  }
  return files;
}

export class AppArmorDriver implements SecurityDriver {
  readonly model = 'apparmor' as const;
  readonly modelName = 'AppArmor';
  private readonly confinement: AppArmorVmConfinement;
  /** What each profile loaded by this helper was made from, so a private copy can be added to it. */
  private readonly requests = new Map<string, VmConfinementRequest>();
  /** Per profile, the private copy being added now (see labelPrivateCopy). */
  private readonly adding = new Map<string, Promise<void>>();

  constructor(private readonly options: AppArmorDriverOptions) {
    // Whether the kernel runs AppArmor is fixed at boot: probed once, not at every reconcile's sweep.
    const probe = options.probe ?? (() => probeAppArmor());
    let probed: Promise<AppArmorProbe> | undefined;
    this.confinement = new AppArmorVmConfinement(options.store ?? new VmProfileStore({ dir: options.profileDir }), () => (probed ??= probe()));
  }

  async probe(): Promise<ProbeResult> {
    if (!(await this.confinement.active())) return { model: this.model, state: 'absent' };
    const mode = await readFile(this.options.modeParameter ?? '/sys/module/apparmor/parameters/mode', 'utf8').then((t) => t.trim(), () => 'enforce');
    return { model: this.model, state: mode === 'complain' ? 'permissive' : 'enforcing' };
  }

  async prepare(): Promise<void> {}

  async generate(vm: SecuredVm, _book: LabelBook): Promise<VmLabel> {
    if (vm.definition.seclabel.mode === 'none') return { model: this.model, dynamic: false, process: null, image: null, distinct: null };
    const profile = vmProfileName(vm.ownerUid, vm.name);
    return { model: this.model, dynamic: true, process: profile, image: null, distinct: profile };
  }

  release(): void {}

  /** Removes every VM profile, loaded or stored, that no kept VM's label names: a VM's profile never outlives it. */
  async sweep(book: LabelBook, keep: ReadonlySet<string>): Promise<readonly string[]> {
    if (!(await this.confinement.active())) return [];
    const kept = new Set(book.others.flatMap((vm) => (keep.has(vm.id) && vm.label?.process ? [vm.label.process] : [])));
    const swept = await this.confinement.sweep(kept);
    return swept.failed.map((f) => `AppArmor profile ${f.name}: ${f.error}`);
  }

  async setAll(vm: SecuredVm, label: VmLabel, _files: FileHolds): Promise<void> {
    if (label.process === null) return;
    const request: VmConfinementRequest = { ownerUid: vm.ownerUid, name: vm.name, files: await specFiles(vm.spec), dirs: this.options.vmDirs(vm) };
    this.requests.set(label.process, request);
    await this.confinement.prepare(request);
  }

  async restoreAll(_vmId: string, label: VmLabel): Promise<void> {
    if (label.process === null) return;
    this.requests.delete(label.process);
    await this.confinement.release(label.process);
  }

  confineProcess(_vm: SecuredVm, label: VmLabel): ProcessConfinement {
    return label.process === null ? {} : { execPrefix: ['aa-exec', '-p', label.process, '--'] };
  }

  async verifyProcess(pid: number, label: VmLabel): Promise<string | null> {
    return label.process === null ? null : this.confinement.problem(pid, label.process);
  }

  async liveLabels(): Promise<LiveLabel[]> {
    return [];
  }

  /**
   * A private copy qemu reopens by /proc/self/fd (a kernel, an initrd): unlinked, so only its fd names it,
   * and AppArmor checks the name it had. That name joins the VM's profile, which is loaded again.
   */
  async labelPrivateCopy(copy: string, label: VmLabel): Promise<void> {
    const profile = label.process;
    if (profile === null || !this.requests.has(profile)) return;
    const target = (await readlink(copy).catch(() => copy)).replace(/ \(deleted\)$/, '');
    if (!path.isAbsolute(target)) return;
    // One profile load at a time per VM, each from the request as the last one left it: the kernel's and
    // the initrd's copies are added at once, and neither may load a profile without the other.
    const previous = this.adding.get(profile) ?? Promise.resolve();
    const added = previous.catch(() => undefined).then(async () => {
      const request = this.requests.get(profile);
      if (request === undefined) return;
      const next = { ...request, files: [...request.files, { path: target, use: 'boot' as const }] };
      this.requests.set(profile, next);
      await this.confinement.prepare(next);
    });
    this.adding.set(profile, added);
    try {
      await added;
    } finally {
      if (this.adding.get(profile) === added) this.adding.delete(profile);
    }
  }

  async fileLabel(): Promise<string | null> {
    return null;
  }

  sharedLabel(): string | null {
    return null;
  }

  describe(label: VmLabel): ConfinementDescription {
    const profile = label.process;
    return {
      model: this.model,
      modelName: this.modelName,
      processLabel: profile,
      imageLabel: null,
      distinct: profile,
      summary: profile === null
        ? 'seclabel none: qemu runs without an AppArmor profile'
        : `qemu runs in the AppArmor profile ${profile}, made at its start from this VM's own files: no other VM's disk and no file of yours is in it`,
      processParts: profile === null ? [] : [{ name: 'profile', value: profile, meaning: 'written for this VM alone, removed when it stops' }],
      imageParts: [],
      layers: [],
    };
  }
}
