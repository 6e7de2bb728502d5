/**
 * The one IPC contract between the renderer and the main process. The preload exposes exactly these
 * calls and events, electron/ registers a handler for each call, and the browser test bridge maps the
 * same names. Every request, result and event payload is plain JSON: it crosses a process boundary.
 *
 * Only type imports here: the sandboxed preload bundles this module and must not pull in Node code.
 */
import type { AccessLevel, AuditCell, AuditMatrix, AuditProblem, AuditProblemKind, Severity } from '../core/selinux/audit-report';
import type { Confinement } from '../core/confinement';
import type { SelinuxMode } from '../security/selinux/host-selinux';
import type { DeviceChoice } from '../host/block-devices';
import type { HelperLaunch } from '../user/helper-client';
import type { DiskClass, PortForward, SeclabelDefinition, VmDefinition, VmDefinitionInput } from '../core/vm-definition';
import type { VmState } from '../user/vm-service';
import type { ConfinementDescription, LabelPart, ModelStateName, SecurityModelId } from './security-description';
import type { StaticLabelForm } from '../core/selinux/label-parts';

export type { ConfinementDescription, LabelPart, ModelStateName, SecurityModelId, StaticLabelForm };
export type { AccessLevel, AuditCell, AuditProblem, AuditProblemKind, Confinement, DiskClass, PortForward, SeclabelDefinition, SelinuxMode, Severity, VmDefinition, VmDefinitionInput, VmState };

export interface AppInfo {
  name: string;
  version: string;
}

// ---------------------------------------------------------------------------------------------------
// Host

export interface HelperStatus {
  connected: boolean;
  /** The helper's product version once it answered; null before. */
  version: string | null;
  launchedVia: HelperLaunch['via'] | null;
  /** Why the helper is not connected (authentication dismissed, exited …); null when connected. */
  error: string | null;
}

/** The security model that confines this host's VMs, its state now, and the models stacked under it. */
export interface ActiveModel {
  model: SecurityModelId;
  /** For people: "SELinux", "AppArmor". */
  modelName: string;
  state: ModelStateName;
  layers: SecurityModelId[];
}

export interface HostStatus {
  /** The helper's answer; without a helper, what the host's SELinux mode alone says. */
  security: ActiveModel;
  selinux: {
    mode: SelinuxMode;
    /** SELINUXTYPE, e.g. `default` or `targeted`; null when SELinux is disabled and no config was found. */
    policyType: string | null;
  };
  /** The types this host's policy uses for VMs (from virtual_domain_context / virtual_image_context). */
  profile: {
    processType: string;
    /** Fedora's svirt_tcg_t; null when the policy has none and TCG guests run as processType. */
    tcgProcessType: string | null;
    imageType: string;
    contentType: string;
    /** True when some policy file was missing and built-in defaults stand in. */
    fallback: boolean;
    notes: string[];
  };
  accel: {
    kind: 'kvm' | 'tcg';
    /** Why this accelerator was chosen (e.g. "/dev/kvm missing", "KVM probe timed out"). */
    reason: string;
  };
  helper: HelperStatus;
}

// ---------------------------------------------------------------------------------------------------
// VMs

/**
 * What sets a label apart, as its chip shows it: an MCS level such as `s0:c12,c345` with its setrans.conf
 * name when one is defined, or an AppArmor profile. The user side fills it, so the renderer splits nothing.
 */
export interface McsLevel {
  level: string;
  name: string | null;
  /** The value that is one VM's own and gets a colour (a single level with categories, a profile); null for shared `s0` and ranges. */
  pair: string | null;
}

