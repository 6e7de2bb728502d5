/**
 * The SELinux driver: sVirt as libvirt's security_selinux.c does it, split the house way. The pure model
 * (contexts, the MCS allocator, the label planner, the seclabel rules) lives in src/core/selinux; the
 * mechanism (selinuxfs, xattrs, /proc/PID/attr) in this folder; this file only answers the seam's verbs
 * with them. A VM's label here is its qemu context (`svirt_t` at a pair), its image label (`svirt_image_t`
 * at the same pair) and the pair itself.
 *
 * Probing says `inactive` rather than `absent` when the kernel runs without SELinux but a policy is
 * installed: files are still labelled as data (a host booted without SELinux keeps its VMs' images
 * labelled for the day it boots with it), and a start asks before it runs qemu unconfined.
 */
import { randomInt } from 'node:crypto';
import { processLabelProblem } from '../../core/confinement';
import { formatLevel, formatRange, parseContext, parseLevel } from '../../core/selinux/context';
import { describeSelinuxLabel } from '../../core/selinux/label-parts';
import { imageLabelFor, planStart, type StartPlan } from '../../core/selinux/label-planner';
import { McsAllocator, type InUseEntry } from '../../core/selinux/mcs-allocator';
import { sharedContentLabel, type CategoryRange, type PolicyProfile } from '../../core/selinux/policy-profile';
import { isReservableStaticLabel, seclabelProblems, type ForeignLevel, type VmTypeSets } from '../../core/selinux/seclabel-rules';
import { HelperError } from '../../contracts/helper-protocol';
import type {
  ConfinementDescription, FileHolds, LabelBook, LiveLabel, ProbeResult, ProcessConfinement, RecordedVm, SecuredVm,
  SecurityDriver, VmLabel,
} from '../security-driver';
import { readLabelOfOpened, writeLabel } from './file-labels';
import { liveProcessLevels, processLabel, selinuxMode, type SelinuxMode } from './host-selinux';

export interface SelinuxDriverOptions {
  readonly profile: PolicyProfile;
  /** The installed policy's VM domain and image types, for the seclabel rules (seinfo: slow, asked at the first start). */
  readonly vmTypes: () => Promise<VmTypeSets>;
  readonly categoryRange: CategoryRange;
  /** helper.json's allowSeclabelNone, and where it lives (for the refusal's words). */
  readonly allowSeclabelNone: boolean;
  readonly configPath: string;
  /** The kernel's mode now (default: selinuxfs). */
  readonly mode?: () => Promise<SelinuxMode>;
  /** Host processes' levels (default: /proc). */
  readonly live?: (mode: SelinuxMode) => Promise<InUseEntry[]>;
}

const range = (label: string | null): ReturnType<typeof parseContext>['range'] => (label ? parseContext(label).range : undefined);

export class SelinuxDriver implements SecurityDriver {
  readonly model = 'selinux' as const;
  readonly modelName = 'SELinux';

  constructor(private readonly options: SelinuxDriverOptions) {}

  private mode(): Promise<SelinuxMode> {
    return (this.options.mode ?? selinuxMode)();
  }

  async probe(): Promise<ProbeResult> {
    const mode = await this.mode();
    if (mode !== 'disabled') return { model: this.model, state: mode };
    return { model: this.model, state: this.options.profile.fallback ? 'absent' : 'inactive' };
  }

  /** seinfo takes seconds the first time: asked before the start takes the state lock. */
  async prepare(): Promise<void> {
    await this.options.vmTypes();
  }

  private allocator(state: unknown): McsAllocator {
    const random = (n: number) => randomInt(n);
    return state === null || state === undefined
      ? new McsAllocator({ range: this.options.categoryRange, random })
      : McsAllocator.fromJSON(state, { random });
  }

  /** Draws a dynamic VM's pair, or checks a static VM's label; both against every VM on record and the host's live processes. */
  async generate(vm: SecuredVm, book: LabelBook): Promise<VmLabel> {
    const mode = await this.mode();
    const [types, live] = await Promise.all([this.options.vmTypes(), (this.options.live ?? liveProcessLevels)(mode)]);
    const { categoryRange, allowSeclabelNone, configPath } = this.options;
    const problems = seclabelProblems(vm.definition, { types, categoryRange, allowSeclabelNone, configPath }, foreignLevels(book.others, live, vm.ownerUid));
    if (problems.length > 0) throw new HelperError('refused', `start of ${vm.name} refused: ${problems.join('; ')}`);
    const allocator = this.allocator(book.state);
    allocator.setExternalInUse(hostWideLevels(book.others, live, book.reserved, categoryRange));
    const dynamic = vm.definition.seclabel.mode === 'dynamic';
    const level = dynamic ? allocator.allocate(vm.id) : undefined;
    let plan: StartPlan;
    try {
      plan = planStart(vm.spec, this.options.profile, level);
    } catch (err) {
      throw new HelperError('bad-request', (err as Error).message);
    }
    // Saved only once the plan holds: a refused start leaves the pool as it was.
    book.state = allocator.toJSON();
    return { model: this.model, dynamic, process: plan.process.context, image: plan.imageLabel, distinct: level ? formatLevel(level) : plan.range };
  }

  release(vmId: string, label: VmLabel, book: LabelBook): void {
    if (!label.dynamic || book.state === null || book.state === undefined) return;
    const allocator = this.allocator(book.state);
    if (allocator.release(vmId)) book.state = allocator.toJSON();
  }

  async sweep(book: LabelBook, keep: ReadonlySet<string>): Promise<readonly string[]> {
    // Building the allocator walks every pair of the range: only when a hold has no VM, or there is no state yet.
    const owners = McsAllocator.savedOwners(book.state);
    if (owners !== undefined && owners.every((owner) => keep.has(owner))) return [];
    const pool = this.allocator(owners === undefined ? undefined : book.state);
    for (const hold of pool.toJSON().holds) {
      if (!keep.has(hold.owner)) pool.release(hold.owner);
    }
    book.state = pool.toJSON();
    return [];
  }

