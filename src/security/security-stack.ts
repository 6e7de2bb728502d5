/**
 * The stack the lifecycle talks to: the host's MAC model (SELinux, AppArmor or none) over DAC, as
 * libvirt's security_stack.c nests its drivers. A VM's labels are one per stacked model, in stack order
 * (MAC first); each verb goes to every layer, and the lifecycle never learns which models run.
 *
 * - setAll collects every layer's file changes first and merges them per file (the MAC's label and DAC's
 *   owner), so the journal holds one entry per file and restores both in one step.
 * - Process confinement and the running-process check include the MAC's part only while the kernel runs
 *   the model (enforcing or permissive): a host booted without SELinux cannot `runcon`.
 * - A label is released by the driver of its own model, which need not be the active one: a record
 *   written before the host rebooted into another model is still cleaned up.
 */
import type {
  ConfinementDescription, FileHold, LabelBook, LiveLabel, ModelState, ProcessConfinement, RecordedVm, SecuredVm, SecurityDriver, SecurityModelId, VmLabel,
} from './security-driver';
import { confines } from './security-driver';

/** A VM on record with all its labels (one per stacked model). */
export interface StackedVm {
  readonly id: string;
  readonly name: string;
  readonly ownerUid: number;
  readonly labels: readonly VmLabel[];
}

/** The host-wide state the stack's verbs read and write, under the state lock. */
export interface StackBook {
  readonly others: readonly StackedVm[];
  readonly reserved: readonly string[];
  /** Each model's persisted state, by model; the stack writes back what its drivers leave. */
  readonly states: Partial<Record<SecurityModelId, unknown>>;
}

export class SecurityStack {
  /** The layers in stack order: the MAC driver, then DAC. */
  readonly layers: readonly SecurityDriver[];

  /** `known`: every driver this helper has, so labels of a model no longer active can still be released. */
  constructor(readonly mac: SecurityDriver, readonly dac: SecurityDriver, private readonly known: readonly SecurityDriver[] = []) {
    this.layers = [mac, dac];
  }

  get model(): SecurityModelId {
    return this.mac.model;
  }

  get modelName(): string {
    return this.mac.modelName;
  }

  /** The MAC model's state now (SELinux can be switched between enforcing and permissive at any time). */
  async state(): Promise<ModelState> {
    return (await this.mac.probe()).state;
  }

  private driverOf(model: SecurityModelId): SecurityDriver | undefined {
    return this.layers.find((d) => d.model === model) ?? this.known.find((d) => d.model === model);
  }

  private book(driver: SecurityDriver, book: StackBook): LabelBook {
    const others: RecordedVm[] = book.others.map((vm) => ({ id: vm.id, name: vm.name, ownerUid: vm.ownerUid, label: vm.labels.find((l) => l.model === driver.model) }));
    const states = book.states;
    return {
      others,
      reserved: book.reserved,
      get state() {
        return states[driver.model];
      },
      set state(value: unknown) {
        states[driver.model] = value;
      },
    };
  }

  async prepare(vm: SecuredVm): Promise<void> {
    await Promise.all(this.layers.map((driver) => driver.prepare(vm)));
  }

  /** Every layer's label for this start, in stack order; what one layer took is given back if a later one refuses. */
  async generate(vm: SecuredVm, book: StackBook): Promise<VmLabel[]> {
    const labels: VmLabel[] = [];
    try {
      for (const driver of this.layers) labels.push(await driver.generate(vm, this.book(driver, book)));
    } catch (err) {
      this.release(vm.id, labels, book);
      throw err;
    }
    return labels;
  }

  release(vmId: string, labels: readonly VmLabel[], book: StackBook): void {
    for (const label of labels) {
      const driver = this.driverOf(label.model);
      if (driver) driver.release(vmId, label, this.book(driver, book));
    }
  }

  /** Drops holds of VMs no record keeps, in every driver this helper has. */
  async sweep(book: StackBook, keep: ReadonlySet<string>): Promise<string[]> {
    const problems: string[] = [];
    for (const driver of new Set([...this.layers, ...this.known])) problems.push(...(await driver.sweep(this.book(driver, book), keep)));
    return problems;
  }

  /** Every layer's file changes, merged per file (first layer's label, any layer's owner), applied in order. */
  async setAll(vm: SecuredVm, labels: readonly VmLabel[], apply: (hold: FileHold) => Promise<void>): Promise<void> {
    const merged = new Map<string, FileHold>();
    for (const driver of this.layers) {
      const label = labels.find((l) => l.model === driver.model);
      if (!label) continue;
      await driver.setAll(vm, label, {
        hold: async (change) => {
          const before = merged.get(change.path);
          merged.set(change.path, before === undefined ? change : {
            path: change.path,
            kind: before.kind === 'private' || change.kind === 'private' ? 'private' : before.kind,
            ...(before.label ?? change.label ? { label: (before.label ?? change.label) as string } : {}),
            ...(before.owner ?? change.owner ? { owner: (before.owner ?? change.owner) as { uid: number; gid: number } } : {}),
          });
        },
      });
    }
    for (const hold of merged.values()) await apply(hold);
  }

