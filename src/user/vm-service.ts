import { access, constants as fsConstants, link, mkdir, realpath, rename, rm, stat, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { formatLevel, parseLevel } from '../core/selinux/context';
import { planStart, type LabelAction, type PlanClass, type PlanResource } from '../core/selinux/label-planner';
import type { PolicyProfile } from '../core/selinux/policy-profile';
import { HelperRequestError, type HelperClient } from './helper-client';
import type { Result, RunInfo } from '../contracts/helper-protocol';
import { readLabels } from '../security/selinux/file-labels';
import { isUnder } from '../host/path-policy';
import { createDiskImage, copyDiskImage, DiskImageError, imageSnapshot, listImageSnapshots, snapshotsFromInfo, type CreateDiskOptions, type DiskSnapshot } from './disk-images';
import { openLayerAsUser, readBackingChain, type BackingLayer } from '../host/backing-chain';
import { createNvram } from '../host/firmware';
import { applyVmChanges, VmChangeError, type ChangeFields, type VmChanges } from './vm-changes';
import { checkVmName, SNAPSHOT_NAME_PATTERN, toVmSpec, VmDefinitionError, type VmDefinition, type VmDefinitionInput } from '../core/vm-definition';
import { describeFileError } from '../core/user-words';
import type { VmStore } from './vm-store';

/**
 * The unprivileged side of VM management, shared by the CLI and the app: definitions come from the
 * user's store, everything privileged goes through the root helper, and labels on disk are read here
 * (security.selinux is readable without privileges).
 */
export type VmState = 'stopped' | RunInfo['state'];

/** A defined VM with what the helper reports while it runs (null/false while stopped). */
export interface VmStatus extends Pick<RunInfo, 'name' | 'pid' | 'processLabel' | 'imageLabel' | 'level' | 'confined' | 'notConfinedReason'> {
  state: VmState;
  /** How the running qemu is held (the helper's word); null while stopped. */
  confinement: RunInfo['confinement'] | null;
  vcpus: number;
  memoryMiB: number;
  seclabel: VmDefinition['seclabel'];
  accel: RunInfo['accel'] | null;
  /** How the helper describes the running VM's confinement; null while stopped. */
  security: RunInfo['security'] | null;
}

export interface ResourceLabel {
  path: string;
  resource: PlanResource;
  device: string;
  class: PlanClass;
  /** The label the file should carry now; null when nothing is expected (stopped, or relabel off). */
  expectedLabel: string | null;
  /** The label a start gives it, without a level when that is a fresh pair (`freshPair`); null: left alone. */
  plannedLabel: string | null;
  /** A stopped dynamic VM's file that gets the pair the VM is given at its next start (none is chosen yet). */
  freshPair: boolean;
  /** The label found on disk; null when the file has none (or cannot be read). */
  actualLabel: string | null;
  /** null when there is nothing to compare. */
  match: boolean | null;
  /** Why the expectation is what it is. */
  reason: string;
}

export interface StartRequest {
  allowUnconfined?: boolean;
}

export type SnapshotOp = 'list' | 'take' | 'revert' | 'delete';

/** A VM's snapshots, per qcow2 disk (internal snapshots: one name, one snapshot in each disk). */
export interface VmSnapshots {
  readonly vm: string;
  /** Taken through qemu (running) or with qemu-img (stopped). */
  readonly via: 'qmp' | 'qemu-img';
  readonly disks: readonly { readonly disk: string; readonly snapshots: readonly DiskSnapshot[] }[];
}

/** What a clone does with the original's seclabel: a static label would put two VMs on one pair. */
export interface CloneResult {
  readonly definition: VmDefinition;
  readonly copied: readonly { from: string; to: string }[];
  readonly note: string | null;
}

const snapshotName = new RegExp(SNAPSHOT_NAME_PATTERN);

/**
 * The boot files a definition names, which only a start would open: a missing or unreadable one is said
 * when the VM is defined or edited, not as a failed start later. Checked as the user, who picked them;
 * the helper checks them again under its own rules at each start. Relative paths are left to the
 * definition's own checks.
 */
export async function bootFileProblems(input: VmDefinitionInput): Promise<string[]> {
  const { boot } = input;
  const files: [string, string | undefined][] = boot.kind === 'kernel'
    ? [['boot.kernel', boot.kernel], ['boot.initrd', boot.initrd], ['boot.dtb', boot.dtb]]
    : boot.kind === 'iso' ? [['boot.iso', boot.iso]] : [];
  const problems = await Promise.all(files.map(async ([field, file]) => {
    if (file === undefined || !path.isAbsolute(file)) return [];
    try {
      if (!(await stat(file)).isFile()) return [`${field} ${file} is not a regular file`];
      await access(file, fsConstants.R_OK);
      return [];
    } catch (err) {
      return [`${field} ${describeFileError(file, err)}`];
    }
  }));
  return problems.flat();
}

export async function checkBootFiles(input: VmDefinitionInput, operation: string): Promise<void> {
  const problems = await bootFileProblems(input);
  if (problems.length > 0) throw new VmDefinitionError(problems, operation);
}

/** A defined VM asked for something only a running one can do (one wording for the CLI and the app). */
export class VmNotRunningError extends Error {
  constructor(readonly vmName: string) {
    super(`VM "${vmName}" is not running`);
    this.name = 'VmNotRunningError';
  }
}

export class VmService {
  constructor(
    readonly store: VmStore,
    private readonly helper: () => HelperClient,
    private readonly profile: () => Promise<PolicyProfile>,
  ) {}

  private async running(): Promise<Map<string, RunInfo>> {
    const list = await this.helper().request('list');
    const uid = process.getuid?.() ?? 0;
    return new Map(list.filter((vm) => vm.ownerUid === uid).map((vm) => [vm.name, vm]));
  }

  async list(): Promise<{ vms: VmStatus[]; problems: readonly { file: string; message: string }[] }> {
    const [{ definitions, problems }, running] = await Promise.all([this.store.list(), this.running()]);
    const vms = definitions.map((def): VmStatus => {
      const run = running.get(def.name);
      return {
        name: def.name,
        state: run?.state ?? 'stopped',
        pid: run?.pid ?? null,
        processLabel: run?.processLabel ?? null,
        imageLabel: run?.imageLabel ?? null,
        level: run?.level ?? null,
        confinement: run?.confinement ?? null,
        confined: run?.confined ?? false,
        notConfinedReason: run ? run.notConfinedReason : 'not running',
        vcpus: def.vcpus,
        memoryMiB: def.memoryMiB,
        seclabel: def.seclabel,
        accel: run?.accel ?? null,
        security: run?.security ?? null,
      };
    });
    return { vms, problems };
  }

  /** Where a VM's own UEFI variable store goes: beside its definition, named after it. */
  nvramPathFor(name: string): string {
    return path.join(this.store.directory, `${checkVmName(name)}.nvram.fd`);
  }

  /** A fresh variable store for `name`, copied from the template by this (the user's) process. */
  private async newNvram(name: string, field: string): Promise<string> {
    const file = this.nvramPathFor(name);
    await mkdir(this.store.directory, { recursive: true, mode: 0o700 });
    await createNvram(file).catch((err: NodeJS.ErrnoException) => {
      throw new VmChangeError(err.code === 'EEXIST'
        ? `${field}: ${file} already exists; a variable store of another VM is never reused (move it away, or remove it if it is a leftover)`
        : `${field}: cannot create the UEFI variable store ${file}: ${err.message}`);
    });
    return file;
  }

  /** Saves with a store created for a UEFI definition that asks for one (an empty nvram), removed again if saving fails. */
  private async withNewNvram(input: VmDefinitionInput, field: string, save: (input: VmDefinitionInput) => Promise<VmDefinition>): Promise<VmDefinition> {
    if (input.firmware?.kind !== 'uefi' || input.firmware.nvram !== '') return save(input);
    const nvram = await this.newNvram(input.name, field);
    try {
      return await save({ ...input, firmware: { kind: 'uefi', nvram } });
    } catch (err) {
      await rm(nvram, { force: true });
      throw err;
    }
  }

  /** `firmware: { kind: 'uefi', nvram: '' }` gets the VM its own variable store. */
  async define(input: VmDefinitionInput, fields: Pick<ChangeFields, 'firmware'> = { firmware: 'firmware' }): Promise<VmDefinition> {
    await checkBootFiles(input, `defining "${input.name}"`);
    return this.withNewNvram(input, fields.firmware, (ready) => this.store.define(ready));
  }

  /** Deletes a stopped VM's definition and its variable store (its own file, unlike its disks, which are kept). */
  async undefine(name: string): Promise<void> {
    if ((await this.running()).has(name)) throw new Error(`VM ${name} is running; stop it first`);
    // A definition that cannot be read can still be removed; it just has no known variable store.
    const definition = await this.store.get(name).catch(() => undefined);
    await this.store.remove(name);
    if (definition?.firmware?.kind === 'uefi') await rm(definition.firmware.nvram, { force: true });
  }

  /** Static labels of the user's other VMs: reserved so no dynamic pair can reach them. */
  private async reservedLevels(except: string): Promise<string[]> {
    const { definitions } = await this.store.list();
    return definitions.flatMap((d) => (d.name !== except && d.seclabel.mode === 'static' ? [d.seclabel.label] : []));
  }

  async start(name: string, request: StartRequest = {}): Promise<RunInfo> {
    const definition = await this.store.get(name);
    return this.helper().request('start', {
      definition,
      reservedLevels: await this.reservedLevels(name),
      ...(request.allowUnconfined ? { allowUnconfined: true } : {}),
    });
  }

  /**
   * A request about a running VM. The helper knows only running VMs, so its "not running" is told apart
   * here: a name with no definition is "no VM named …" (as for every other command), a defined one is not
   * running.
   */
  async onRunning<T>(name: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      if (!(err instanceof HelperRequestError && err.code === 'not-found' && /^VM \S+ is not running$/.test(err.message))) throw err;
      await this.store.get(name);
      throw new VmNotRunningError(name);
    }
  }

  stop(name: string, options: { force?: boolean } = {}): Promise<{ forced: boolean; restoredFiles: number }> {
    return this.onRunning(name, () => this.helper().request('stop', { vm: name, ...(options.force ? { force: true } : {}) }));
  }

  /**
   * Every file the VM uses, with the label it should have and the label on disk. While the VM runs the
   * expectation is the start plan's label (the pair it was given); when stopped, shared and read-only
   * content keeps its label and private files carry whatever they had before (no expectation).
   */
  async labels(name: string): Promise<ResourceLabel[]> {
    const [definition, running, profile] = await Promise.all([this.store.get(name), this.running(), this.profile()]);
    const run = running.get(name);
    const spec = toVmSpec(definition, run?.accel ?? 'tcg', await this.backingChains(definition));
    // Only SELinux labels files: a VM another model confines (AppArmor's level is its profile's name)
    // expects no label. A helper before the security drivers ran SELinux only, and says no model.
    const labeled = run !== undefined && (run.security?.model ?? 'selinux') === 'selinux';
    const level = labeled && run.level ? parseLevel(run.level) : undefined;
    // A stopped dynamic VM has no pair yet: plan with a stand-in pair, and never show it as if it were one.
    const standIn = level === undefined && definition.seclabel.mode === 'dynamic' ? parseLevel('s0:c0,c1') : undefined;
    const plan = planStart(spec, profile, level ?? standIn);
    const standInSuffix = standIn === undefined ? undefined : `:${formatLevel(standIn)}`;
    const freshPair = (label: string | null) => label !== null && standInSuffix !== undefined && label.endsWith(standInSuffix);
    const planned = (label: string | null) => (label !== null && freshPair(label) ? label.slice(0, -(standInSuffix as string).length) : label);
    // A device's label is on its node: /dev/VG/LV is a link to it.
    const nodes = await Promise.all(plan.actions.map((a) => (isUnder(a.path, '/dev') ? realpath(a.path).catch(() => a.path) : a.path)));
    const labels = await readLabels(nodes);
    const onDisk = new Map(plan.actions.map((a, i) => [a.path, labels.get(nodes[i] as string) ?? null]));
    return plan.actions.map((action: LabelAction): ResourceLabel => {
      // While stopped nothing is expected: private files have their own label back, content may never have been labeled.
      const expected = labeled ? action.label : null;
      const actual = onDisk.get(action.path) ?? null;
      const reason = action.label === null ? 'relabel off: left as it is' : run ? action.reason : `VM stopped; at start: ${action.reason}`;
      return {
        path: action.path, resource: action.resource, device: action.device, class: action.class,
        expectedLabel: expected, plannedLabel: planned(action.label), freshPair: freshPair(action.label), actualLabel: actual,
        match: expected === null ? null : expected === actual, reason,
      };
    });
  }

  /** The AppArmor profiles the helper loaded for the requester's running VMs (the audit's answer under AppArmor). */
  vmProfiles(): Promise<Result<'vmProfiles'>> {
    return this.helper().request('vmProfiles');
  }

  /** `job`: an id the requester can cancel a tree walk by (cancelRelabel). */
  relabel(path: string, mode: 'shared' | 'readonly' | 'private' | 'restore', vm?: string, job?: string): Promise<unknown> {
    return this.helper().request('relabel', { path, mode, ...(vm ? { vm } : {}), ...(job ? { job } : {}) });
  }

  /** Each qcow2 disk's backing chain as the user sees it (a chain that cannot be read shows no layers). */
  private backingChains(definition: VmDefinition): Promise<(BackingLayer[] | undefined)[]> {
    return Promise.all(definition.disks.map((d) => (d.format === 'qcow2' ? readBackingChain(d.path, openLayerAsUser).catch(() => undefined) : undefined)));
  }

  /** A new image, created by this (the user's) process. */
  createDisk(options: CreateDiskOptions): Promise<{ path: string; format: 'raw' | 'qcow2'; sizeBytes: number }> {
    return createDiskImage(options);
  }

  /** Pause, resume or reset a running VM through the helper (which checks it is the requester's). */
  control(name: string, action: 'pause' | 'resume' | 'reboot'): Promise<{ id: string; status: string; running: boolean }> {
    return this.onRunning(name, () => this.helper().request('control', { vm: name, action }));
  }

  /**
   * Internal snapshots of the VM's writable qcow2 disks: through the helper's QMP while it runs, with
   * qemu-img as the user while it is stopped (the images are the user's files then).
   */
  async snapshot(name: string, op: SnapshotOp, snapshot?: string): Promise<VmSnapshots> {
    if (op !== 'list') {
      if (snapshot === undefined) throw new DiskImageError(`a snapshot name is needed to ${op} one`);
      if (!snapshotName.test(snapshot)) throw new DiskImageError(`snapshot name must start with a letter and contain only letters, digits, ".", "_" and "-" (at most 64), not "${snapshot}"`);
    }
    const definition = await this.store.get(name);
    const disks = definition.disks.filter((d) => d.format === 'qcow2' && d.class !== 'readonly');
    if (disks.length === 0) throw new DiskImageError(`VM ${name} has no writable qcow2 disk: snapshots need qcow2 (convert with qemu-img convert -O qcow2)`);
    if ((await this.running()).has(name)) {
      const result = await this.helper().request('snapshot', { vm: name, op, ...(snapshot ? { name: snapshot } : {}) });
      return { vm: name, via: 'qmp', disks: result.disks.map((d) => ({ disk: d.disk, snapshots: snapshotsFromInfo(d.snapshots) })) };
    }
    if (op !== 'list') {
      const done: string[] = [];
      for (const d of disks) {
        try {
          await imageSnapshot(op, d.path, snapshot as string);
          done.push(d.path);
        } catch (err) {
          // A snapshot taken on some disks only would be a trap at revert: take it back.
          if (op === 'take') for (const p of done) await imageSnapshot('delete', p, snapshot as string).catch(() => undefined);
          throw err;
        }
      }
    }
    return { vm: name, via: 'qemu-img', disks: await Promise.all(disks.map(async (d) => ({ disk: d.path, snapshots: await listImageSnapshots(d.path) }))) };
  }

  /**
   * Clones a stopped VM: every private disk copied by this (the user's) process next to the original as
   * `<clone>-<n>.<format>` unless `diskPaths` names the copies (a UEFI variable store as `<clone>_VARS.fd`
   * beside the original's); shared and read-only disks are shared, not copied. A dynamic seclabel stays dynamic (a fresh pair at each start). A static label is not cloned
   * as-is, which would give two VMs one pair: the clone becomes dynamic, and the result says so.
   */
  async clone(source: string, target: string, diskPaths: readonly string[] = []): Promise<CloneResult> {
    if ((await this.running()).has(source)) throw new DiskImageError(`VM ${source} is running: stop it to clone it (its disks would be copied mid-write)`);
    const original = await this.store.get(source);
    const copied: { from: string; to: string }[] = [];
    let n = 0;
    const disks = original.disks.map((d) => {
      if (d.class !== 'private') return d;
      const to = diskPaths[n] ?? path.join(path.dirname(d.path), `${target}-${n}.${d.format}`);
      n++;
      copied.push({ from: d.path, to });
      return { ...d, path: to };
    });
    // A UEFI variable store is the VM's own writable file, like a private disk: the clone gets a copy.
    let firmware = original.firmware;
    if (firmware?.kind === 'uefi') {
      const to = path.join(path.dirname(firmware.nvram), `${target}_VARS.fd`);
      copied.push({ from: firmware.nvram, to });
      firmware = { kind: 'uefi', nvram: to };
    }
    const seclabel = original.seclabel.mode === 'static' ? { mode: 'dynamic' as const } : original.seclabel;
    const note = original.seclabel.mode === 'static'
      ? `${source} has the static label ${original.seclabel.label}; the clone is dynamic (a fresh pair at each start), since two VMs must not share a pair`
      : null;
    const { version: _v, createdAt: _c, ...rest } = original;
    const input: VmDefinitionInput = { ...rest, name: target, disks, seclabel, ...(firmware === undefined ? {} : { firmware }) };
    // Validate (name free, disks free) before copying gigabytes.
    const { definitions } = await this.store.list();
    if (definitions.some((d) => d.name === target)) throw new DiskImageError(`a VM named "${target}" already exists`);
    const made: string[] = [];
    try {
      for (const c of copied) {
        await copyDiskImage(c.from, c.to);
        made.push(c.to);
      }
      return { definition: await this.store.define(input), copied, note };
    } catch (err) {
      await Promise.all(made.map((p) => rm(p, { force: true })));
      throw err;
    }
  }

  /**
   * Changes a stopped VM (refused while it runs); errors name `fields`, the user's words. A rename moves
   * its definition and the variable store named after it; a switch to UEFI creates a store, a switch to
   * BIOS deletes it once the new definition is saved. Bad input changes nothing.
   */
  async edit(name: string, changes: VmChanges, fields: ChangeFields): Promise<VmDefinition> {
    if ((await this.running()).has(name)) throw new DiskImageError(`VM ${name} is running: stop it to edit it`);
    const current = await this.store.get(name);
    let input = applyVmChanges(current, changes, fields);
    // Only a changed boot is checked: an edit of memory must not fail on a kernel that went away since.
    if (JSON.stringify(current.boot) !== JSON.stringify(input.boot)) await checkBootFiles(input, `updating "${name}"`);
    const oldNvram = current.firmware?.kind === 'uefi' ? current.firmware.nvram : undefined;
    let moved: { from: string; to: string } | undefined;
    if (input.firmware?.kind === 'uefi' && oldNvram !== undefined && input.name !== name && oldNvram === this.nvramPathFor(name)) {
      moved = { from: oldNvram, to: this.nvramPathFor(input.name) };
      input = { ...input, firmware: { kind: 'uefi', nvram: moved.to } };
    }
    const saved = await this.withNewNvram(input, `${fields.firmware} uefi`, async (ready) => {
      if (moved) await renameNoReplace(moved.from, moved.to, fields.firmware);
      try {
        return await this.store.update(name, ready);
      } catch (err) {
        if (moved) await rename(moved.to, moved.from).catch(() => undefined);
        throw err;
      }
    });
    if (oldNvram !== undefined && saved.firmware?.kind !== 'uefi') await rm(oldNvram, { force: true });
    return saved;
  }
}

/** Moves a variable store, never over another file (rename(2) would replace it). */
async function renameNoReplace(from: string, to: string, field: string): Promise<void> {
  await link(from, to).catch((err: NodeJS.ErrnoException) => {
    throw new VmChangeError(`${field}: cannot move the variable store to ${to}: ${err.code === 'EEXIST' ? 'a file of that name exists' : err.message}`);
  });
  await unlink(from);
}
