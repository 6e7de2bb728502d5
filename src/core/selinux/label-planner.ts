/**
 * The label planner: from a VM description, the host's policy profile and (for dynamic labels) the MCS
 * level allocated to this start, the exact labels to put on each file the VM opens and on its process,
 * and what to restore at stop. The semantics follow libvirt's SELinux security driver; the plan is data,
 * applied by the privileged helper, which keeps the remembered originals in its journal.
 */
import {
  ContextSyntaxError, formatContext, formatLevel, formatRange, parseContext, singleLevel,
  type Level, type MlsRange, type SecurityContext,
} from './context';
import { sharedContentLabel, type PolicyProfile } from './policy-profile';
import { isRelabeled, type CharDeviceRole, type CharDeviceSpec, type DiskSpec, type VmSpec } from '../vm-spec';

export type PlanResource = 'disk' | 'kernel' | 'initrd' | 'dtb' | 'nvram' | CharDeviceRole;

/**
 * - `private`, `shared`, `readonly`: disks by how they are shared.
 * - `content`: kernel, initrd and dtb, which qemu only reads.
 * - `char`: file-backed character devices (serial, console, channel, parallel).
 */
export type PlanClass = 'private' | 'shared' | 'readonly' | 'content' | 'char';

export interface LabelAction {
  readonly path: string;
  readonly resource: PlanResource;
  /** Which device of the VM asked for the path (`disk vda`, `kernel`, `serial 0`), for messages. */
  readonly device: string;
  readonly class: PlanClass;
  /** The context to set; null leaves the path's label as it is. */
  readonly label: string | null;
  /** Whether the original label must be remembered and put back at stop. */
  readonly remember: boolean;
  readonly reason: string;
}

export interface ProcessPlan {
  /** The qemu process context; null when it runs unconfined (seclabel none). */
  readonly context: string | null;
  readonly confined: boolean;
}

export interface StartPlan {
  readonly vm: string;
  readonly seclabel: VmSpec['seclabel']['mode'];
  readonly process: ProcessPlan;
  /** The process's MLS range (`s0:c1,c2`); null when unconfined. */
  readonly range: string | null;
  /** The label private resources get; null when nothing is relabeled. */
  readonly imageLabel: string | null;
  readonly actions: readonly LabelAction[];
  /** Things the user should know that do not stop the start (e.g. no TCG domain type in this policy). */
  readonly notes: readonly string[];
}

export interface RestoreAction {
  readonly path: string;
  readonly resource: PlanResource;
  readonly device: string;
  /** Put back the label remembered at start (the journal's), falling back to the path's default label. */
  readonly op: 'restore-remembered';
  readonly reason: string;
}

export interface StopPlan {
  readonly vm: string;
  /** In reverse start order, as libvirt rolls back. */
  readonly restores: readonly RestoreAction[];
  /** The dynamic MCS range to hand back to the allocator; null for static and none (never reserved). */
  readonly releaseRange: string | null;
}

export type LabelPlanErrorCode = 'malformed-label' | 'missing-level' | 'bad-level' | 'bad-path' | 'path-conflict' | 'plan-mismatch';

export class LabelPlanError extends Error {
  constructor(readonly code: LabelPlanErrorCode, message: string) {
    super(message);
    this.name = 'LabelPlanError';
  }
}

export interface PlanOptions {
  /**
   * Whether a path exists, asked only for pipes: qemu opens `path.in` and `path.out` when both exist,
   * else `path` itself, so those are the files to label. Without it, `path` is planned.
   */
  readonly pathExists?: (path: string) => boolean;
}

/** The VM-wide outcome of the seclabel: process label, image label, and whether anything is relabeled. */
interface VmLabels {
  readonly process: ProcessPlan;
  readonly range: MlsRange | null;
  /** Null when the seclabel forbids relabeling. */
  readonly imageLabel: string | null;
  /** Why nothing is relabeled, when that is so. */
  readonly noRelabelReason: string | null;
  readonly notes: string[];
}

function parseLabel(what: string, text: string): SecurityContext {
  try {
    return parseContext(text);
  } catch (e) {
    if (e instanceof ContextSyntaxError) throw new LabelPlanError('malformed-label', `${what}: ${e.message}`);
    throw e;
  }
}

function sameRange(a: MlsRange, b: MlsRange): boolean {
  return formatRange(a) === formatRange(b);
}

/** An allocated level must be one the allocator could hand out: the profile's sensitivity, categories in range. */
function checkAllocatedLevel(level: Level, profile: PolicyProfile): void {
  const { sensitivity, first, last } = profile.categoryRange;
  const text = formatLevel(level);
  if (level.categories.length === 0) {
    throw new LabelPlanError('bad-level', `MCS level ${text} has no categories: every VM could open this VM's images`);
  }
  if (level.sensitivity !== sensitivity) {
    throw new LabelPlanError('bad-level', `MCS level ${text} is not at sensitivity s${sensitivity} of the policy's category range`);
  }
  const outside = level.categories.filter((c) => c < first || c > last);
  if (outside.length > 0) {
    throw new LabelPlanError('bad-level', `MCS level ${text} has categories outside the range c${first}.c${last}`);
  }
}