  async setAll(vm: SecuredVm, label: VmLabel, files: FileHolds): Promise<void> {
    const plan = planStart(vm.spec, this.options.profile, label.dynamic && label.distinct ? parseLevel(label.distinct) : undefined);
    for (const action of plan.actions) {
      if (action.label === null) continue;
      const kind = action.remember || action.class === 'private' ? 'private' : action.class === 'shared' ? 'shared' : 'readonly';
      await files.hold({ path: action.path, kind, label: action.label });
    }
  }

  /** Every file change went through the journal: nothing else to undo. */
  async restoreAll(): Promise<void> {}

  /**
   * qemu execs into its context (runcon), its sockets are made at that context, and its log, serial line
   * and display directory carry its image label (the image type at its pair): every fd it inherits is one
   * its domain may use.
   */
  confineProcess(_vm: SecuredVm, label: VmLabel): ProcessConfinement {
    if (label.process === null) return {};
    const pair = range(label.process);
    const runFileLabel = label.image ?? (pair ? imageLabelFor(this.options.profile, pair) : undefined);
    return { execPrefix: ['runcon', label.process], socketLabel: label.process, ...(runFileLabel ? { runFileLabel } : {}) };
  }

  async verifyProcess(pid: number, label: VmLabel): Promise<string | null> {
    return label.process === null ? null : processLabelProblem(label.process, await processLabel(pid));
  }

  async liveLabels(): Promise<LiveLabel[]> {
    const live = await (this.options.live ?? liveProcessLevels)(await this.mode());
    return live.filter((e) => e.kind === 'subject').map((e) => ({ label: typeof e.range === 'string' ? e.range : formatRange(e.range), holder: e.owner }));
  }

  async labelPrivateCopy(path: string, label: VmLabel, original: string | null): Promise<void> {
    const wanted = label.image ?? original;
    if (wanted !== null) await writeLabel(path, wanted);
  }

  fileLabel(path: string): Promise<string | null> {
    return readLabelOfOpened(path);
  }

  /** Shared content is at the bare sensitivity (s0), which every VM's pair dominates. */
  sharedLabel(kind: 'shared' | 'readonly'): string {
    return sharedContentLabel(this.options.profile, kind, this.options.categoryRange);
  }

  describe(label: VmLabel): ConfinementDescription {
    return { model: this.model, ...describeSelinuxLabel(label) };
  }

}

/** Levels in use on the host outside the allocator's holds: static VMs on record, reserved static labels, live processes. */
function hostWideLevels(others: readonly RecordedVm[], live: readonly InUseEntry[], reserved: readonly string[], categoryRange: CategoryRange): InUseEntry[] {
  const entries: InUseEntry[] = [];
  for (const vm of others) {
    const label = vm.label;
    if (!label || label.dynamic || !label.process) continue;
    const process = range(label.process);
    // A static label wider than one pair is refused at start; one recorded before that rule would block
    // every pair it dominates (all of them for c0.c1023), for every user, and is not reserved.
    if (process && isReservableStaticLabel(label.process, categoryRange)) entries.push({ range: process, kind: 'subject', owner: `static VM ${vm.id}` });
    const image = range(label.image);
    if (image) entries.push({ range: image, kind: 'object', owner: `images of static VM ${vm.id}` });
  }
  for (const label of reserved) {
    let reservedRange: ReturnType<typeof parseContext>['range'];
    try {
      reservedRange = parseContext(label).range;
    } catch (err) {
      // The requester's input, not a helper failure.
      throw new HelperError('bad-request', `reservedLevels: ${(err as Error).message}`);
    }
    // A label that breaks the static-label rules can never start, so there is nothing to reserve for it.
    if (reservedRange && isReservableStaticLabel(label, categoryRange)) entries.push({ range: reservedRange, kind: 'subject', owner: 'a defined static VM' });
  }
  // Our own VMs' qemu processes show up among the live ones too; their pairs are already on record.
  const ownRanges = recordedRanges(others);
  for (const entry of live) {
    const liveRange = typeof entry.range === 'string' ? entry.range : formatRange(entry.range);
    if (!ownRanges.has(liveRange)) entries.push(entry);
  }
  return entries;
}

function recordedRanges(others: readonly RecordedVm[]): Set<string> {
  return new Set(others.flatMap((vm) => {
    const process = range(vm.label?.process ?? null);
    return process ? [formatRange(process)] : [];
  }));
}

/** Levels another user's VM holds (process and images), and confined processes of other programs. */
function foreignLevels(others: readonly RecordedVm[], live: readonly InUseEntry[], ownerUid: number): ForeignLevel[] {
  const foreign: ForeignLevel[] = [];
  for (const vm of others) {
    if (vm.ownerUid === ownerUid) continue;
    const holder = `VM ${vm.name} of uid ${vm.ownerUid}`;
    const process = range(vm.label?.process ?? null);
    if (process) foreign.push({ range: process, kind: 'subject', holder });
    const image = range(vm.label?.image ?? null);
    if (image) foreign.push({ range: image, kind: 'object', holder: `the images of ${holder}` });
  }
  const ownRanges = recordedRanges(others);
  for (const entry of live) {
    const liveRange = typeof entry.range === 'string' ? parseContext(`u:r:t:${entry.range}`).range : entry.range;
    if (entry.kind === 'subject' && liveRange && !ownRanges.has(formatRange(liveRange))) foreign.push({ range: liveRange, kind: 'subject', holder: entry.owner });
  }
  return foreign;
}
