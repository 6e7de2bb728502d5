import { parseLevel } from '../labeling/context';
import { planStart, type LabelAction, type PlanClass, type PlanResource } from '../labeling/label-planner';
import type { PolicyProfile } from '../labeling/policy-profile';
import type { HelperClient } from './helper-client';
import type { RunInfo } from './helper/vm-lifecycle';
import { readLabels } from './labels/file-labels';
import { toVmSpec, type VmDefinition, type VmDefinitionInput } from './vm-definition';
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
  vcpus: number;
  memoryMiB: number;
  seclabel: VmDefinition['seclabel'];
  accel: RunInfo['accel'] | null;
}

export interface ResourceLabel {
  path: string;
  resource: PlanResource;
  device: string;
  class: PlanClass;
  /** The label the file should carry now; null when nothing is expected (stopped, or relabel off). */
  expectedLabel: string | null;
  /** The label a start gives it (a stopped dynamic VM's pair shows as `<pair>`); null: left alone. */
  plannedLabel: string | null;
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

export class VmService {
  constructor(
    readonly store: VmStore,
    private readonly helper: () => HelperClient,
    private readonly profile: () => Promise<PolicyProfile>,
  ) {}

  private async running(): Promise<Map<string, RunInfo>> {
    const list = await this.helper().request<RunInfo[]>('list');
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
        confined: run?.confined ?? false,
        notConfinedReason: run ? run.notConfinedReason : 'not running',
        vcpus: def.vcpus,
        memoryMiB: def.memoryMiB,
        seclabel: def.seclabel,
        accel: run?.accel ?? null,
      };
    });
    return { vms, problems };
  }

  define(input: VmDefinitionInput): Promise<VmDefinition> {
    return this.store.define(input);
  }

  async undefine(name: string): Promise<void> {
    if ((await this.running()).has(name)) throw new Error(`VM ${name} is running; stop it first`);
    await this.store.remove(name);
  }

  /** Static labels of the user's other VMs: reserved so no dynamic pair can reach them. */
  private async reservedLevels(except: string): Promise<string[]> {
    const { definitions } = await this.store.list();
    return definitions.flatMap((d) => (d.name !== except && d.seclabel.mode === 'static' ? [d.seclabel.label] : []));
  }

  async start(name: string, request: StartRequest = {}): Promise<RunInfo> {
    const definition = await this.store.get(name);
    return this.helper().request<RunInfo>('start', {
      definition,
      reservedLevels: await this.reservedLevels(name),
      ...(request.allowUnconfined ? { allowUnconfined: true } : {}),
    });
  }

  stop(name: string, options: { force?: boolean } = {}): Promise<{ forced: boolean; restoredFiles: number }> {
    return this.helper().request('stop', { vm: name, ...(options.force ? { force: true } : {}) });
  }

  /**
   * Every file the VM uses, with the label it should have and the label on disk. While the VM runs the
   * expectation is the start plan's label (the pair it was given); when stopped, shared and read-only
   * content keeps its label and private files carry whatever they had before (no expectation).
   */
  async labels(name: string): Promise<ResourceLabel[]> {
    const [definition, running, profile] = await Promise.all([this.store.get(name), this.running(), this.profile()]);
    const run = running.get(name);
    const spec = toVmSpec(definition, run?.accel ?? 'tcg');
    const level = run?.level ? parseLevel(run.level) : undefined;
    // A stopped dynamic VM has no pair yet: plan with a stand-in pair and show it as `<pair>`.
    const standIn = 's0:c0,c1';
    const plan = planStart(spec, profile, level ?? (definition.seclabel.mode === 'dynamic' ? parseLevel(standIn) : undefined));
    const planned = (label: string | null) => (label !== null && !level && label.endsWith(`:${standIn}`) ? `${label.slice(0, -standIn.length)}s0:<pair>` : label);
    const onDisk = await readLabels(plan.actions.map((a) => a.path));
    return plan.actions.map((action: LabelAction): ResourceLabel => {
      // While stopped nothing is expected: private files have their own label back, content may never have been labeled.
      const expected = run ? action.label : null;
      const actual = onDisk.get(action.path) ?? null;
      const reason = action.label === null ? 'relabel off: left as it is' : run ? action.reason : `VM stopped; at start: ${action.reason}`;
      return {
        path: action.path, resource: action.resource, device: action.device, class: action.class,
        expectedLabel: expected, plannedLabel: planned(action.label), actualLabel: actual,
        match: expected === null ? null : expected === actual, reason,
      };
    });
  }

  relabel(path: string, mode: 'shared' | 'readonly' | 'private' | 'restore', vm?: string): Promise<unknown> {
    return this.helper().request('relabel', { path, mode, ...(vm ? { vm } : {}) });
  }
}