export interface VmSummary {
  name: string;
  state: VmState;
  /**
   * How qemu is held (running) or would be held (stopped, on this host now): confined, permissive (labels
   * applied, not enforced), unconfined-disabled, unconfined-none. One vocabulary with the helper and the CLI.
   */
  confinement: Confinement;
  /** confinement === 'confined': SELinux enforces and qemu runs (or would run) in its label. */
  confined: boolean;
  /** Why not confined (permissive, SELinux disabled, seclabel none); null when confined. */
  notConfinedReason: string | null;
  /** The live qemu context while running; the static label when stopped; null for a stopped dynamic VM. */
  processLabel: string | null;
  /** The label its private images get (or have, while running); null when not known yet. */
  imageLabel: string | null;
  processLevel: McsLevel | null;
  imageLevel: McsLevel | null;
  seclabel: { mode: SeclabelDefinition['mode']; relabel: boolean };
  /** How its model confines it (running: the helper's description; stopped: its seclabel as this host's model would take it). */
  security: ConfinementDescription;
  vcpus: number;
  memoryMiB: number;
  /** qemu's pid while it runs. */
  pid: number | null;
}

export type { DeviceChoice };

export type ResourceKind = 'disk' | 'cdrom' | 'kernel' | 'initrd' | 'dtb' | 'nvram' | 'serial';

/**
 * How a resource is labeled: the disk classes, `content` for kernel, initrd and dtb (the read-only
 * content label, never restored) and `char` for character-device backends (the VM's image label).
 */
export type ResourceClass = DiskClass | 'content' | 'char';

export interface VmResource {
  path: string;
  kind: ResourceKind;
  class: ResourceClass;
  /** Guest device name (`vda`, `sda`) for disks and CD-ROMs. */
  target: string | null;
  relabel: boolean;
  /** A directory whose whole tree is labeled (relabels report progress). */
  isTree: boolean;
  /** The label it should have now; null when it is left alone (relabel no, seclabel none). */
  expectedLabel: string | null;
  /** expectedLabel's parts and chip, for display ([] and null when there is none). */
  expectedParts: LabelPart[];
  expectedLevel: McsLevel | null;
  /** A stopped dynamic VM's file that gets the VM's pair, which is chosen fresh at each start. */
  freshPair?: boolean;
  /** The label read from disk; null when the file could not be read (see problem). */
  actualLabel: string | null;
  actualParts: LabelPart[];
  actualLevel: McsLevel | null;
  /** True when nothing is expected, or the label on disk is the expected one. */
  match: boolean;
  /** e.g. "file not found", "filesystem does not support labels (NFS)"; null when none. */
  problem: string | null;
  /** A block device: the node its name leads to (which carries the label) and why the host uses it now (empty: it does not). */
  hostDevice?: { node: string; inUse: string[] };
}

export interface VmDetails {
  summary: VmSummary;
  definition: VmDefinition;
  resources: VmResource[];
}

/** Turning a resource into a private image, a shared read-write image, or read-only content. */
export type RelabelTarget = DiskClass;

export interface RelabelRequest {
  vm: string;
  /** A resource path of that VM. */
  path: string;
  to: RelabelTarget;
}

export interface LabelChange {
  path: string;
  /** null when the current label could not be read. */
  from: string | null;
  to: string;
}

export interface RelabelPreview extends RelabelRequest {
  /** Exactly the files whose label changes; files already labeled so are not listed. */
  changes: LabelChange[];
  count: number;
  /** Things to know before confirming (e.g. "another VM uses this file privately"). */
  warnings: string[];
}

export interface RelabelResult extends RelabelRequest {
  changed: number;
  failed: { path: string; error: string }[];
  /** The resource as it is afterwards. */
  resource: VmResource;
}

export interface StaticLabelCheck {
  /** The VM being edited, so that its own pair does not count as "used by another VM". */
  vm?: string;
  label: string;
  relabel: boolean;
}

export interface StaticLabelVerdict {
  /** The label cannot be used: malformed context, categories outside the policy's range … */
  errors: string[];
  /** It can be used but deserves a look: a pair another VM or process holds, relabel no … */
  warnings: string[];
  /** The label private images get from it; null when errors, or when relabel is off. */
  imageLabel: string | null;
  /** The label's and the image label's parts and chips, for display (empty when malformed or absent). */
  processParts: LabelPart[];
  processLevel: McsLevel | null;
  imageParts: LabelPart[];
  imageLevel: McsLevel | null;
}