/**
 * libvirt builds the process label from its own user and role, the base type and the pair, and the image
 * label from its own user with the image context's role and type. The profile's process context stands
 * in for "our own" context here, since the manager is not the daemon that confines the VM.
 */
export function imageLabelFor(profile: PolicyProfile, range: MlsRange): string {
  const { imageContext, processContext } = profile;
  return formatContext({ user: processContext.user, role: imageContext.role, type: imageContext.type, range });
}

function dynamicLabels(spec: VmSpec, baseLabel: string | undefined, profile: PolicyProfile, level: Level | undefined): VmLabels {
  const notes: string[] = [];
  let range: MlsRange;
  if (spec.live) {
    // A running domain keeps the pair it was started with, as libvirt re-adopts it from the live XML.
    const live = parseLabel(`VM "${spec.name}" live label`, spec.live.label);
    if (!live.range) throw new LabelPlanError('malformed-label', `VM "${spec.name}" live label "${spec.live.label}" has no MLS range`);
    if (level && !sameRange(live.range, singleLevel(level))) {
      throw new LabelPlanError(
        'bad-level',
        `VM "${spec.name}" runs at ${formatRange(live.range)} but level ${formatLevel(level)} was allocated; a running VM keeps its pair`,
      );
    }
    range = live.range;
    const imageLabel = spec.live.imageLabel === undefined
      ? imageLabelFor(profile, range)
      : formatContext(parseLabel(`VM "${spec.name}" live image label`, spec.live.imageLabel));
    return { process: { context: formatContext(live), confined: true }, range, imageLabel, noRelabelReason: null, notes };
  }
  if (!level) {
    throw new LabelPlanError('missing-level', `VM "${spec.name}" has a dynamic seclabel: an MCS level must be allocated before planning its start`);
  }
  checkAllocatedLevel(level, profile);
  range = singleLevel(level);

  let type = profile.processContext.type;
  if (baseLabel !== undefined) {
    type = parseLabel(`VM "${spec.name}" baselabel`, baseLabel).type;
  } else if (spec.accel === 'tcg') {
    if (profile.tcgProcessType !== undefined) {
      type = profile.tcgProcessType;
    } else {
      notes.push(`the policy defines no TCG domain type; the TCG guest runs as ${type}, which may be denied execmem unless virt_use_execmem is on`);
    }
  }
  const { user, role } = profile.processContext;
  const process = formatContext({ user, role, type, range });
  return { process: { context: process, confined: true }, range, imageLabel: imageLabelFor(profile, range), noRelabelReason: null, notes };
}

function staticLabels(spec: VmSpec, seclabel: Extract<VmSpec['seclabel'], { mode: 'static' }>, profile: PolicyProfile): VmLabels {
  const label = parseLabel(`VM "${spec.name}" static label`, seclabel.label);
  const process = { context: formatContext(label), confined: true };
  const range = label.range ?? null;
  if (!seclabel.relabel) {
    return { process, range, imageLabel: null, noRelabelReason: 'static seclabel with relabel=no: nothing is relabeled', notes: [] };
  }
  let imageLabel: string;
  if (seclabel.imageLabel !== undefined) {
    imageLabel = formatContext(parseLabel(`VM "${spec.name}" image label`, seclabel.imageLabel));
  } else {
    if (!range) {
      throw new LabelPlanError('malformed-label', `VM "${spec.name}" static label "${seclabel.label}" has no MLS range to give its images`);
    }
    imageLabel = imageLabelFor(profile, range);
  }
  return { process, range, imageLabel, noRelabelReason: null, notes: [] };
}

function vmLabels(spec: VmSpec, profile: PolicyProfile, level: Level | undefined): VmLabels {
  const seclabel = spec.seclabel;
  switch (seclabel.mode) {
    case 'dynamic':
      return dynamicLabels(spec, seclabel.baseLabel, profile, level);
    case 'static':
      return staticLabels(spec, seclabel, profile);
    case 'none':
      return {
        process: { context: null, confined: false },
        range: null,
        imageLabel: null,
        noRelabelReason: 'seclabel none: the VM runs unconfined and nothing is relabeled',
        notes: [],
      };
  }
}

/**
 * Paths go to a privileged helper: they must be absolute and free of `..` (which only the filesystem can
 * resolve). Repeated and trailing slashes and `.` segments are dropped so one file has one spelling.
 */
