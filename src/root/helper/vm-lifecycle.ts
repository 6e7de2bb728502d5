import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { copyFile, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { confinementOf, notConfinedReason } from '../../core/confinement';
import { startConsoleKeeperProcess } from '../console/keeper-process';
import { confinementMode, type FileHold, type ModelState, type SecuredVm, type VmLabel } from '../../security/security-driver';
import type { SecurityStack, StackBook } from '../../security/security-stack';
import { clearDeadWalkers, labelFiles, LabelConflictError, removeOrphanTreeLogs, restoreHolder, type FileLabelChange, type RelabelContext, type RelabelTransact } from '../labels/relabeler';
import { claimDevice, deviceSize, deviceUseProblems, openBlockDevice, probeSignature, type OpenedDevice } from '../../host/block-devices';
import { isUnder, openRelabelTarget, PathRefusedError, type OpenedTarget, type Requester } from '../../host/path-policy';
import type { AccelChoice } from '../qemu/accel';
import { checkNvramSize, OVMF_CODE } from '../../host/firmware';
import { BackingChainError, readBackingChain, type BackingLayer } from '../../host/backing-chain';
import { diskNodeName, launchQemu, qemuRunPaths, readQemuPid, type DiskSpec as LaunchDisk, type LaunchedQemu } from '../qemu/launch';
import { QmpClient } from '../qemu/qmp';
import { processStartTime } from '../../host/state-lock';
import { driverStates, labelsOfRecord, saveDriverStates, type HelperStateStore, type RunRecord, type StateTransaction } from '../state/helper-state';
import { parseVmDefinition, toVmSpec, type VmDefinition } from '../../core/vm-definition';
import type { HelperConfig } from './helper-config';
import { HelperError, type RunInfo } from '../../contracts/helper-protocol';
import { faultPoint } from './fault-points';

/**
 * A VM's life as the root helper sees it: take its labels host-wide, label its files (journal first),
 * start qemu confined and detached with a console keeper, stop it (ACPI, then force), and reconcile
 * after any crash: VMs whose qemu died get their files restored and their labels released, whoever
 * started them. Every state change happens under the host-wide state lock.
 *
 * Which security models confine qemu is the security stack's business (src/security): this module asks it
 * for labels, file changes, the exec confinement and the check of the running process, and names no
 * model. A start runs as named steps in the order its data flows (see start).
 */

export type { RunInfo };

export interface LifecycleDeps {
  readonly store: HelperStateStore;
  readonly config: HelperConfig;
  readonly requester: Requester;
  /** The host's security models, MAC over DAC. */
  readonly security: SecurityStack;
  readonly accel: () => Promise<AccelChoice>;
  /** How to run this helper program again as a console keeper (node + script). */
  readonly keeperCommand: { command: string; argsPrefix: readonly string[] };
  /** What a start runs (qemu, its console keeper, the resume once both run); tests put fakes here. */
  readonly runtime?: Partial<StartRuntime>;
}

/** The processes a start runs, behind one seam so the lifecycle's order can be tested without qemu. */
export interface StartRuntime {
  launchQemu: typeof launchQemu;
  startKeeper: typeof startConsoleKeeperProcess;
  /** Lets the paused qemu run (QMP `cont`), on the launcher's QMP connection where it kept one. */
  resume(launched: LaunchedQemu): Promise<void>;
}

const REAL_RUNTIME: StartRuntime = {
  launchQemu,
  startKeeper: startConsoleKeeperProcess,
  resume: async (launched) => {
    const qmp = launched.qmp ?? (await QmpClient.connect(launched.qmpSocketPath, { timeoutMs: 10_000 }));
    try {
      await qmp.execute('cont');
    } finally {
      await qmp.close();
    }
  },
};

export interface StartOptions {
  /** Run qemu even though the host cannot put it in a MAC label (no model, or one the kernel does not run). */
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
  /** Hands the private boot file copies to the VM's uid (and image label); their paths for the launcher. */
  bootCopiesFor(uid: number | undefined, labels: readonly VmLabel[]): Promise<{ kernel?: string; initrd?: string }>;
  close(): Promise<void>;
}

/** What prepareStart hands the locked steps of a start. */
interface PreparedStart {
  readonly vm: SecuredVm;
  readonly definition: VmDefinition;
  readonly accel: AccelChoice;
  /** The MAC model's state when the start began. */
  readonly state: ModelState;
  readonly files: VmFiles;
  readonly runDir: string;
}

/** A start in progress under the lock: its record (persisted), its labels, its keeper once started. */
interface StartAttempt {
  readonly record: RunRecord;
  readonly labels: readonly VmLabel[];
  keeper?: Promise<{ pid: number }>;
  readonly abandonKeeper: AbortController;
  /** Settled once qemu runs, or the start failed: the helper's next spare keeper starts then. */
  readonly settled: { promise: Promise<void>; resolve: () => void };
}

function parseStartDefinition(input: unknown): VmDefinition {
  try {
    return parseVmDefinition(input, 'start request');
  } catch (err) {
    // An invalid definition is the requester's error, not a helper failure.
    throw new HelperError('bad-request', (err as Error).message);
  }
}

/** Refusals and conflicts keep their own codes (the verb maps them); anything else is "failed". */
function startError(name: string, err: unknown): Error {
  if (err instanceof HelperError || err instanceof PathRefusedError || err instanceof LabelConflictError) return err;
  return new HelperError('failed', `start of ${name} failed: ${(err as Error).message}`);
}

/** A kernel or initrd larger than this is refused (it is copied for each start). */
const MAX_BOOT_FILE_BYTES = 1024 * 1024 * 1024;

/**
 * A private copy of a checked boot file, for one VM: qemu reopens its kernel and initrd as /proc/self/fd/N,
 * which checks the file's permissions against the VM's uid. Handing over the user's file would need it
 * chowned or world-readable; a copy owned by the VM's uid alone (mode 0400, the VM's image label) needs
 * neither, cannot change under qemu, and no other VM can read it. It is unlinked at once: only the fd holds it.
 */
async function privateCopy(source: OpenedTarget, dir: string, field: string): Promise<FileHandle> {
  if (source.stat.size > MAX_BOOT_FILE_BYTES) throw new HelperError('refused', `${field}: ${source.path} is larger than ${MAX_BOOT_FILE_BYTES >> 20} MiB`);
  const copyPath = path.join(dir, `.boot-${randomUUID()}`);
  await copyFile(source.fdPath, copyPath, fsConstants.COPYFILE_EXCL);
  try {
    const copy = await open(copyPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    await copy.chmod(0o400);
    return copy;
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

/** A record as reported, with its confinement under the MAC model's state now and the stack's description. */
export function runInfo(record: RunRecord, security: SecurityStack, state: ModelState): RunInfo {
  const seclabelMode = (record.definition as unknown as VmDefinition).seclabel.mode;
  const confinement = confinementOf({ mode: confinementMode(state), seclabelMode, inLabel: record.confined });
  return {
    id: record.id, name: record.name, ownerUid: record.ownerUid, state: record.phase, pid: record.pid,
    processLabel: record.processLabel, imageLabel: record.imageLabel, level: record.level,
    confinement, confined: confinement === 'confined', notConfinedReason: notConfinedReason(confinement, security.modelName),
    accel: record.accel, startedAt: record.startedAt, runDir: record.runDir, seclabelMode,
    security: security.describe(labelsOfRecord(record)),
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

  /**
   * The host-wide view the security stack reads and writes under the lock: every other VM's labels and the
   * drivers' saved states. Call saveBook after the stack's verbs ran.
   */
  private book(tx: StateTransaction, selfId?: string, reserved: readonly string[] = []): StackBook {
    const others = Object.values(tx.registry.vms).filter((r) => r.id !== selfId)
      .map((r) => ({ id: r.id, name: r.name, ownerUid: r.ownerUid, labels: labelsOfRecord(r) }));
    return { others, reserved, states: driverStates(tx.registry) };
  }

  private saveBook(tx: StateTransaction, book: StackBook): void {
    saveDriverStates(tx.registry, book.states);
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
  private async cleanUp(tx: StateTransaction, record: RunRecord): Promise<number> {
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
    const labels = labelsOfRecord(record);
    await this.deps.security.restoreAll(record.id, labels);
    const book = this.book(tx, record.id);
    this.deps.security.release(record.id, labels, book);
    this.saveBook(tx, book);
    delete tx.registry.vms[record.id];
    await rm(record.runDir, { recursive: true, force: true });
    await rm(this.displayDir(record.ownerUid, record.name), { recursive: true, force: true });
    return restored.restored;
  }

  private async reconcileLocked(tx: StateTransaction): Promise<ReconcileReport> {
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
        report.restoredFiles += await this.cleanUp(tx, record);
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
    clearDeadWalkers(this.relabelContext(tx, { uid: 0 }));
    // Labels held for VMs that have no record (a crash between taking them and recording the VM) go back,
    // and so does what the models hold on the host for them (a VM's profile never outlives it).
    const book = this.book(tx);
    await contained('security labels', async () => {
      const problems = await this.deps.security.sweep(book, new Set(Object.keys(tx.registry.vms)));
      for (const problem of problems) process.stderr.write(`svirt-helper: reconcile: ${problem}
`);
    });
    this.saveBook(tx, book);
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
    const [registry, state] = await Promise.all([this.deps.store.readRegistry(), this.deps.security.state()]);
    const { uid } = this.deps.requester;
    return Object.values(registry.vms)
      .filter((record) => uid === 0 || record.ownerUid === uid)
      .map((record) => runInfo(record, this.deps.security, state))
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
    // The kernel and initrd are copied (the longest part of this) while the disks are opened. Settled
    // promises only: a copy that fails while a disk is still being opened is no unhandled rejection.
    const copyBootFile = async (what: 'kernel' | 'initrd', p: string): Promise<void> => {
      const source = await openChecked(`boot.${what}`, p);
      try {
        sourceLabels[what] = await this.deps.security.fileLabel(source.fdPath);
        copies[what] = await privateCopy(source, this.deps.store.runRoot, `boot.${what}`);
      } finally {
        await source.handle.close();
      }
    };
    const bootFiles = boot.kind === 'kernel' ? ([['kernel', boot.kernel], ['initrd', boot.initrd]] as const) : [];
    const bootCopies = Promise.allSettled(bootFiles.flatMap(([what, p]) => (p === undefined ? [] : [copyBootFile(what, p)])));
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
      const failed = (await bootCopies).find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (err) {
      await bootCopies;
      await close();
      throw err;
    }
    const bootCopiesFor = async (uid: number | undefined, labels: readonly VmLabel[]) => {
      const out: { kernel?: string; initrd?: string } = {};
      await Promise.all((Object.entries(copies) as ['kernel' | 'initrd', FileHandle][]).map(async ([what, copy]) => {
        if (uid !== undefined) await copy.chown(uid, uid);
        const fdPath = `/proc/${process.pid}/fd/${copy.fd}`;
        // Without an image label of its own (static without relabel, none), the copy reads as the original did.
        await this.deps.security.labelPrivateCopy(fdPath, labels, sourceLabels[what] ?? null);
        out[what] = fdPath;
      }));
      return out;
    };
    return { disks, deviceNodes, ...(nvram ? { nvram } : {}), bootCopiesFor, close };
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

  /**
   * Starts a VM, one step after another in the order its data flows:
   *
   *   prepareStart  the definition parsed, its backing chains read, every file opened and checked, the
   *                 security models' slow reads done: before the host-wide lock, so nothing under it waits
   *   reserve       under the lock: the VM's labels taken from the security stack (MAC and DAC), and its
   *                 record written before anything on disk changes
   *   setLabels     its files get their labels and owners, each journaled first
   *   launch        qemu, paused and confined as the stack says, alongside its console keeper
   *   verify        the kernel's word that qemu carries its labels
   *   finish        the keeper recorded, qemu resumed
   *
   * Every failure after reserve goes through abandonStart, the one clean-up path: qemu and the keeper
   * ended, files restored, labels released, record gone.
   */
  async start(definitionInput: unknown, options: StartOptions = {}): Promise<RunInfo> {
    const prepared = await this.prepareStart(parseStartDefinition(definitionInput));
    return this.deps.store.transaction(async (tx) => {
      await this.reconcileLocked(tx);
      const attempt = await this.reserve(tx, prepared, options);
      try {
        await this.setLabels(tx, prepared, attempt);
        const launched = await this.launch(tx, prepared, attempt);
        await this.verify(prepared, attempt, launched);
        await this.finish(tx, attempt, launched);
        return runInfo(attempt.record, this.deps.security, prepared.state);
      } catch (err) {
        await this.abandonStart(tx, attempt);
        throw startError(prepared.vm.name, err);
      }
    }).finally(() => prepared.files.close());
  }

  private get runtime(): StartRuntime {
    return { ...REAL_RUNTIME, ...this.deps.runtime };
  }

  private async prepareStart(definition: VmDefinition): Promise<PreparedStart> {
    const ownerUid = this.deps.requester.uid;
    const [state, accel] = await Promise.all([this.deps.security.state(), this.deps.accel()]);
    const chains = await this.backingChains(definition);
    const vm: SecuredVm = { id: vmId(ownerUid, definition.name), name: definition.name, ownerUid, definition, spec: toVmSpec(definition, accel.accel, chains) };
    await this.deps.security.prepare(vm);
    const files = await this.openVmFiles(definition, chains);
    return { vm, definition, accel, state, files, runDir: path.join(this.deps.store.runRoot, `${ownerUid}-${definition.name}`) };
  }

  /** Takes the VM's labels and records it (persisted) as starting; refuses a start the host cannot confine unless allowed. */
  private async reserve(tx: StateTransaction, prepared: PreparedStart, options: StartOptions): Promise<StartAttempt> {
    const { vm, definition, state } = prepared;
    const { security } = this.deps;
    if (tx.registry.vms[vm.id]) throw new HelperError('conflict', `VM ${vm.name} is already running`);
    const book = this.book(tx, vm.id, options.reservedLevels ?? []);
    const labels = await security.generate(vm, book);
    const inLabel = security.runsInLabel(labels, state);
    const wantsLabel = definition.seclabel.mode !== 'none';
    if (wantsLabel && !inLabel && !options.allowUnconfined) {
      security.release(vm.id, labels, book);
      throw new HelperError('refused', security.notConfinedRefusal(state));
    }
    const mac = security.macLabel(labels);
    const uid = security.processUid(vm, labels);
    const record: RunRecord = {
      id: vm.id, name: vm.name, ownerUid: vm.ownerUid, phase: 'starting',
      helperPid: process.pid, helperStartTime: this.helperStartTime,
      pid: null, pidStartTime: null, keeperPid: null, keeperStartTime: null, runDir: prepared.runDir,
      security: labels,
      level: mac?.dynamic ? mac.distinct : null, processLabel: mac?.process ?? null, imageLabel: mac?.image ?? null,
      // Whether qemu is to run in its label; checked against the kernel once it runs.
      confined: inLabel,
      notConfinedReason: !wantsLabel ? notConfinedReason('unconfined-none', security.modelName) : inLabel ? null : notConfinedReason('unconfined-disabled', security.modelName),
      accel: prepared.accel.accel, ...(uid === undefined ? {} : { qemuUid: uid }),
      definition: definition as unknown as Record<string, unknown>, startedAt: new Date().toISOString(),
    };
    tx.registry.vms[vm.id] = record;
    this.saveBook(tx, book);
    await tx.persist();
    faultPoint('after-allocation');
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { record, labels, abandonKeeper: new AbortController(), settled: { promise, resolve } };
  }

  /** Every file change the security models ask for, all journaled (one write) before any file changes. */
  private async setLabels(tx: StateTransaction, prepared: PreparedStart, attempt: StartAttempt): Promise<void> {
    const changes: FileLabelChange[] = [];
    await this.deps.security.setAll(prepared.vm, attempt.labels, async (hold: FileHold) => {
      changes.push({ kind: hold.kind, target: prepared.files.deviceNodes.get(hold.path) ?? hold.path, label: hold.label ?? null, ...(hold.owner ? { owner: hold.owner } : {}) });
    });
    await labelFiles(this.relabelContext(tx), attempt.record.id, changes);
  }

  /**
   * qemu, paused, confined as the stack says, with the console keeper starting alongside: the keeper (a
   * Node process, the slowest part of a start) waits for qemu's serial line, and qemu stays paused until
   * the keeper is ready. Not before the labels and disks passed: a refused start would wait out the
   * keeper's 10 s connect timeout, and a helper dying mid-relabel would leave a keeper nobody recorded.
   */
  private async launch(tx: StateTransaction, prepared: PreparedStart, attempt: StartAttempt): Promise<LaunchedQemu> {
    const { definition, files, runDir, vm } = prepared;
    const boot = definition.boot;
    const confinement = this.deps.security.confineProcess(vm, attempt.labels, prepared.state);
    const { uid, gid } = confinement;
    if (uid === undefined || gid === undefined) throw new Error('the security stack gave qemu no uid of its own');
    let launched: LaunchedQemu;
    try {
      await mkdir(runDir, { recursive: true, mode: 0o700 });
      attempt.keeper = this.runtime.startKeeper({
        command: this.deps.keeperCommand.command,
        argsPrefix: this.deps.keeperCommand.argsPrefix,
        serialPath: qemuRunPaths(runDir).serialLine,
        viewerSocketPath: path.join(runDir, CONSOLE_SOCKET),
        pidFile: path.join(runDir, KEEPER_PID),
        logFile: path.join(runDir, 'console.log'),
        env: keeperEnvironment(),
        signal: attempt.abandonKeeper.signal,
        // Not while qemu starts up or is paused: it would compete with it for the CPU.
        nextSpareAfter: attempt.settled.promise,
      });
      attempt.keeper.catch(() => undefined);
      launched = await this.runtime.launchQemu({
        name: definition.name,
        runDir,
        memoryMiB: definition.memoryMiB,
        cpus: definition.vcpus,
        ...(boot.kind === 'kernel' && boot.cmdline ? { append: boot.cmdline } : {}),
        disks: files.disks.map((d) => ({ ...d.spec, path: d.opened.fdPath })),
        ...(files.nvram ? { firmware: { code: OVMF_CODE, vars: files.nvram.fdPath } } : {}),
        ...(definition.network?.mode === 'user' ? { network: { portForwards: (definition.network.portForwards ?? []).map((f) => ({ ...f })) } } : {}),
        ...(definition.display === 'vnc' ? { displayDir: this.displayDir(vm.ownerUid, definition.name) } : {}),
        accelArgs: prepared.accel.args,
        uid,
        gid,
        ...(await files.bootCopiesFor(uid, attempt.labels)),
        // Paused until the console keeper holds the serial port, so not one byte of boot output is lost.
        paused: true,
        // Resumed on the connection the launcher checked qemu with: no second connect and handshake.
        keepQmp: true,
        ...(confinement.execPrefix ? { execPrefix: confinement.execPrefix } : {}),
        ...(confinement.socketLabel ? { socketContext: confinement.socketLabel } : {}),
        ...(confinement.runFileLabel ? { logLabel: confinement.runFileLabel } : {}),
      });
    } finally {
      // qemu holds its own copies now.
      await files.close();
    }
    // Recorded in memory only: the registry gets it with the keeper's pid, in one write. A helper that dies
    // before then leaves qemu's pid in the run directory (qemu.pid), where the next reconcile finds and ends it.
    attempt.record.pid = launched.pid;
    attempt.record.pidStartTime = processStartTime(launched.pid) ?? null;
    faultPoint('after-exec');
    return launched;
  }

  /**
   * qemu has exec'd (it answered QMP): the kernel says which labels it runs in. Anything but its own is not
   * left running; abandonStart kills it, restores its files and releases its labels.
   */
  private async verify(prepared: PreparedStart, attempt: StartAttempt, launched: LaunchedQemu): Promise<void> {
    const problem = await this.deps.security.verifyProcess(launched.pid, attempt.labels, prepared.state);
    if (problem) throw new Error(`${problem}; it was stopped, its labels restored and its pair freed`);
  }

  /**
   * The keeper holds the serial line, so qemu is resumed: the VM runs. The record (qemu's and the keeper's
   * pids) is written while qemu resumes, not before: a helper that dies before it is written leaves a
   * start that the next reconcile undoes (qemu found by its qemu.pid, the keeper ending with qemu).
   */
  private async finish(tx: StateTransaction, attempt: StartAttempt, launched: LaunchedQemu): Promise<void> {
    const { record } = attempt;
    const keeper = await (attempt.keeper ?? Promise.reject(new Error('no console keeper was started')));
    record.keeperPid = keeper.pid;
    record.keeperStartTime = processStartTime(keeper.pid) ?? null;
    const resumed = this.runtime.resume(launched);
    resumed.catch(() => undefined);
    await tx.persist();
    faultPoint('after-keeper');
    await resumed;
    attempt.settled.resolve();
    record.phase = 'running';
  }

  /** The one clean-up path of a failed start: qemu and the keeper ended, then what cleanUp undoes. */
  private async abandonStart(tx: StateTransaction, attempt: StartAttempt): Promise<void> {
    const { record } = attempt;
    if (record.pid !== null && alive(record.pid, record.pidStartTime)) signal(record.pid, 'SIGKILL');
    record.pid = null;
    // A keeper started for this VM but not yet recorded goes too, at once rather than after its connect timeout.
    attempt.abandonKeeper.abort();
    const keeper = await attempt.keeper?.catch(() => undefined);
    attempt.settled.resolve();
    if (keeper && record.keeperPid === null) signal(keeper.pid, 'SIGTERM');
    await this.cleanUp(tx, record);
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