/**
 * What a new VM gets when its creator says nothing (the create form; `svirt define`): user-mode networking,
 * and a display when it boots an installer ISO. Here rather than in vm-definition so the renderer can import it.
 */
export const NEW_VM_DEFAULTS = { memoryMiB: 2048, vcpus: 2, network: { mode: 'user' } } as const satisfies Partial<VmDefinitionInput>;

// ---------------------------------------------------------------------------------------------------
// Disks, snapshots, changing a VM

export interface CreateDiskRequest {
  /** Absolute path of the new image; never overwritten. */
  path: string;
  format: 'qcow2' | 'raw';
  /** As typed: `20G`, `512M`; binary units, a bare number is MiB. */
  size: string;
}

export interface CreatedDisk {
  path: string;
  format: 'qcow2' | 'raw';
  sizeBytes: number;
}

export type SnapshotOp = 'list' | 'take' | 'revert' | 'delete';

export interface SnapshotInfo {
  name: string;
  /** ISO 8601. */
  date: string;
}

export interface VmSnapshotList {
  vm: string;
  /** QMP while the VM runs, qemu-img (as the user) while it is stopped. */
  via: 'qmp' | 'qemu-img';
  disks: { disk: string; snapshots: SnapshotInfo[] }[];
}

export type VmControlAction = 'pause' | 'resume' | 'reboot';

/** The edit form of a stopped VM; an absent field is left as it is. */
export interface VmEdit {
  vm: string;
  name: string;
  memoryMiB: number;
  vcpus: number;
  /** A path attaches (or replaces) the installer ISO; null detaches it. */
  iso?: string | null;
  network?: 'user' | 'none';
  /** The whole new list (host loopback port → guest port). */
  portForwards?: PortForward[];
  display?: boolean;
  firmware?: 'bios' | 'uefi';
}

// ---------------------------------------------------------------------------------------------------
// Console

export interface ConsoleSession {
  session: string;
  /** Bytes of output produced while no viewer was attached, replayed as consoleData events for this session. */
  replayedBytes: number;
}

// ---------------------------------------------------------------------------------------------------
// Audit (the matrix and problems are src/core/selinux/audit-report's)

export interface AuditVm {
  name: string;
  /** null: qemu runs unconfined (seclabel none). */
  processLabel: string | null;
  /** The pair with its setrans name; when absent the renderer reads the level from processLabel. */
  processLevel?: McsLevel | null;
}

/**
 * Columns: every resource of a running VM, with its label on disk and the running VMs that use it; then the
 * content trees (shared and read-only disks, installer ISOs) of the user's VMs that no running VM uses.
 */
export type AuditResource = AuditMatrix['resources'][number];

export interface AuditReport extends AuditMatrix {
  /**
   * Who answered, in which security model, and why that one: SELinux's kernel (live access checks), the
   * SELinux policy evaluated offline, or the AppArmor profiles the helper loaded for the running VMs.
   */
  source: { kind: 'kernel' | 'evaluator' | 'profiles'; model: 'selinux' | 'apparmor'; modelName: string; why: string };
  /** Rows: the running VMs, unconfined ones included. */
  vms: AuditVm[];
  /** The chip of each column's label, by the column's index (null: no level). */
  resourceLevels: (McsLevel | null)[];
}

// ---------------------------------------------------------------------------------------------------
// Calls

type VmRef = { name: string };