function normalizePath(device: string, path: string): string {
  if (path === '') throw new LabelPlanError('bad-path', `${device}: the path is empty`);
  if (path.includes('\0')) throw new LabelPlanError('bad-path', `${device}: the path contains a NUL byte`);
  if (!path.startsWith('/')) throw new LabelPlanError('bad-path', `${device}: "${path}" is not an absolute path`);
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw new LabelPlanError('bad-path', `${device}: "${path}" contains ".."`);
  return `/${segments.join('/')}`;
}

function diskName(disk: DiskSpec, index: number): string {
  return `disk ${disk.target ?? `#${index}`}`;
}

type Draft = Omit<LabelAction, 'path'> & { readonly rawPath: string };

function diskAction(disk: DiskSpec, index: number, vm: VmLabels, profile: PolicyProfile): Draft {
  const device = diskName(disk, index);
  const base = { rawPath: disk.path, resource: 'disk' as const, device, class: disk.class };
  if (!isRelabeled(disk) && disk.label !== undefined) {
    throw new LabelPlanError('malformed-label', `${device}: a custom label with relabel=no contradicts itself`);
  }
  if (vm.imageLabel === null) return { ...base, label: null, remember: false, reason: vm.noRelabelReason ?? 'not relabeled' };
  if (!isRelabeled(disk)) return { ...base, label: null, remember: false, reason: "the disk's seclabel says relabel=no: left alone" };
  // Shared and read-only disks may be in use by other VMs at stop, so they are never restored (libvirt). An
  // installer ISO on a CD-ROM is the VM's boot medium like a kernel: its original label comes back at stop.
  const cdrom = disk.device === 'cdrom';
  const remember = disk.class === 'private' || cdrom;
  if (disk.label !== undefined) {
    const label = formatContext(parseLabel(`${device} label`, disk.label));
    return { ...base, label, remember, reason: "custom label from the disk's seclabel" };
  }
  switch (disk.class) {
    case 'private':
      return { ...base, label: vm.imageLabel, remember, reason: "private disk: the VM's image label, original restored at stop" };
    case 'shared':
      return { ...base, label: sharedContentLabel(profile, 'shared'), remember, reason: 'shareable disk: image type at the shared level, never restored' };
    case 'readonly':
      return cdrom
        ? { ...base, label: sharedContentLabel(profile, 'readonly'), remember, reason: 'CD-ROM: read-only content label, restored at stop' }
        : { ...base, label: sharedContentLabel(profile, 'readonly'), remember, reason: 'read-only disk: shared content label, never restored' };
  }
}

/**
 * The layers below a disk (libvirt labels backing stores as read-only content): qemu only reads them, so
 * several VMs' overlays can share one. Restored at stop, like kernel and initrd, so a base image a user
 * keeps in their home does not stay VM content after the last VM using it has stopped.
 */
function backingActions(disk: DiskSpec, index: number, vm: VmLabels, profile: PolicyProfile): Draft[] {
  const owner = diskName(disk, index);
  return (disk.backingStore ?? []).map((layer, k) => {
    const base = { rawPath: layer.path, resource: 'disk' as const, device: `${owner} backing ${k + 1}`, class: 'readonly' as const };
    if (vm.imageLabel === null) return { ...base, label: null, remember: false, reason: vm.noRelabelReason ?? 'not relabeled' };
    if (!isRelabeled(disk)) return { ...base, label: null, remember: false, reason: "the disk's seclabel says relabel=no: its backing files are left alone too" };
    return { ...base, label: sharedContentLabel(profile, 'readonly'), remember: true, reason: `backing file of ${owner}: read-only content label, restored at stop` };
  });
}

/** Kernel, initrd and dtb: read-only content, restored at stop as libvirt does. */
function contentAction(resource: 'kernel' | 'initrd' | 'dtb', path: string, vm: VmLabels, profile: PolicyProfile): Draft {
  const base = { rawPath: path, resource, device: resource, class: 'content' as const };
  if (vm.imageLabel === null) return { ...base, label: null, remember: false, reason: vm.noRelabelReason ?? 'not relabeled' };
  return { ...base, label: sharedContentLabel(profile, 'readonly'), remember: true, reason: `${resource}: read-only content label, restored at stop` };
}

/** The UEFI variable store is written by this VM alone: the VM's image label, restored at stop (libvirt labels nvram so). */
function nvramAction(path: string, vm: VmLabels): Draft {
  const base = { rawPath: path, resource: 'nvram' as const, device: 'nvram', class: 'private' as const };
  if (vm.imageLabel === null) return { ...base, label: null, remember: false, reason: vm.noRelabelReason ?? 'not relabeled' };
  return { ...base, label: vm.imageLabel, remember: true, reason: "UEFI variable store: the VM's image label, original restored at stop" };
}

