import { mkdir, chmod } from 'node:fs/promises';
import * as path from 'node:path';
import { Ajv } from 'ajv';
import { readJsonFile, writeFileAtomic } from '../../host/atomic-file';
import { withStateLock } from '../../host/state-lock';
import { parseJournal, type JournalData } from '../labels/label-journal';
import type { VmLabel } from '../../security/security-driver';
import { dacLabel } from '../../security/dac/dac-driver';

/**
 * The helper's persistent state under a root-only directory (/var/lib/svirt-manager, or SVIRT_STATE_DIR):
 * `registry.json` (MCS pairs and running VMs) and `journal.json` (labels to restore), each written
 * atomically, both changed only under the host-wide lock so that several helpers agree.
 */
export const DEFAULT_STATE_DIR = '/var/lib/svirt-manager';

export type RunPhase = 'starting' | 'running' | 'stopping';

export interface RunRecord {
  /** `<owner uid>/<name>`: VM names are unique per user. */
  id: string;
  name: string;
  ownerUid: number;
  phase: RunPhase;
  /** The helper that owns a `starting` record; if it died mid-start, the record is cleaned up. */
  helperPid: number;
  helperStartTime: string;
  pid: number | null;
  pidStartTime: string | null;
  keeperPid: number | null;
  keeperStartTime: string | null;
  runDir: string;
  /**
   * The VM's labels, one per stacked security model (MAC first, then DAC), as the drivers made them. Absent
   * in records written by a helper before the security drivers: their labels are read from the fields below
   * (see labelsOfRecord).
   */
  security?: VmLabel[];
  /** The MCS level of a dynamic VM (the registry's pair), null for static and none. */
  level: string | null;
  /** The MAC label qemu runs in and its images get, in the model's spelling (kept for the user side). */
  processLabel: string | null;
  imageLabel: string | null;
  /** qemu runs (while starting: is to run) in its MAC label; the reported confinement adds the model's state. */
  confined: boolean;
  notConfinedReason: string | null;
  accel: 'kvm' | 'tcg';
  /** The VM's own uid and gid (one number), from the configured range; freed with the record. */
  qemuUid?: number;
  /** The VM's AppArmor profile in records of an older helper (now in `security`); read by labelsOfRecord. */
  apparmorProfile?: string;
  /** The VM definition as started (validated), so labels can be restored by any later helper. */
  definition: Record<string, unknown>;
  startedAt: string;
}

/**
 * A record's labels, one per stacked model. A record written before the security drivers has no
 * `security`: that helper always ran SELinux over per-VM uids, so its SELinux fields and its qemuUid are
 * the same labels in the old spelling, and any later helper can release and restore them.
 */
export function labelsOfRecord(record: RunRecord): VmLabel[] {
  if (record.security !== undefined) return record.security;
  const selinux: VmLabel = {
    model: 'selinux', dynamic: record.level !== null, process: record.processLabel, image: record.imageLabel,
    distinct: record.level,
  };
  // A helper of the short time between the AppArmor driver and the stack kept the VM's profile beside its
  // SELinux fields (it still labelled the files and drew a pair as data).
  const apparmor: VmLabel[] = record.apparmorProfile === undefined ? [] : [{
    model: 'apparmor', dynamic: true, process: record.apparmorProfile, image: null, distinct: record.apparmorProfile,
  }];
  return [selinux, ...apparmor, ...(record.qemuUid === undefined ? [] : [dacLabel(record.qemuUid)])];
}

/** The security drivers' saved states by model: the SELinux allocator's in `mcs`, where it always was. */
export function driverStates(registry: RegistryData): Record<string, unknown> {
  return { ...registry.security, selinux: registry.mcs };
}

export function saveDriverStates(registry: RegistryData, states: Record<string, unknown>): void {
  const { selinux, ...others } = states;
  registry.mcs = selinux ?? null;
  const kept = Object.entries(others).filter(([, value]) => value !== undefined);
  if (kept.length > 0) registry.security = Object.fromEntries(kept);
  else delete registry.security;
}

export interface RegistryData {
  version: 1;
  /** The SELinux driver's MCS allocator state (owners and their pairs). */
  mcs: unknown;
  /** Other security drivers' persisted state, by model (see SecurityDriver's LabelBook). */
  security?: Record<string, unknown>;
  vms: Record<string, RunRecord>;
}