export interface IpcCalls {
  appInfo: { request: void; result: AppInfo };
  hostStatus: { request: void; result: HostStatus };
  listVms: { request: void; result: VmSummary[] };
  getVm: { request: VmRef; result: VmDetails };
  defineVm: { request: VmDefinitionInput; result: VmDefinition };
  deleteVm: { request: VmRef; result: void };
  /** allowUnconfined: the user confirmed starting a VM that SELinux will not confine. */
  startVm: { request: VmRef & { allowUnconfined: boolean }; result: VmSummary };
  /** ACPI power button: the guest decides. */
  shutdownVm: { request: VmRef; result: void };
  forceOffVm: { request: VmRef; result: void };
  previewRelabel: { request: RelabelRequest; result: RelabelPreview };
  applyRelabel: { request: RelabelRequest; result: RelabelResult };
  /** Stops the running applyRelabel of this vm and path; its walk rolls back, and applyRelabel reports it failed. */
  cancelRelabel: { request: { vm: string; path: string }; result: void };
  validateStaticLabel: { request: StaticLabelCheck; result: StaticLabelVerdict };
  /** The static label editor's fields (the model's pieces of a label, with their defaults or `label`'s values). */
  staticLabelForm: { request: { label?: string }; result: StaticLabelForm };
  updateSeclabel: { request: { vm: string; seclabel: SeclabelDefinition }; result: VmDefinition };
  consoleAttach: { request: { vm: string }; result: ConsoleSession };
  /** Keystrokes as the terminal produced them; the main process sends them as UTF-8. */
  consoleInput: { request: { session: string; data: string }; result: void };
  consoleResize: { request: { session: string; cols: number; rows: number }; result: void };
  consoleDetach: { request: { session: string }; result: void };
  /**
   * A byte pipe to the VM's VNC display (RFB end to end between the viewer and qemu). A viewer that asks
   * for an exclusive session makes qemu drop the others, so the newest viewer alone owns input.
   */
  displayAttach: { request: { vm: string }; result: { session: string } };
  /** RFB bytes from the viewer, base64. */
  displayInput: { request: { session: string; data: string }; result: void };
  displayDetach: { request: { session: string }; result: void };
  audit: { request: void; result: AuditReport };
  /** A new image, created as the user with qemu-img. */
  createDisk: { request: CreateDiskRequest; result: CreatedDisk };
  /** The block devices the administrator lets this user give VMs, with size, content and the host's use of them. */
  listDevices: { request: void; result: DeviceChoice[] };
  /** The native file picker (Electron); null when cancelled or where there is none (the page offers a path field). */
  pickDiskFile: { request: void; result: string | null };
  /** Attach an existing image to a stopped VM; its format is read from the image. */
  attachDisk: { request: { vm: string; path: string; class: DiskClass }; result: VmDefinition };
  detachDisk: { request: { vm: string; path: string }; result: VmDefinition };
  /** Name, memory, vCPUs, boot media, network, display and firmware of a stopped VM (a new name renames it). */
  editVm: { request: VmEdit; result: VmDefinition };
  controlVm: { request: VmRef & { action: VmControlAction }; result: VmSummary };
  snapshot: { request: { vm: string; op: SnapshotOp; snapshot?: string }; result: VmSnapshotList };
  /** A stopped VM copied as the user; `note` says when a static label became dynamic. */
  cloneVm: { request: VmRef & { newName: string }; result: { name: string; note: string | null } };
}

export type CallName = keyof IpcCalls;
export type CallRequest<K extends CallName> = IpcCalls[K]['request'];
export type CallResult<K extends CallName> = IpcCalls[K]['result'];

/** Runtime list of call names; typed so that adding a call to IpcCalls without listing it fails to compile. */
export const CALL_NAMES = [
  'appInfo',
  'hostStatus',
  'listVms',
  'getVm',
  'defineVm',
  'deleteVm',
  'startVm',
  'shutdownVm',
  'forceOffVm',
  'previewRelabel',
  'applyRelabel',
  'cancelRelabel',
  'validateStaticLabel',
  'staticLabelForm',
  'updateSeclabel',
  'consoleAttach',
  'consoleInput',
  'consoleResize',
  'consoleDetach',
  'displayAttach',
  'displayInput',
  'displayDetach',
  'audit',
  'createDisk',
  'pickDiskFile',
  'listDevices',
  'attachDisk',
  'detachDisk',
  'editVm',
  'controlVm',
  'snapshot',
  'cloneVm',
] as const satisfies readonly CallName[];
type MissingCall = Exclude<CallName, (typeof CALL_NAMES)[number]>;
const _allCallsListed: MissingCall extends never ? true : never = true;
void _allCallsListed;

