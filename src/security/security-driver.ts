/**
 * The seam between the VM lifecycle and the security models that confine qemu: one small table of verbs,
 * after libvirt's security_driver.h, in this product's words. The lifecycle calls these verbs (through a
 * stack: the host's MAC model over DAC) and never names SELinux, AppArmor or a uid rule itself.
 *
 *   probe           is the model on this host, and does the kernel enforce it?
 *   prepare         what a start needs that may take time (reading the policy), before the state lock is taken
 *   generate        a VM's label for this start: dynamic → a fresh one (an MCS pair, a profile, a uid),
 *                   static → the user's, checked; reserved in the driver's state before the start goes on
 *   release         gives a VM's label back (at stop, after a failed start, after a crash)
 *   sweep           gives back what VMs no record knows still hold (a crash): allocator holds, loaded profiles
 *   setAll          labels every file of the VM for this start; file changes go through the journal
 *   restoreAll      undoes what the model holds outside files (a loaded profile)
 *   confineProcess  how qemu is exec'd into its label (runcon CONTEXT, aa-exec -p PROFILE, a uid)
 *   verifyProcess   does the running qemu carry the label it was given? (the kernel's word, not the plan's)
 *   liveLabels      labels the host's processes hold now, outside this registry (a draw must avoid them)
 *   sharedLabel     the label of content several VMs use (SELinux: svirt_image_t:s0, virt_content_t:s0)
 *   describe        the VM's confinement as data the user side shows (contracts/security-description.ts)
 *
 * Design choices:
 * - A label (VmLabel) is plain data in the model's own spelling, persisted in the run record: any later
 *   helper (after a crash, an upgrade) can release and restore it without the start that made it.
 * - File changes are not made by the drivers directly but handed to a FileHolds, which the lifecycle backs
 *   with the label journal (journal first, then the file). So one crash-recovery path restores every
 *   model's file changes, and a stack makes one journal entry per file (label and owner together).
 *   restoreAll is only for what lives outside files.
 * - A driver's persistent state (the MCS allocator's holds) lives in one slot the lifecycle saves in the
 *   registry under the host-wide lock; `sweep` drops holds of VMs no record knows (a crash mid-start).
 * - Verbs a model has nothing to do for are plain no-ops in that driver, not optional members: every
 *   driver answers the whole table, so a missing verb fails the build (like ipc-contract.ts).
 * - The list of drivers (drivers.ts) ends with `none`, like libvirt's security_driver.c: probing picks
 *   the first whose model the host runs.
 */
import type { ConfinementDescription, LabelPart, ModelStateName, SecurityModelId } from '../contracts/security-description';
import type { SelinuxModeName } from '../core/confinement';
import type { VmDefinition } from '../core/vm-definition';
import type { VmSpec } from '../core/vm-spec';

export type { ConfinementDescription, LabelPart, SecurityModelId };

/**
 * What the kernel does with a model on this host:
 * - `enforcing`: it refuses what the policy does not allow;
 * - `permissive`: it logs, refuses nothing (SELinux permissive, AppArmor complain);
 * - `inactive`: the model's tools and policy are installed, the kernel does not run it (labels can be
 *   written as data, nothing is enforced);
 * - `absent`: not on this host at all.
 */
export type ModelState = ModelStateName;

export interface ProbeResult {
  readonly model: SecurityModelId;
  readonly state: ModelState;
}

/** Whether a model in `state` puts a process in its label at all (permissive still labels it). */
export const confines = (state: ModelState): boolean => state === 'enforcing' || state === 'permissive';

/** A model's state in the confinement vocabulary of src/core/confinement.ts. */
export const confinementMode = (state: ModelState): SelinuxModeName => (confines(state) ? (state as SelinuxModeName) : 'disabled');

/**
 * One model's label for one VM's run, in the model's own spelling. Plain JSON: it is persisted in the run
 * record and read back by any later helper.
 */
export interface VmLabel {
  readonly model: SecurityModelId;
  /** Drawn for this start (dynamic, released at stop) or given by the user (static, checked). */
  readonly dynamic: boolean;
  /** What qemu runs as (an SELinux context, a profile name, `uid:gid`); null: the model leaves it as it is. */
  readonly process: string | null;
  /** What the VM's private files get; null: the model changes no file's label. */
  readonly image: string | null;
  /** What makes the label this VM's own (`s0:c1,c2`, a profile name, a uid); null when nothing does. */
  readonly distinct: string | null;
}