const nullableString = { type: ['string', 'null'] } as const;
const nullableInt = { type: ['integer', 'null'] } as const;
const runRecordSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'ownerUid', 'phase', 'helperPid', 'helperStartTime', 'pid', 'pidStartTime', 'keeperPid', 'keeperStartTime',
    'runDir', 'level', 'processLabel', 'imageLabel', 'confined', 'notConfinedReason', 'accel', 'definition', 'startedAt'],
  properties: {
    id: { type: 'string' }, name: { type: 'string' }, ownerUid: { type: 'integer', minimum: 0 },
    phase: { type: 'string', enum: ['starting', 'running', 'stopping'] },
    helperPid: { type: 'integer' }, helperStartTime: { type: 'string' },
    pid: nullableInt, pidStartTime: nullableString, keeperPid: nullableInt, keeperStartTime: nullableString,
    runDir: { type: 'string' }, level: nullableString, processLabel: nullableString, imageLabel: nullableString,
    confined: { type: 'boolean' }, notConfinedReason: nullableString, accel: { type: 'string', enum: ['kvm', 'tcg'] },
    qemuUid: { type: 'integer', minimum: 1 },
    // Written by helpers before the security stack recorded labels per model; read by labelsOfRecord.
    apparmorProfile: { type: 'string', pattern: '^svirt-vm-[A-Za-z0-9._-]+$' },
    security: {
      type: 'array',
      maxItems: 8,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['model', 'dynamic', 'process', 'image', 'distinct'],
        properties: {
          model: { type: 'string', enum: ['selinux', 'apparmor', 'dac', 'none'] }, dynamic: { type: 'boolean' },
          process: nullableString, image: nullableString, distinct: nullableString,
        },
      },
    },
    definition: { type: 'object' }, startedAt: { type: 'string' },
  },
} as const;
const registrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'mcs', 'vms'],
  properties: {
    version: { type: 'integer', const: 1 },
    mcs: {},
    security: { type: 'object' },
    vms: { type: 'object', additionalProperties: runRecordSchema },
  },
} as const;
const validateRegistry = new Ajv({ strict: false }).compile<RegistryData>(registrySchema);

export function emptyRegistry(): RegistryData {
  return { version: 1, mcs: null, vms: {} };
}

function parseRegistry(value: unknown, source: string): RegistryData {
  if (value === undefined) return emptyRegistry();
  if (!validateRegistry(value)) {
    const e = validateRegistry.errors?.[0];
    throw new Error(`${source}: invalid registry at ${e?.instancePath || '/'}: ${e?.message ?? 'unknown error'}`);
  }
  return value;
}

export interface StateSnapshot {
  registry: RegistryData;
  journal: JournalData;
}

export interface StateTransaction extends StateSnapshot {
  /** Writes both files now (the relabeler journals before it touches a file). */
  persist(): Promise<void>;
}

export class HelperStateStore {
  readonly registryPath: string;
  readonly journalPath: string;
  readonly lockPath: string;
  readonly runRoot: string;
  /**
   * Where qemu creates its VNC sockets (it cannot take a listening fd for VNC): one directory per VM owned by
   * its qemu uid. Beside the state directory, not in it, because the state directory stays root-only (0700).
   */
  readonly displayRoot: string;
  /** The logs of tree relabels (the journal's tree records name them). */
  readonly treeLogDir: string;
  // One transaction at a time inside this process; the lock file serializes across processes.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string = DEFAULT_STATE_DIR) {
    this.registryPath = path.join(dir, 'registry.json');
    this.journalPath = path.join(dir, 'journal.json');
    this.lockPath = path.join(dir, 'lock');
    this.runRoot = path.join(dir, 'run');
    this.displayRoot = `${dir.replace(/\/+$/, '')}-display`;
    this.treeLogDir = path.join(dir, 'trees');
  }

  /** A VM's run directory (root's, 0700: sockets, serial line, log) and display directory (its qemu uid's). */
  vmDirs(ownerUid: number, name: string): { runDir: string; displayDir: string } {
    return { runDir: path.join(this.runRoot, `${ownerUid}-${name}`), displayDir: path.join(this.displayRoot, `${ownerUid}-${name}`) };
  }

  /** Creates the directory tree, root-only. */
  async init(): Promise<void> {
    await mkdir(this.runRoot, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    await chmod(this.runRoot, 0o711); // qemu's unprivileged user must reach its own run dir by name
  }

  async read(): Promise<StateSnapshot> {
    return {
      registry: await this.readRegistry(),
      journal: parseJournal(await readJsonFile(this.journalPath), this.journalPath),
    };
  }

  /** The registry alone: lookups of running VMs need not parse a journal that may hold whole trees. */
  async readRegistry(): Promise<RegistryData> {
    return parseRegistry(await readJsonFile(this.registryPath), this.registryPath);
  }

  /** Runs `fn` with the state loaded under the lock; writes it back when `fn` returns. */
  transaction<T>(fn: (tx: StateTransaction) => Promise<T>): Promise<T> {
    const run = async () =>
      withStateLock(this.lockPath, async () => {
        const snapshot = await this.read();
        // What is on disk now; a file is rewritten (and fsynced) only when its content changed, so the
        // periodic reconcile of an idle helper costs reads, not writes.
        let journalText = JSON.stringify(snapshot.journal);
        let registryText = JSON.stringify(snapshot.registry);
        const tx: StateTransaction = {
          ...snapshot,
          persist: async () => {
            const journal = JSON.stringify(snapshot.journal);
            if (journal !== journalText) await writeFileAtomic(this.journalPath, journal);
            journalText = journal;
            const registry = JSON.stringify(snapshot.registry);
            if (registry !== registryText) await writeFileAtomic(this.registryPath, registry);
            registryText = registry;
          },
        };
        try {
          return await fn(tx);
        } finally {
          // Persist whatever was done, also when fn failed half-way: the journal must match the disk.
          await tx.persist();
        }
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