/** Channel name on the wire for a call. */
export const channelOf = (name: CallName): string => `svirt:${name}`;

/** Every call as an async function: what the renderer sees and what the main process implements. */
export type SvirtCalls = {
  [K in CallName]: (request: CallRequest<K>) => Promise<CallResult<K>>;
};

/**
 * What a call handler returns on the wire. Electron rewrites thrown errors as "Error invoking remote
 * method …"; an explicit outcome lets the preload rethrow the service's own message.
 */
export type CallOutcome<T = unknown> = { ok: true; result: T } | { ok: false; error: { name: string; message: string } };

/** Runs a service call and settles it into a CallOutcome (main side of every transport). */
export async function settleCall(call: (request: unknown) => Promise<unknown>, request: unknown): Promise<CallOutcome> {
  try {
    return { ok: true, result: await call(request) };
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    return { ok: false, error: { name: error.name, message: error.message } };
  }
}

/** The page side: the result, or the service's own error rethrown. */
export function unwrapOutcome(outcome: CallOutcome): unknown {
  if (outcome.ok) return outcome.result;
  const error = new Error(outcome.error.message);
  error.name = outcome.error.name;
  throw error;
}

// ---------------------------------------------------------------------------------------------------
// Events (main → renderer)

/**
 * What the application menu (and its keyboard shortcuts) asks of the page. The page acts on the VM it
 * shows, exactly as if its own button were pressed, so a menu start of an unconfined VM still asks first.
 */
export type MenuCommand = 'newVm' | 'showVms' | 'startVm' | 'shutdownVm' | 'openConsole' | 'openAudit';

export interface IpcEvents {
  vmStateChanged: { vm: string; state: VmState; pid: number | null };
  /** data is base64: serial output is bytes, and may split a UTF-8 sequence. */
  consoleData: { session: string; data: string };
  consoleEnded: { session: string; vm: string; reason: string };
  /** RFB bytes from qemu, base64. */
  displayData: { session: string; data: string };
  displayEnded: { session: string; reason: string };
  /**
   * Progress of applyRelabel on a tree, keyed by the request's vm and path. The helper labels a tree in
   * one walk, so `total` is 0 (unknown) until the last event, where it equals `done`.
   */
  relabelProgress: { vm: string; path: string; done: number; total: number };
  helperStatus: HelperStatus;
  menuCommand: { command: MenuCommand };
}

export type EventName = keyof IpcEvents;

export const EVENT_NAMES = ['vmStateChanged', 'consoleData', 'consoleEnded', 'displayData', 'displayEnded', 'relabelProgress', 'helperStatus', 'menuCommand'] as const satisfies readonly EventName[];
type MissingEvent = Exclude<EventName, (typeof EVENT_NAMES)[number]>;
const _allEventsListed: MissingEvent extends never ? true : never = true;
void _allEventsListed;

export const eventChannelOf = (name: EventName): string => `svirt:event:${name}`;

export const isEventName = (value: unknown): value is EventName => (EVENT_NAMES as readonly unknown[]).includes(value);

/** One event with its payload, as the services emit it. */
export type SvirtEvent = { [E in EventName]: { event: E; payload: IpcEvents[E] } }[EventName];

export type Unsubscribe = () => void;

/** What the preload exposes as `window.svirt`. */
export type SvirtApi = SvirtCalls & {
  /** Subscribes to a contract event; returns the function that unsubscribes. */
  on<E extends EventName>(event: E, listener: (payload: IpcEvents[E]) => void): Unsubscribe;
};
