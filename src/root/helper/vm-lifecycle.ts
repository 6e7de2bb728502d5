import { randomInt, randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { copyFile, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { formatLevel, formatRange, parseContext, parseRange, type Level } from '../../core/selinux/context';
import { confinementOf, NOT_CONFINED_REASON, processLabelProblem } from '../../core/confinement';
import { imageLabelFor, planStart, type StartPlan } from '../../core/selinux/label-planner';
import { McsAllocator, type InUseEntry } from '../../core/selinux/mcs-allocator';
import type { PolicyProfile } from '../../core/selinux/policy-profile';
import { isReservableStaticLabel, seclabelProblems, type ForeignLevel, type VmTypeSets } from '../../core/selinux/seclabel-rules';
import { startConsoleKeeperProcess } from '../console/keeper-process';
import { liveProcessLevels, processLabel, type SelinuxMode } from '../../security/selinux/host-selinux';
import { readLabelOfOpened, writeLabel } from '../../security/selinux/file-labels';
import { clearDeadWalkers, labelFile, LabelConflictError, removeOrphanTreeLogs, restoreHolder, type RelabelContext, type RelabelTransact } from '../labels/relabeler';
import { claimDevice, deviceSize, deviceUseProblems, openBlockDevice, probeSignature, type OpenedDevice } from '../../host/block-devices';
import { isUnder, openRelabelTarget, PathRefusedError, type OpenedTarget, type Requester } from '../../host/path-policy';
import type { AccelChoice } from '../qemu/accel';
import { checkNvramSize, OVMF_CODE } from '../../host/firmware';
import { BackingChainError, readBackingChain, type BackingLayer } from '../../host/backing-chain';
import { diskNodeName, launchQemu, qemuRunPaths, readQemuPid, type DiskSpec as LaunchDisk } from '../qemu/launch';
import { QmpClient } from '../qemu/qmp';
import { processStartTime } from '../../host/state-lock';
import { allocateVmId } from '../state/vm-ids';
import type { HelperStateStore, RunRecord, StateTransaction } from '../state/helper-state';
import { parseVmDefinition, toVmSpec, type VmDefinition } from '../../core/vm-definition';
import { vmProfileName, type ProfileFile } from '../../core/apparmor/vm-profile';
import type { AppArmorVmConfinement } from '../../security/apparmor/vm-confinement';
import type { HelperConfig } from './helper-config';
import { HelperError, type RunInfo } from '../../contracts/helper-protocol';
import { faultPoint } from './fault-points';

/**
 * A VM's life as the root helper sees it: allocate a pair host-wide, label its files (journal first),
 * start qemu confined and detached with a console keeper, stop it (ACPI, then force), and reconcile
 * after any crash: VMs whose qemu died get their labels restored and their pair released, whoever
 * started them. Every state change happens under the host-wide state lock.
 */

export type { RunInfo };

export interface LifecycleDeps {
  readonly store: HelperStateStore;
  readonly config: HelperConfig;
  readonly profile: PolicyProfile;
  readonly requester: Requester;
  readonly selinux: () => Promise<SelinuxMode>;
  readonly accel: () => Promise<AccelChoice>;
  /** The installed policy's VM domain and image types, for the seclabel rules. */
  readonly vmTypes: () => Promise<VmTypeSets>;
  /** How to run this helper program again as a console keeper (node + script). */
  readonly keeperCommand: { command: string; argsPrefix: readonly string[] };
  /** Where SELinux is disabled and AppArmor enforces: each VM's qemu runs in a profile of its own. */
  readonly apparmor?: AppArmorVmConfinement;
}

export interface StartOptions {
  /** Run qemu even though it cannot be confined (SELinux disabled); labels are still applied. */
  allowUnconfined?: boolean;
  /** Static labels of the requester's defined-but-stopped VMs: reserved so no dynamic pair collides. */
  reservedLevels?: string[];
}

export interface ReconcileReport {
  cleanedUp: string[];
  restoredFiles: number;
}

export type VmControl = 'pause' | 'resume' | 'reboot';
const CONTROL_COMMAND: Record<VmControl, string> = { pause: 'stop', resume: 'cont', reboot: 'system_reset' };

/** The files a starting VM's qemu gets, opened and checked by the helper. */
interface VmFiles {
  readonly disks: { spec: LaunchDisk; opened: OpenedTarget }[];
  /** A block device disk's name in the definition → the node that is labeled and journaled. */
  readonly deviceNodes: ReadonlyMap<string, string>;
  /** The UEFI variable store (the user's file like a disk). */
  readonly nvram?: OpenedTarget;
  /** Every file qemu gets, by the path of what was opened, with how the VM uses it (its AppArmor profile's files). */
  readonly profileFiles: readonly ProfileFile[];
  /** Hands the private boot file copies to the VM's uid (and image label); their paths for the launcher. */
  bootCopiesFor(uid: number, label: string | null): Promise<{ kernel?: string; initrd?: string }>;
  close(): Promise<void>;
}

/** A kernel or initrd larger than this is refused (it is copied for each start). */
const MAX_BOOT_FILE_BYTES = 1024 * 1024 * 1024;

/**
 * A private copy of a checked boot file, for one VM: qemu reopens its kernel and initrd as /proc/self/fd/N,
 * which checks the file's permissions against the VM's uid. Handing over the user's file would need it
 * chowned or world-readable; a copy owned by the VM's uid alone (mode 0400, the VM's image label) needs
 * neither, cannot change under qemu, and no other VM can read it. It is unlinked at once: only the fd holds it.
 */
async function privateCopy(source: OpenedTarget, dir: string, field: string): Promise<{ handle: FileHandle; path: string }> {
  if (source.stat.size > MAX_BOOT_FILE_BYTES) throw new HelperError('refused', `${field}: ${source.path} is larger than ${MAX_BOOT_FILE_BYTES >> 20} MiB`);
  const copyPath = path.join(dir, `.boot-${randomUUID()}`);
  await copyFile(source.fdPath, copyPath, fsConstants.COPYFILE_EXCL);
  try {
    const copy = await open(copyPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    await copy.chmod(0o400);
    return { handle: copy, path: copyPath };
  } finally {
    await rm(copyPath, { force: true });
  }
}

const CONSOLE_SOCKET = 'console.sock';
const KEEPER_PID = 'console.pid';

export const vmId = (ownerUid: number, name: string): string => `${ownerUid}/${name}`;

/** A console keeper needs no caller's environment; without PKEXEC_UID it is allowed to run (helper-main). */
function keeperEnvironment(): NodeJS.ProcessEnv {
  const { PKEXEC_UID: _pkexecUid, ...rest } = process.env;
  return { PATH: rest.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...(rest.ELECTRON_RUN_AS_NODE ? { ELECTRON_RUN_AS_NODE: rest.ELECTRON_RUN_AS_NODE } : {}) };
}

/** A record as reported, with its confinement under the kernel's mode now. */
export function runInfo(record: RunRecord, mode: SelinuxMode): RunInfo {
  const seclabelMode = (record.definition as unknown as VmDefinition).seclabel.mode;
  // A VM in its own AppArmor profile (checked at its start) is confined whatever SELinux says.
  const confinement = record.apparmorProfile !== undefined && record.confined ? 'confined' : confinementOf({ mode, seclabelMode, inLabel: record.confined });
  return {
    id: record.id, name: record.name, ownerUid: record.ownerUid, state: record.phase, pid: record.pid,
    processLabel: record.processLabel, imageLabel: record.imageLabel, level: record.level,
    confinement, confined: confinement === 'confined', notConfinedReason: NOT_CONFINED_REASON[confinement],
    accel: record.accel, startedAt: record.startedAt, runDir: record.runDir, seclabelMode,
  };
}

/** Signals a process that may have exited since it was last seen alive (that race is not an error). */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** What a restore left alone (a file replaced, a device node udev made anew), for the administrator's log. */
function logSkipped(holder: string, skipped: readonly { path: string; reason: string }[]): void {
  for (const s of skipped) process.stderr.write(`svirt-helper: restore of ${holder}: ${s.path} not restored: ${s.reason}\n`);
}

const alive = (pid: number | null, startTime: string | null): boolean =>
  pid !== null && startTime !== null && processStartTime(pid) === startTime;

export class VmLifecycle {
  private readonly helperStartTime: string;

  constructor(private readonly deps: LifecycleDeps) {
    this.helperStartTime = processStartTime(process.pid) ?? 'unknown';
  }

  /** Where qemu creates a VM's VNC socket: outside the root-only run dir, in a directory of the qemu uid's. */
  displayDir(ownerUid: number, name: string): string {
    return path.join(this.deps.store.displayRoot, `${ownerUid}-${name}`);
  }

  /** The console keeper's viewer socket of a running VM. */
  consoleSocket(record: RunRecord): string {
    return path.join(record.runDir, CONSOLE_SOCKET);
  }

  private relabelContext(tx: StateTransaction, requester: Requester = this.deps.requester): RelabelContext {
    return {
      journal: tx.journal,
      persist: () => tx.persist(),
      config: this.deps.config.pathPolicy,
      requester,
      isRunning: (id) => tx.registry.vms[id] !== undefined,
      treeLogDir: this.deps.store.treeLogDir,
    };
  }

  private allocator(tx: StateTransaction): McsAllocator {
    const random = (n: number) => randomInt(n);
    return tx.registry.mcs === null || tx.registry.mcs === undefined
      ? new McsAllocator({ range: this.deps.config.categoryRange, random })
      : McsAllocator.fromJSON(tx.registry.mcs, { random });
  }

  /** Whether the record's VM still exists: qemu alive, or a start still in progress in a live helper. */
  private isLive(record: RunRecord): boolean {
    // A start whose helper died never finished: qemu may sit paused (-S) without a console keeper, and
    // the requester was told the start failed. It is undone, not kept half-started for ever.
    if (record.phase === 'starting' && !alive(record.helperPid, record.helperStartTime)) return false;
    if (record.pid !== null) return alive(record.pid, record.pidStartTime);
    return record.phase === 'starting';
  }

  /** Removes every trace of a VM whose qemu is gone (or is ended here): keeper, labels, pair, run dir, record. */
  private async cleanUp(tx: StateTransaction, record: RunRecord, allocator: McsAllocator): Promise<number> {
    // A helper killed between spawning qemu and recording its pid leaves qemu running unknown; one killed
    // later in a start leaves it recorded but unfinished: end it either way.
    const orphan = record.pid === null ? readQemuPid(record.runDir) : alive(record.pid, record.pidStartTime) ? record.pid : undefined;
    if (orphan !== undefined) {
      signal(orphan, 'SIGKILL');
      // Labels go back only once qemu no longer holds the images.
      await this.waitForExit({ pid: orphan, pidStartTime: processStartTime(orphan) ?? null }, 5_000);
    }
    if (record.keeperPid !== null && alive(record.keeperPid, record.keeperStartTime)) signal(record.keeperPid, 'SIGTERM');
    const restored = await restoreHolder(this.relabelContext(tx, { uid: 0 }), record.id);
    logSkipped(record.id, restored.skipped);
    // The profile goes with its VM; one that cannot be removed now is removed by the next reconcile's sweep.
    if (record.apparmorProfile !== undefined) {
      await this.deps.apparmor?.release(record.apparmorProfile).catch((err: Error) => {
        process.stderr.write(`svirt-helper: removing the AppArmor profile ${record.apparmorProfile}: ${err.message}\n`);
      });
    }
    allocator.release(record.id);
    delete tx.registry.vms[record.id];
    tx.registry.mcs = allocator.toJSON();
    await rm(record.runDir, { recursive: true, force: true });
    await rm(this.displayDir(record.ownerUid, record.name), { recursive: true, force: true });
    return restored.restored;
  }

  private async reconcileLocked(tx: StateTransaction): Promise<ReconcileReport> {
    // Every request reconciles, and building the allocator walks every pair of the range: it is built only
    // when a pair goes back.
    let built: McsAllocator | undefined;
    const allocator = () => (built ??= this.allocator(tx));
    const report: ReconcileReport = { cleanedUp: [], restoredFiles: 0 };
    // Every helper runs this before any change: one record or holder that cannot be cleaned up is
    // reported and left for the next round, never allowed to fail another user's request.
    const contained = async (what: string, work: () => Promise<void>) => {
      try {
        await work();
      } catch (err) {
        process.stderr.write(`svirt-helper: reconcile: ${what}: ${(err as Error).message}\n`);
      }
    };
    for (const record of Object.values(tx.registry.vms)) {
      if (this.isLive(record)) continue;
      await contained(`clean-up of ${record.id}`, async () => {
        report.restoredFiles += await this.cleanUp(tx, record, allocator());
        report.cleanedUp.push(record.id);
      });
    }
    // Private holds whose VM has no record (a crash between journaling and recording): put them back.
    const orphanHolders = new Set(
      Object.values(tx.journal.entries).filter((e) => e.kind === 'private' && !tx.registry.vms[e.holder]).map((e) => e.holder),
    );
    for (const holder of orphanHolders) {
      await contained(`restore of ${holder}`, async () => {
        const restored = await restoreHolder(this.relabelContext(tx, { uid: 0 }), holder);
        logSkipped(holder, restored.skipped);
        report.restoredFiles += restored.restored;
      });
    }
    await contained('orphan tree logs', async () => { await removeOrphanTreeLogs(this.relabelContext(tx, { uid: 0 })); });
    // A VM profile never outlives its VM: one left by a crash (of qemu, a helper or the host) goes now.
    const apparmor = this.deps.apparmor;
    if (apparmor !== undefined) {
      await contained('AppArmor profiles', async () => {
        if (!(await apparmor.active())) return;
        const keep = new Set(Object.values(tx.registry.vms).flatMap((r) => (r.apparmorProfile === undefined ? [] : [r.apparmorProfile])));
        const swept = await apparmor.sweep(keep);
        for (const f of swept.failed) process.stderr.write(`svirt-helper: reconcile: AppArmor profile ${f.name}: ${f.error}\n`);
      });
    }
    clearDeadWalkers(this.relabelContext(tx, { uid: 0 }));
    // Pairs held by owners that no longer run (e.g. a crash after allocation) go back to the pool.
    const owners = McsAllocator.savedOwners(tx.registry.mcs);
    if (built !== undefined || owners === undefined || owners.some((owner) => !tx.registry.vms[owner])) {
      const pool = allocator();
      for (const hold of pool.toJSON().holds) {
        if (!tx.registry.vms[hold.owner]) pool.release(hold.owner);
      }
      tx.registry.mcs = pool.toJSON();
    }
    return report;
  }

  /** Runs a relabel request under the state lock, with the journal and the running VMs it must respect. */
  withRelabelContext<T>(fn: (ctx: RelabelContext) => Promise<T>): Promise<T> {
    return this.deps.store.transaction(async (tx) => {
      await this.reconcileLocked(tx);
      return fn(this.relabelContext(tx));
    });
  }

  /**
   * For tree relabels and restores: each call is one short transaction (reconcile first), so a walk
   * records its intent and result under the lock and runs in between without it.
   */
  relabelTransact(): RelabelTransact {
    return (fn) => this.withRelabelContext(fn);
  }

  /** Cleans up after VMs that ended (or helpers that died mid-start). Safe to call any time. */
  reconcile(): Promise<ReconcileReport> {
    return this.deps.store.transaction((tx) => this.reconcileLocked(tx));
  }

  /** Cheap check (registry only, no lock) for the periodic timer and for reads: has a recorded VM ended? */
  async anyEnded(): Promise<boolean> {
    const registry = await this.deps.store.readRegistry();
    return Object.values(registry.vms).some((record) => !this.isLive(record));
  }

  /** The requester's running VMs (root sees every user's). */
  async list(): Promise<RunInfo[]> {
    if (await this.anyEnded()) await this.reconcile();
    const [registry, mode] = await Promise.all([this.deps.store.readRegistry(), this.deps.selinux()]);
    const { uid } = this.deps.requester;
    return Object.values(registry.vms)
      .filter((record) => uid === 0 || record.ownerUid === uid)
      .map((record) => runInfo(record, mode))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** A running VM the requester may act on (their own; root may act on any). */
  async find(id: string): Promise<RunRecord> {
    const registry = await this.deps.store.readRegistry();
    const record = registry.vms[id];
    if (!record) throw new HelperError('not-found', `VM ${id} is not running`);
    if (this.deps.requester.uid !== 0 && record.ownerUid !== this.deps.requester.uid) {
      throw new HelperError('refused', `VM ${id} belongs to uid ${record.ownerUid}`);
    }
    return record;
  }

  /** Levels in use on the host outside our registry: live processes and static labels. */
  private hostWideLevels(tx: StateTransaction, live: readonly InUseEntry[], reserved: readonly string[], selfId: string): InUseEntry[] {
    const entries: InUseEntry[] = [];
    const { categoryRange } = this.deps.config;
    for (const record of Object.values(tx.registry.vms)) {
      if (record.id === selfId || record.level !== null || !record.processLabel) continue;
      const range = parseContext(record.processLabel).range;
      // A static label wider than one pair is refused at start; one recorded before that rule would
      // block every pair it dominates (all of them for c0.c1023), for every user, and is not reserved.
      if (range && isReservableStaticLabel(record.processLabel, categoryRange)) entries.push({ range, kind: 'subject', owner: `static VM ${record.id}` });
      const image = record.imageLabel ? parseContext(record.imageLabel).range : undefined;
      if (image) entries.push({ range: image, kind: 'object', owner: `images of static VM ${record.id}` });
    }
    for (const label of reserved) {
      let range: ReturnType<typeof parseContext>['range'];
      try {
        range = parseContext(label).range;
      } catch (err) {
        // The requester's input, not a helper failure.
        throw new HelperError('bad-request', `reservedLevels: ${(err as Error).message}`);
      }
      // A label that breaks the static-label rules can never start, so there is nothing to reserve for it.
      if (range && isReservableStaticLabel(label, categoryRange)) entries.push({ range, kind: 'subject', owner: 'a defined static VM' });
    }
    // Our own VMs' qemu processes show up among the live ones too; their pairs are already in the registry.
    const ownRanges = new Set(Object.values(tx.registry.vms).flatMap((r) => {
      const range = r.processLabel ? parseContext(r.processLabel).range : undefined;
      return range ? [formatRange(range)] : [];
    }));
    for (const entry of live) {
      const range = typeof entry.range === 'string' ? entry.range : formatRange(entry.range);
      if (!ownRanges.has(range)) entries.push(entry);
    }
    return entries;
  }

  /**
   * What qemu gets on an SELinux host: its exec context, its sockets created at that same context, and its
   * log at the VM's image label (the image type at the process's pair), so that every fd it inherits is one
   * its domain may use.
   */
  private selinuxLaunchLabels(plan: StartPlan, processContext: string): { execContext: string; socketContext: string; logLabel?: string } {
    const range = plan.range === null ? undefined : parseRange(plan.range);
    const logLabel = plan.imageLabel ?? (range ? imageLabelFor(this.deps.profile, range) : undefined);
    return { execContext: processContext, socketContext: processContext, ...(logLabel ? { logLabel } : {}) };
  }

  /** Levels another user's VM holds (process and images), and confined processes of other programs. */
  private foreignLevels(tx: StateTransaction, live: readonly InUseEntry[], ownerUid: number): ForeignLevel[] {
    const foreign: ForeignLevel[] = [];
    const registryRanges = new Set<string>();
    for (const record of Object.values(tx.registry.vms)) {
      const process = record.processLabel ? parseContext(record.processLabel).range : undefined;
      if (process) registryRanges.add(formatRange(process));
      if (record.ownerUid === ownerUid) continue;
      const holder = `VM ${record.name} of uid ${record.ownerUid}`;
      if (process) foreign.push({ range: process, kind: 'subject', holder });
      const image = record.imageLabel ? parseContext(record.imageLabel).range : undefined;
      if (image) foreign.push({ range: image, kind: 'object', holder: `the images of ${holder}` });
    }
    for (const entry of live) {
      const range = typeof entry.range === 'string' ? parseContext(`u:r:t:${entry.range}`).range : entry.range;
      if (entry.kind === 'subject' && range && !registryRanges.has(formatRange(range))) foreign.push({ range, kind: 'subject', holder: entry.owner });
    }
    return foreign;
  }

  /**
   * Opens every file the VM's qemu gets, as the launcher will hand it over: each must pass the relabel path
   * rules (location, owner, no symlink) also when it is not relabeled (seclabel none, relabel=no), must be a
   * regular file, and qemu gets exactly the checked inode (the launcher opens /proc/<pid>/fd of our handle).
   * Opens are non-blocking, so a FIFO or a device cannot stall the helper.
   */
  private async openVmFiles(definition: VmDefinition, chains: readonly (BackingLayer[] | undefined)[]): Promise<VmFiles> {
    const { boot } = definition;
    // Boot order: the CD-ROM first, then the first disk (which boots alone once the ISO is detached).
    const diskBoot = boot.kind === 'iso' ? 2 : boot.kind === 'disk' ? 1 : undefined;
    const wanted: { field: string; spec: LaunchDisk }[] = [
      ...definition.disks.map((d, i) => ({
        field: `disks[${i}].path`,
        spec: {
          path: d.path, format: d.format, readonly: d.class === 'readonly', shared: d.class === 'shared',
          ...(i === 0 && diskBoot !== undefined ? { bootIndex: diskBoot } : {}),
          ...(chains[i] === undefined ? {} : { backing: chains[i] }),
        },
      })),
      ...(boot.kind === 'iso' ? [{ field: 'boot.iso', spec: { path: boot.iso, format: 'raw' as const, readonly: true, cdrom: true, bootIndex: 1 } }] : []),
    ];
    const nvramPath = definition.firmware?.kind === 'uefi' ? definition.firmware.nvram : undefined;
    let nvram: OpenedTarget | undefined;
    const disks: VmFiles['disks'] = [];
    const layers: OpenedTarget[] = [];
    const copies: { kernel?: FileHandle; initrd?: FileHandle } = {};
    const copyPaths: string[] = [];
    const sourceLabels: { kernel?: string | null; initrd?: string | null } = {};
    const claims: FileHandle[] = [];
    const deviceNodes = new Map<string, string>();
    const handles = (): FileHandle[] => [...[...disks.map((d) => d.opened), ...layers, ...(nvram ? [nvram] : [])].map((o) => o.handle), ...Object.values(copies), ...claims];
    let closed: Promise<void> | undefined;
    const close = () => (closed ??= Promise.all(handles().map((h) => h.close())).then(() => undefined));
    const openChecked = (field: string, p: string) =>
      openRelabelTarget(p, { config: this.deps.config.pathPolicy, requester: this.deps.requester, regularFileOnly: true }).catch((err: unknown) => {
        throw err instanceof PathRefusedError ? new HelperError('refused', `${field}: ${err.message}`) : err;
      });
    const openDevice = async (field: string, spec: LaunchDisk): Promise<void> => {
      const opened = await this.openDiskDevice(field, spec);
      disks.push({ spec, opened });
      deviceNodes.set(spec.path, opened.path);
      const claim = await this.claimDiskDevice(field, opened, !spec.readonly && !spec.shared);
      if (claim) {
        claims.push(claim);
        disks[disks.length - 1] = { spec: { ...spec, blockDevice: true, heldRwFd: claim.fd }, opened };
      } else {
        disks[disks.length - 1] = { spec: { ...spec, blockDevice: true }, opened };
      }
    };
    try {
      for (const { field, spec } of wanted) {
        if (!spec.cdrom && isUnder(spec.path, '/dev')) {
          await openDevice(field, spec);
          continue;
        }
        const opened = await openChecked(field, spec.path);
        disks.push({ spec, opened });
        if (spec.backing === undefined) continue;
        const backing = [];
        for (const l of spec.backing) {
          const layer = await openChecked(`backing file of ${field}`, l.path);
          layers.push(layer);
          backing.push({ ...l, path: layer.fdPath });
        }
        disks[disks.length - 1] = { spec: { ...spec, backing }, opened };
      }
      if (nvramPath !== undefined) {
        nvram = await openChecked('firmware.nvram', nvramPath);
        await checkNvramSize(nvram.stat.size).catch((err: unknown) => {
          throw new HelperError('bad-request', (err as Error).message);
        });
      }
      if (boot.kind === 'kernel') {
        for (const [what, p] of [['kernel', boot.kernel], ['initrd', boot.initrd]] as const) {
          if (p === undefined) continue;
          const source = await openChecked(`boot.${what}`, p);
          try {
            sourceLabels[what] = await readLabelOfOpened(source.fdPath);
            const copy = await privateCopy(source, this.deps.store.runRoot, `boot.${what}`);
            copies[what] = copy.handle;
            copyPaths.push(copy.path);
          } finally {
            await source.handle.close();
          }
        }
      }
    } catch (err) {
      await close();
      throw err;
    }
    const bootCopiesFor = async (uid: number, label: string | null) => {
      const out: { kernel?: string; initrd?: string } = {};
      for (const [what, copy] of Object.entries(copies) as ['kernel' | 'initrd', FileHandle][]) {
        await copy.chown(uid, uid);
        const fdPath = `/proc/${process.pid}/fd/${copy.fd}`;
        // Without an image label of its own (static without relabel, none), the copy reads as the original did.
        const wanted = label ?? sourceLabels[what] ?? null;
        if (wanted !== null) await writeLabel(fdPath, wanted);
        out[what] = fdPath;
      }
      return out;
    };
    // What an AppArmor profile names: what was opened (a block device's node, not a link to it). The boot
    // copies are unlinked, and named by the path they had.
    const profileFiles: ProfileFile[] = [
      ...disks.map(({ spec, opened }) => ({ path: opened.path, use: spec.readonly ? 'readonly' as const : spec.shared ? 'shared' as const : 'private' as const })),
      ...layers.map((l) => ({ path: l.path, use: 'readonly' as const })),
      ...(nvram ? [{ path: nvram.path, use: 'private' as const }, { path: OVMF_CODE, use: 'boot' as const }] : []),
      ...copyPaths.map((p) => ({ path: p, use: 'boot' as const })),
    ];
    return { disks, deviceNodes, ...(nvram ? { nvram } : {}), profileFiles, bootCopiesFor, close };
  }

  /**
   * What `start` would say about a block device as a disk of class `cls`, without changing anything: for the
   * CLI's `--disk /dev/…` and the app's picker, with the start's own refusals.
   */
  async checkDevice(devicePath: string, cls: 'private' | 'shared' | 'readonly', field: string): Promise<{ path: string; node: string; majMin: string; sizeBytes: number; content: string | null }> {
    const spec: LaunchDisk = { path: devicePath, format: 'raw', readonly: cls === 'readonly', shared: cls === 'shared' };
    const opened = await this.openDiskDevice(field, spec);
    try {
      // A probe only (read-only, closed at once) whatever the class: the VM's start claims it for real.
      await this.claimDiskDevice(field, opened, false);
      const signature = await probeSignature(opened.fdPath);
      return { path: devicePath, node: opened.path, majMin: opened.majMin, sizeBytes: await deviceSize(opened.majMin), content: signature.TYPE ?? null };
    } finally {
      await opened.handle.close();
    }
  }

  /** A block device disk, opened and checked on its fd: allowed for the requester, raw, and unused by the host. */
  private async openDiskDevice(field: string, spec: LaunchDisk): Promise<OpenedDevice> {
    const refuse = (err: unknown) => (err instanceof PathRefusedError ? new HelperError('refused', `${field}: ${err.message}`) : err);
    if (spec.format === 'qcow2') throw new HelperError('refused', `${field}: ${spec.path} is a block device: it is given to a VM as a raw disk (format raw)`);
    const opened = await openBlockDevice(spec.path, { config: this.deps.config.pathPolicy, requester: this.deps.requester }).catch((err: unknown) => {
      throw refuse(err);
    });
    try {
      const problems = await deviceUseProblems(opened);
      if (problems.length > 0) throw new HelperError('refused', `${field}: refusing ${JSON.stringify(spec.path)} (${opened.path}, ${opened.majMin}): ${problems.join('; ')}; nothing was changed`);
      return opened;
    } catch (err) {
      await opened.handle.close();
      throw refuse(err);
    }
  }

  /**
   * The exclusive claim on a device (see claimDevice): kept and handed to qemu for a private disk, a probe
   * for a shared or read-only one. Refused while anything else holds the device: another VM's private
   * claim is named from the journal.
   */
  private async claimDiskDevice(field: string, opened: OpenedDevice, writable: boolean): Promise<FileHandle | undefined> {
    let claim: FileHandle;
    try {
      claim = await claimDevice(opened, writable);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err instanceof PathRefusedError ? new HelperError('refused', `${field}: ${err.message}`) : err;
      const { registry, journal } = await this.deps.store.read();
      const entry = journal.entries[opened.path];
      const holder = entry && entry.kind === 'private' && registry.vms[entry.holder] ? ` by VM ${entry.holder}, privately` : ' by the kernel or another program (a mount, swap, device-mapper, another VM)';
      throw new HelperError('refused', `${field}: refusing ${JSON.stringify(opened.path)} (${opened.majMin}): it is in use${holder}; nothing was changed`);
    }
    if (writable) return claim;
    await claim.close();
    return undefined;
  }

  async start(definitionInput: unknown, options: StartOptions = {}): Promise<RunInfo> {
    let definition: VmDefinition;
    try {
      definition = parseVmDefinition(definitionInput, 'start request');
    } catch (err) {
      // An invalid definition is a bad request (the fuzzer saw it answered as an internal failure).
      throw new HelperError('bad-request', (err as Error).message);
    }
    const ownerUid = this.deps.requester.uid;
    const id = vmId(ownerUid, definition.name);
    const [mode, accel, types] = await Promise.all([this.deps.selinux(), this.deps.accel(), this.deps.vmTypes()]);
    const chains = await this.backingChains(definition);
    const spec = toVmSpec(definition, accel.accel, chains);
    const runDir = path.join(this.deps.store.runRoot, `${ownerUid}-${definition.name}`);
    // Checked and opened before the host-wide lock is taken: nothing that could wait runs under it.
    const files = await this.openVmFiles(definition, chains);

    return this.deps.store.transaction(async (tx) => {
      await this.reconcileLocked(tx);
      if (tx.registry.vms[id]) throw new HelperError('conflict', `VM ${definition.name} is already running`);
      const live = await liveProcessLevels(mode);
      const { categoryRange, allowSeclabelNone, configPath } = this.deps.config;
      const problems = seclabelProblems(definition, { types, categoryRange, allowSeclabelNone, configPath }, this.foreignLevels(tx, live, ownerUid));
      if (problems.length > 0) throw new HelperError('refused', `start of ${definition.name} refused: ${problems.join('; ')}`);
      const allocator = this.allocator(tx);
      allocator.setExternalInUse(this.hostWideLevels(tx, live, options.reservedLevels ?? [], id));

      let level: Level | undefined;
      if (definition.seclabel.mode === 'dynamic') level = allocator.allocate(id);
      let plan: StartPlan;
      try {
        plan = planStart(spec, this.deps.profile, level);
      } catch (err) {
        allocator.release(id);
        throw new HelperError('bad-request', (err as Error).message);
      }
      // SELinux first; where it is disabled, AppArmor confines the VM with a profile of its own.
      const apparmor = mode === 'disabled' && plan.process.confined && (await this.deps.apparmor?.active()) ? this.deps.apparmor : undefined;
      const confinable = mode !== 'disabled' || apparmor !== undefined;
      if (plan.process.confined && !confinable && !options.allowUnconfined) {
        allocator.release(id);
        throw new HelperError('refused', `not confined: SELinux is disabled on this host and AppArmor is not enabled, so qemu would run unconfined; start with allowUnconfined to run it anyway (its files are labeled either way)`);
      }
      const range = this.deps.config.vmIdRange;
      const qemuUid = await allocateVmId(range, Object.values(tx.registry.vms).flatMap((r) => (r.qemuUid === undefined ? [] : [r.qemuUid])));
      if (qemuUid === undefined) {
        allocator.release(id);
        throw new HelperError('refused', `no free VM uid left in vmIdRange ${range.first}-${range.last}: every one runs a VM`);
      }
      const record: RunRecord = {
        id, name: definition.name, ownerUid, phase: 'starting',
        helperPid: process.pid, helperStartTime: this.helperStartTime,
        pid: null, pidStartTime: null, keeperPid: null, keeperStartTime: null, runDir,
        level: level ? formatLevel(level) : null,
        processLabel: plan.process.context, imageLabel: plan.imageLabel,
        // Whether qemu is to run in its label; checked against the kernel once it runs.
        confined: plan.process.confined && confinable,
        notConfinedReason: !plan.process.confined ? NOT_CONFINED_REASON['unconfined-none'] : confinable ? null : NOT_CONFINED_REASON['unconfined-disabled'],
        accel: accel.accel, qemuUid, definition: definition as unknown as Record<string, unknown>, startedAt: new Date().toISOString(),
        ...(apparmor ? { apparmorProfile: vmProfileName(ownerUid, definition.name) } : {}),
      };
      tx.registry.vms[id] = record;
      tx.registry.mcs = allocator.toJSON();
      await tx.persist();
      faultPoint('after-allocation');

      let keeperStarting: Promise<{ pid: number }> | undefined;
      const abandonKeeper = new AbortController();
      try {
        const ctx = this.relabelContext(tx);
        for (const action of plan.actions) {
          if (action.label === null) continue;
          const kind = action.remember || action.class === 'private' ? 'private' : action.class === 'shared' ? 'shared' : 'readonly';
          // A private disk, and the UEFI variable store qemu writes, belong to the VM's uid while it runs
          // (journaled, given back at stop): qemu gets fds either way, but no other VM's uid (nor the user's,
          // meanwhile) may open them by name. Shared and read-only files keep their owners: several VMs use
          // them, through the fds the helper opened.
          const own = (action.resource === 'disk' || action.resource === 'nvram') && action.class === 'private' ? { uid: qemuUid, gid: qemuUid } : undefined;
          await labelFile(ctx, id, kind, files.deviceNodes.get(action.path) ?? action.path, action.label, own);
          faultPoint('mid-relabel');
        }
        const boot = definition.boot;
        let launched;
        try {
          // The keeper (a Node process, the slowest part of a start) starts now, alongside qemu: it waits for
          // qemu's serial line to appear and be opened, and qemu stays paused until the keeper is ready. Not
          // before the labels and disks passed: a refused start would wait out the keeper's 10 s connect
          // timeout, and a helper dying mid-relabel would leave a keeper nobody recorded.
          await mkdir(runDir, { recursive: true, mode: 0o700 });
          // The profile is compiled and loaded before the keeper starts: the keeper waits only a few seconds
          // for qemu's serial line.
          const confinement = apparmor
            ? await apparmor.prepare({ ownerUid, name: definition.name, files: files.profileFiles, dirs: [runDir, this.displayDir(ownerUid, definition.name)] })
            : undefined;
          keeperStarting = startConsoleKeeperProcess({
            command: this.deps.keeperCommand.command,
            argsPrefix: this.deps.keeperCommand.argsPrefix,
            serialPath: qemuRunPaths(runDir).serialLine,
            viewerSocketPath: path.join(runDir, CONSOLE_SOCKET),
            pidFile: path.join(runDir, KEEPER_PID),
            logFile: path.join(runDir, 'console.log'),
            env: keeperEnvironment(),
            signal: abandonKeeper.signal,
          });
          keeperStarting.catch(() => undefined);
          launched = await launchQemu({
            name: definition.name,
            runDir,
            memoryMiB: definition.memoryMiB,
            cpus: definition.vcpus,
            ...(boot.kind === 'kernel' && boot.cmdline ? { append: boot.cmdline } : {}),
            disks: files.disks.map((d) => ({ ...d.spec, path: d.opened.fdPath })),
            ...(files.nvram ? { firmware: { code: OVMF_CODE, vars: files.nvram.fdPath } } : {}),
            ...(definition.network?.mode === 'user' ? { network: { portForwards: (definition.network.portForwards ?? []).map((f) => ({ ...f })) } } : {}),
            ...(definition.display === 'vnc' ? { displayDir: this.displayDir(ownerUid, definition.name) } : {}),
            accelArgs: accel.args,
            uid: qemuUid,
            gid: qemuUid,
            ...(await files.bootCopiesFor(qemuUid, plan.imageLabel)),
            // Paused until the console keeper holds the serial port, so not one byte of boot output is lost.
            paused: true,
            ...(mode !== 'disabled' && plan.process.context ? this.selinuxLaunchLabels(plan, plan.process.context) : {}),
            ...(confinement ? { confineExec: confinement.execPrefix } : {}),
          });
        } finally {
          // qemu holds its own copies now.
          await files.close();
        }
        record.pid = launched.pid;
        record.pidStartTime = processStartTime(launched.pid) ?? null;
        await tx.persist();
        faultPoint('after-exec');
        if (record.confined && apparmor && record.apparmorProfile !== undefined) {
          // Likewise under AppArmor: qemu runs in its own profile, or it is not left running.
          const problem = await apparmor.problem(launched.pid, record.apparmorProfile);
          if (problem) throw new Error(`${problem}; it was stopped and its profile removed`);
        } else if (record.confined && plan.process.context) {
          // qemu has exec'd (it answered QMP): the kernel says which domain it runs in. Anything but its own
          // label is not left running; the catch below kills it, restores the labels and frees the pair.
          const problem = processLabelProblem(plan.process.context, await processLabel(launched.pid));
          if (problem) throw new Error(`${problem}; it was stopped, its labels restored and its pair freed`);
        }
        const keeper = await keeperStarting;
        record.keeperPid = keeper.pid;
        record.keeperStartTime = processStartTime(keeper.pid) ?? null;
        await tx.persist();
        faultPoint('after-keeper');
        const qmp = await QmpClient.connect(launched.qmpSocketPath, { timeoutMs: 10_000 });
        try {
          await qmp.execute('cont');
        } finally {
          await qmp.close();
        }
        record.phase = 'running';
        return runInfo(record, mode);
      } catch (err) {
        if (record.pid !== null && alive(record.pid, record.pidStartTime)) signal(record.pid, 'SIGKILL');
        record.pid = null;
        // A keeper started for this VM but not yet recorded goes too, at once rather than after its
        // connect timeout.
        abandonKeeper.abort();
        const keeper = await keeperStarting?.catch(() => undefined);
        if (keeper && record.keeperPid === null) signal(keeper.pid, 'SIGTERM');
        await this.cleanUp(tx, record, allocator);
        // Refusals and conflicts keep their own codes (the verb maps them), not "failed".
        if (err instanceof HelperError || err instanceof PathRefusedError || err instanceof LabelConflictError) throw err;
        throw new HelperError('failed', `start of ${definition.name} failed: ${(err as Error).message}`);
      }
    }).finally(() => files.close());
  }

  /**
   * Each qcow2 disk's backing chain, read from the images as root, layer by layer: a layer is opened
   * under the same path rules as a disk before its header is read, so a header naming another user's
   * file or a system file is refused here, before anything is labeled.
   */
  private async backingChains(definition: VmDefinition): Promise<(BackingLayer[] | undefined)[]> {
    const open = async (p: string) => {
      const opened = await openRelabelTarget(p, { config: this.deps.config.pathPolicy, requester: this.deps.requester, regularFileOnly: true });
      return { fdPath: opened.fdPath, dev: opened.stat.dev, ino: opened.stat.ino, close: () => opened.handle.close() };
    };
    try {
      // A block device is a raw disk (openVmFiles refuses a qcow2 one): no chain is read from it.
      return await Promise.all(definition.disks.map((d) => (d.format === 'qcow2' && !isUnder(d.path, '/dev') ? readBackingChain(d.path, open) : undefined)));
    } catch (err) {
      if (err instanceof PathRefusedError) throw new HelperError('refused', `backing chain of ${definition.name}: ${err.message}`);
      if (err instanceof BackingChainError) throw new HelperError('bad-request', err.message);
      throw err;
    }
  }

  private async waitForExit(record: Pick<RunRecord, 'pid' | 'pidStartTime'>, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!alive(record.pid, record.pidStartTime)) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return !alive(record.pid, record.pidStartTime);
  }

  private async qmp(record: RunRecord, command: 'system_powerdown' | 'quit'): Promise<void> {
    await this.withQmp(record, (qmp) => qmp.execute(command));
  }

  private async withQmp<T>(record: RunRecord, work: (qmp: QmpClient) => Promise<T>): Promise<T> {
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(path.join(record.runDir, 'qmp.sock'), { timeoutMs: 5_000 });
    } catch (err) {
      throw new HelperError('failed', `cannot reach ${record.id}'s monitor: ${(err as Error).message}`);
    }
    try {
      return await work(qmp);
    } finally {
      await qmp.close();
    }
  }

  /** Pause (QMP stop), resume (cont) or reset a running VM; answers qemu's run state afterwards. */
  async control(id: string, action: VmControl): Promise<{ id: string; status: string; running: boolean }> {
    const record = await this.find(id);
    if (record.phase !== 'running') throw new HelperError('conflict', `VM ${id} is ${record.phase}, not running`);
    return this.withQmp(record, async (qmp) => {
      await qmp.execute(CONTROL_COMMAND[action]);
      const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
      return { id, status: status.status, running: status.running };
    });
  }

  /**
   * Internal snapshots of a running VM's qcow2 disks (disk state only, crash-consistent) through QMP, by
   * the node names the launcher gave them. qemu writes them into the images it holds open, so labels do
   * not change. Reverting a running VM's disks under it is refused: the VM must be stopped.
   */
  async snapshot(id: string, op: 'list' | 'take' | 'delete' | 'revert', name?: string): Promise<{ id: string; disks: { disk: string; snapshots: Record<string, unknown>[] }[] }> {
    const record = await this.find(id);
    if (record.phase !== 'running') throw new HelperError('conflict', `VM ${id} is ${record.phase}, not running`);
    if (op === 'revert') throw new HelperError('refused', `VM ${id} is running: stop the VM to revert a snapshot`);
    const definition = parseVmDefinition(record.definition, `VM ${id}`);
    const nodes = definition.disks.flatMap((d, i) => (d.format === 'qcow2' && d.class !== 'readonly' ? [{ disk: d.path, node: diskNodeName(i) }] : []));
    if (nodes.length === 0) throw new HelperError('bad-request', `VM ${id} has no writable qcow2 disk to snapshot`);
    if (op !== 'list' && name === undefined) throw new HelperError('bad-request', `a snapshot name is needed to ${op} one`);
    return this.withQmp(record, async (qmp) => {
      for (const { node } of op === 'list' ? [] : nodes) {
        const command = op === 'take' ? 'blockdev-snapshot-internal-sync' : 'blockdev-snapshot-delete-internal-sync';
        await qmp.execute(command, { device: node, name }).catch((err: Error) => {
          throw new HelperError('failed', `snapshot ${op} ${name ?? ''} on ${node}: ${err.message}`);
        });
      }
      const named = await qmp.execute<{ 'node-name': string; image?: { snapshots?: Record<string, unknown>[] } }[]>('query-named-block-nodes', { flat: true });
      return {
        id,
        disks: nodes.map(({ disk, node }) => ({ disk, snapshots: named.find((n) => n['node-name'] === node)?.image?.snapshots ?? [] })),
      };
    });
  }

  /**
   * Stops a VM: ACPI power button through QMP, then (after `timeoutMs`, or at once with `force`) QMP
   * `quit`, then SIGKILL. Labels are restored and the pair released once qemu is gone.
   */
  async stop(id: string, options: { force?: boolean; timeoutMs?: number } = {}): Promise<{ id: string; forced: boolean; restoredFiles: number }> {
    const record = await this.find(id);
    let forced = Boolean(options.force);
    if (!forced) {
      await this.qmp(record, 'system_powerdown').catch(() => undefined);
      forced = !(await this.waitForExit(record, options.timeoutMs ?? this.deps.config.shutdownTimeoutSeconds * 1000));
    }
    if (forced) {
      await this.qmp(record, 'quit').catch(() => undefined);
      if (!(await this.waitForExit(record, 3_000)) && record.pid !== null) signal(record.pid, 'SIGKILL');
      await this.waitForExit(record, 3_000);
    }
    faultPoint('before-stop-cleanup');
    const report = await this.reconcile();
    return { id, forced, restoredFiles: report.restoredFiles };
  }

}