/** The VM a verb acts on: its id, owner and definition as started. */
export interface SecuredVm {
  readonly id: string;
  readonly name: string;
  readonly ownerUid: number;
  readonly definition: VmDefinition;
  /** The label-relevant view of the definition (disks with their backing chains, boot files). */
  readonly spec: VmSpec;
}

/** Another VM on record, with this model's part of its label (undefined when its record has none). */
export interface RecordedVm {
  readonly id: string;
  readonly name: string;
  readonly ownerUid: number;
  readonly label: VmLabel | undefined;
}

/** What generate and release see of the host-wide state; read and written under the state lock. */
export interface LabelBook {
  /** Every other VM on record, every user's. */
  readonly others: readonly RecordedVm[];
  /** Static labels of the requester's defined-but-stopped VMs: kept free of dynamic draws. */
  readonly reserved: readonly string[];
  /** This driver's persisted state (undefined before its first use); the lifecycle saves what is left here. */
  state: unknown;
}

/** A label the host's processes hold now, in the model's spelling, and who holds it. */
export interface LiveLabel {
  readonly label: string;
  readonly holder: string;
}

/**
 * How shared a file is, which decides how it is put back: `private` files are given back at stop,
 * `shared` and `readonly` content keeps its label for the other VMs that use it.
 */
export type HoldKind = 'private' | 'shared' | 'readonly';

/** One change to one file of a VM: a label, an owner, or both. */
export interface FileHold {
  readonly path: string;
  readonly kind: HoldKind;
  /** The label to set, in the model's spelling; absent: the label stays. */
  readonly label?: string;
  /** The owner to hand the file to while the VM runs; absent: the owner stays. */
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/** Where drivers put their file changes; the lifecycle journals each one before the file changes. */
export interface FileHolds {
  hold(change: FileHold): Promise<void>;
}

/**
 * How qemu is exec'd into its label, as the launcher needs it. Every field is optional: a model uses
 * the ones it has (SELinux: exec, socket and file labels; AppArmor: exec; DAC: uid and gid).
 */
export interface ProcessConfinement {
  /** argv put before qemu's own: the program that execs it confined (`runcon CONTEXT`, `aa-exec -p PROFILE --`). */
  readonly execPrefix?: readonly string[];
  /** The label qemu's inherited sockets are created at (SELinux: qemu's own context). */
  readonly socketLabel?: string;
  /** The label qemu's log, serial line and display directory get before it inherits them. */
  readonly runFileLabel?: string;
  /** The uid and gid qemu runs as. */
  readonly uid?: number;
  readonly gid?: number;
}

export interface SecurityDriver {
  readonly model: SecurityModelId;
  /** The model's name for people ("SELinux", "AppArmor"). */
  readonly modelName: string;
  probe(): Promise<ProbeResult>;
  /** Slow reads a start needs (the policy's VM types), done before the host-wide lock so no other start waits on them. */
  prepare(vm: SecuredVm): Promise<void>;
  /** Throws an Error whose message names the user's field when the label cannot be had (taken, malformed, exhausted). */
  generate(vm: SecuredVm, book: LabelBook): Promise<VmLabel>;
  /** Gives the label's hold back in the book's state; a label it never held is ignored. */
  release(vmId: string, label: VmLabel, book: LabelBook): void;
  /**
   * Drops holds of VMs outside `keep` (a crash between generate and the record), in the book's state and
   * on the host (a loaded profile). Returns what could not be undone now, for the log; the next sweep retries.
   */
  sweep(book: LabelBook, keep: ReadonlySet<string>): Promise<readonly string[]>;
  setAll(vm: SecuredVm, label: VmLabel, files: FileHolds): Promise<void>;
  restoreAll(vmId: string, label: VmLabel): Promise<void>;
  confineProcess(vm: SecuredVm, label: VmLabel): ProcessConfinement;
  /** Null when the process carries its label, else what is wrong, for the start's error. */
  verifyProcess(pid: number, label: VmLabel): Promise<string | null>;
  liveLabels(): Promise<LiveLabel[]>;
  /** A private file copy qemu gets by fd (a kernel): the VM's image label, or `original` when it has none. */
  labelPrivateCopy(path: string, label: VmLabel, original: string | null): Promise<void>;
  /** A file's label in this model's spelling (null: none, or the model labels no files). */
  fileLabel(path: string): Promise<string | null>;
  /** The label content shared by several VMs gets (written by them, or read only); null: the model labels no files. */
  sharedLabel(kind: 'shared' | 'readonly'): string | null;
  describe(label: VmLabel): ConfinementDescription;
}