  /** What each model holds outside files (a loaded profile), undone in reverse stack order. */
  async restoreAll(vmId: string, labels: readonly VmLabel[]): Promise<void> {
    for (const label of [...labels].reverse()) await this.driverOf(label.model)?.restoreAll(vmId, label);
  }

  /** How qemu is exec'd: the MAC's label while the kernel runs the model, DAC's uid always. */
  confineProcess(vm: SecuredVm, labels: readonly VmLabel[], state: ModelState): ProcessConfinement {
    let out: ProcessConfinement = {};
    for (const driver of this.layers) {
      const label = labels.find((l) => l.model === driver.model);
      if (!label || (driver === this.mac && !confines(state))) continue;
      out = { ...driver.confineProcess(vm, label), ...out };
    }
    return out;
  }

  /** The uid qemu is to run as (the DAC layer's), for the record. */
  processUid(vm: SecuredVm, labels: readonly VmLabel[]): number | undefined {
    const label = labels.find((l) => l.model === this.dac.model);
    return label ? this.dac.confineProcess(vm, label).uid : undefined;
  }

  /** Null when qemu carries every label it was given, else the first layer's problem. */
  async verifyProcess(pid: number, labels: readonly VmLabel[], state: ModelState): Promise<string | null> {
    for (const driver of this.layers) {
      const label = labels.find((l) => l.model === driver.model);
      if (!label || (driver === this.mac && !confines(state))) continue;
      const problem = await driver.verifyProcess(pid, label);
      if (problem) return problem;
    }
    return null;
  }

  /** Whether qemu is to run in a MAC label: the VM asks for one and the kernel runs the model. */
  runsInLabel(labels: readonly VmLabel[], state: ModelState): boolean {
    return confines(state) && this.macLabel(labels)?.process != null;
  }

  /** The refusal of a start that would run qemu outside a MAC label, in the requester's words. */
  notConfinedRefusal(state: ModelState): string {
    const anyway = 'start with allowUnconfined to run it anyway';
    const macNames = (drivers: readonly SecurityDriver[]) => drivers.filter((d) => d.model !== 'none' && d.model !== this.dac.model).map((d) => d.modelName);
    const others = macNames(this.known.filter((d) => d !== this.mac));
    const notEnabled = others.length === 0 ? '' : ` and ${others.join(' and ')} ${others.length === 1 ? 'is' : 'are'} not enabled`;
    return state === 'inactive'
      ? `not confined: ${this.mac.modelName} is disabled on this host${notEnabled}, so qemu would run unconfined; ${anyway} (its files are labeled either way)`
      : `not confined: this host runs no mandatory access control model (${macNames(this.known).join(', ') || 'SELinux, AppArmor'}), so only its own uid keeps qemu apart; ${anyway}`;
  }

  macLabel(labels: readonly VmLabel[]): VmLabel | undefined {
    return labels.find((l) => l.model === this.mac.model) ?? labels.find((l) => l.model !== this.dac.model);
  }

  /** The MAC model's description with the layers under it. */
  describe(labels: readonly VmLabel[]): ConfinementDescription {
    const mac = this.macLabel(labels);
    const macDriver = (mac && this.driverOf(mac.model)) ?? this.mac;
    const top = macDriver.describe(mac ?? { model: macDriver.model, dynamic: false, process: null, image: null, distinct: null });
    const layers = labels.flatMap((label) => {
      if (label === mac) return [];
      const driver = this.driverOf(label.model);
      if (!driver) return [];
      const d = driver.describe(label);
      return [{ model: d.model, modelName: d.modelName, summary: d.summary, parts: d.processParts }];
    });
    return { ...top, layers: [...top.layers, ...layers] };
  }

  liveLabels(): Promise<LiveLabel[]> {
    return this.mac.liveLabels();
  }

  labelPrivateCopy(path: string, labels: readonly VmLabel[], original: string | null): Promise<void> {
    const mac = this.macLabel(labels);
    return mac ? this.mac.labelPrivateCopy(path, mac, original) : Promise.resolve();
  }

  fileLabel(path: string): Promise<string | null> {
    return this.mac.fileLabel(path);
  }

  sharedLabel(kind: 'shared' | 'readonly'): string | null {
    return this.mac.sharedLabel(kind);
  }
}