function charActions(dev: CharDeviceSpec, index: number, vm: VmLabels, options: PlanOptions): Draft[] {
  const role = dev.role ?? 'serial';
  const device = `${role} ${index}`;
  if (!isRelabeled(dev) && dev.label !== undefined) {
    throw new LabelPlanError('malformed-label', `${device}: a custom label with relabel=no contradicts itself`);
  }
  // qemu opens a pipe's two ends when both exist, else the path itself.
  const exists = options.pathExists;
  const paths = dev.kind === 'pipe' && exists && exists(`${dev.path}.in`) && exists(`${dev.path}.out`)
    ? [`${dev.path}.in`, `${dev.path}.out`]
    : [dev.path];
  const base = { resource: role, device, class: 'char' as const };
  let label: string | null;
  let remember = false;
  let reason: string;
  if (vm.imageLabel === null) {
    label = null;
    reason = vm.noRelabelReason ?? 'not relabeled';
  } else if (!isRelabeled(dev)) {
    label = null;
    reason = "the device's seclabel says relabel=no: left alone";
  } else if (dev.label !== undefined) {
    label = formatContext(parseLabel(`${device} label`, dev.label));
    remember = true;
    reason = "custom label from the device's seclabel";
  } else {
    label = vm.imageLabel;
    remember = true;
    reason = `${dev.kind}-backed ${role}: the VM's image label, original restored at stop`;
  }
  return paths.map((rawPath) => ({ ...base, rawPath, label, remember, reason }));
}

function describeUse(a: LabelAction): string {
  const what = a.label === null ? 'left alone' : `labeled ${a.label}`;
  return `${a.device} (${a.class}, ${what}${a.remember ? ', restored at stop' : ''})`;
}

/**
 * One path, one label. The same file twice with the same handling is planned once; with different labels
 * or restore behaviour it is refused, as libvirt refuses "a different SELinux label on a file already in use".
 */
function mergeByPath(drafts: readonly Draft[]): LabelAction[] {
  const byPath = new Map<string, LabelAction>();
  const ordered: LabelAction[] = [];
  for (const { rawPath, ...rest } of drafts) {
    const action: LabelAction = { ...rest, path: normalizePath(rest.device, rawPath) };
    const earlier = byPath.get(action.path);
    if (!earlier) {
      byPath.set(action.path, action);
      ordered.push(action);
      continue;
    }
    if (earlier.label !== action.label || earlier.remember !== action.remember) {
      throw new LabelPlanError(
        'path-conflict',
        `${action.path} is already in use by ${describeUse(earlier)} and ${describeUse(action)} asks otherwise; ` +
          'mark every use <shareable/> or every use <readonly/>, or give each device its own file',
      );
    }
  }
  return ordered;
}

/**
 * The labels for starting `spec`: its process context and one action per file it opens, in the order
 * disks, kernel, initrd, dtb, nvram, character devices. `level` is the MCS level allocated for a dynamic VM that
 * is not already running (a running VM's live label supplies its pair).
 */
export function planStart(spec: VmSpec, profile: PolicyProfile, level?: Level, options: PlanOptions = {}): StartPlan {
  const vm = vmLabels(spec, profile, level);
  const drafts: Draft[] = spec.disks.flatMap((disk, i) => [diskAction(disk, i, vm, profile), ...backingActions(disk, i, vm, profile)]);
  for (const resource of ['kernel', 'initrd', 'dtb'] as const) {
    const path = spec[resource];
    if (path !== undefined) drafts.push(contentAction(resource, path, vm, profile));
  }
  if (spec.nvram !== undefined) drafts.push(nvramAction(spec.nvram, vm));
  spec.charDevices.forEach((dev, i) => drafts.push(...charActions(dev, i, vm, options)));
  return {
    vm: spec.name,
    seclabel: spec.seclabel.mode,
    process: vm.process,
    range: vm.range === null ? null : formatRange(vm.range),
    imageLabel: vm.imageLabel,
    actions: mergeByPath(drafts),
    notes: vm.notes,
  };
}

/**
 * What to undo when `spec` stops after `start`: every remembered label goes back (private disks, kernel,
 * initrd, dtb, character devices); shared and read-only disks stay as they are; a dynamic pair is released.
 */
export function planStop(spec: VmSpec, start: StartPlan): StopPlan {
  if (start.vm !== spec.name) {
    throw new LabelPlanError('plan-mismatch', `the start plan is for VM "${start.vm}", not "${spec.name}"`);
  }
  const restores = start.actions
    .filter((a) => a.remember && a.label !== null)
    .reverse()
    .map((a): RestoreAction => ({
      path: a.path,
      resource: a.resource,
      device: a.device,
      op: 'restore-remembered',
      reason: `${a.device}: label remembered at start`,
    }));
  return { vm: spec.name, restores, releaseRange: start.seclabel === 'dynamic' ? start.range : null };
}
