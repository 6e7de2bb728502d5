/**
 * The helper's wire protocol: JSON Lines over the helper's stdin/stdout, a channel only its parent holds.
 *
 *   request  {"id": 1, "verb": "status", "args": {}}
 *   response {"id": 1, "ok": true, "result": {...}}  |  {"id": 1, "ok": false, "error": {"code", "message"}}
 *   event    {"event": "console-data", "data": {...}}   (no id; progress and console bytes)
 *
 * Every request is validated against its verb's schema before anything runs.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import type { AppArmorMode } from '../core/apparmor/vm-profile';
import type { Confinement } from '../core/confinement';
import type { VmDefinition, VmDefinitionInput } from '../core/vm-definition';
import type { SelinuxMode } from '../security/selinux/host-selinux';
import type { DeviceChoice } from '../host/block-devices';
import type { WindowSize } from './console-protocol';
import type { ConfinementDescription, ModelStateName, SecurityModelId } from './security-description';

/** Longest request line accepted; longer lines are refused before parsing. */
export const MAX_LINE_BYTES = 1024 * 1024;

export type ErrorCode =
  | 'bad-json'
  | 'bad-request'
  | 'unknown-verb'
  | 'line-too-long'
  | 'refused'
  | 'conflict'
  | 'not-found'
  | 'failed';

export interface RequestEnvelope {
  id: number | string;
  verb: string;
  args: Record<string, unknown>;
}

export interface ResponseOk {
  id: number | string;
  ok: true;
  result: unknown;
}

export interface ResponseError {
  id: number | string | null;
  ok: false;
  error: { code: ErrorCode; message: string };
}

export interface EventMessage {
  event: string;
  data: unknown;
}

export type HelperMessage = ResponseOk | ResponseError | EventMessage;

/** An error meant for the requester, with a protocol code. */
export class HelperError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'HelperError';
  }
}

const envelopeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'verb'],
  properties: {
    id: { anyOf: [{ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, { type: 'string', minLength: 1, maxLength: 64 }] },
    verb: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[a-z][a-zA-Z-]*$' },
    args: { type: 'object' },
  },
} as const;

export const ajv = new Ajv({ allErrors: false, strict: true });
const validateEnvelope = ajv.compile<RequestEnvelope>(envelopeSchema);

export function describeAjvError(validate: ValidateFunction): string {
  const e = validate.errors?.[0];
  if (!e) return 'invalid';
  const where = e.instancePath === '' ? 'request' : e.instancePath;
  const extra = e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : '';
  return `${where} ${e.message ?? 'is invalid'}${extra}`;
}

/** Parses one request line; throws HelperError with the code to answer with. */
export function parseRequestLine(line: string): RequestEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new HelperError('bad-json', `request is not valid JSON: ${(err as Error).message}`);
  }
  if (!validateEnvelope(value)) throw new HelperError('bad-request', describeAjvError(validateEnvelope));
  return { id: value.id, verb: value.verb, args: value.args ?? {} };
}

/** Best effort to answer a malformed request with its own id. */
export function salvageId(line: string): number | string | null {
  try {
    const value = JSON.parse(line) as { id?: unknown };
    if (typeof value.id === 'number' && Number.isSafeInteger(value.id)) return value.id;
    if (typeof value.id === 'string' && value.id.length <= 64) return value.id;
  } catch {
    // not JSON: no id to give back
  }
  return null;
}

/** A running VM as the helper reports it (the answer of `list`, `start`, `status`). */
export interface RunInfo {
  id: string;
  name: string;
  ownerUid: number;
  state: 'starting' | 'running' | 'stopping';
  pid: number | null;
  processLabel: string | null;
  imageLabel: string | null;
  level: string | null;
  /** How qemu is held now (see src/core/confinement.ts). */
  confinement: Confinement;
  /** confinement === 'confined': the kernel enforces and qemu runs in its label. */
  confined: boolean;
  /** Why not confined (permissive, disabled, seclabel none); null when confined. */
  notConfinedReason: string | null;
  accel: 'kvm' | 'tcg';
  startedAt: string;
  runDir: string;
  seclabelMode: VmDefinition['seclabel']['mode'];
  /** How the host's security models confine this VM, as data to show (its model, labels, parts, words). */
  security: ConfinementDescription;
}

// ---------------------------------------------------------------------------------------------------
// Verbs

/** The helper's own view of the host (the answer of `status`). */
export interface HelperHostStatus {
  version: string;
  /** The security model that confines this host's VMs (MAC), its state now, and the models stacked (MAC, then DAC). */
  security: { model: SecurityModelId; modelName: string; state: ModelStateName; layers: SecurityModelId[] };
  selinux: SelinuxMode;
  policy: {
    type: string | null;
    fallback: boolean;
    processType: string;
    tcgProcessType: string | null;
    imageType: string;
    contentType: string;
    notes: readonly string[];
  };
  accel: { kind: 'kvm' | 'tcg'; reason: string };
  requesterUid: number;
  stateDir: string;
}

/** A file given a VM's private label, as the label journal records it. */
export interface LabeledFile {
  path: string;
  dev: number;
  ino: number;
  original: string | null;
  /** The label set; null when only the owner changed (a model that labels no files). */
  applied: string | null;
  kind: string;
  holder: string;
  at: string;
  owner?: { uid: number; gid: number };
}

/** `relabel` answers by mode: restore, a shared or read-only tree, or one private file. */
export type RelabelOutcome =
  | { readonly restored: number; readonly skipped: { path: string; reason: string }[] }
  | { readonly labeled: number; readonly skippedSymlinksAndSpecial: string[] }
  | LabeledFile;

export interface StopResult {
  id: string;
  forced: boolean;
  restoredFiles: number;
}

/**
 * A running VM's AppArmor profile as the helper loaded it (the answer of `vmProfiles`): what the audit
 * reads under AppArmor, where the profile's rules are the whole answer to "may this VM open that file?".
 */
export interface VmProfileReport {
  /** The VM, `uid/name`. */
  vm: string;
  name: string;
  ownerUid: number;
  /** Its profile's name; null when it has none (SELinux confines it, seclabel none, AppArmor off). */
  profile: string | null;
  /** Whether the kernel holds the profile now (securityfs); null when that list cannot be read. */
  loaded: boolean | null;
  /** The loaded profile's mode, as the kernel lists it. */
  mode: AppArmorMode | null;
  /** What the VM's qemu runs as now, as the kernel says (`svirt-vm-1000-a (enforce)`, `unconfined`); null when unknown. */
  qemu: string | null;
  /** The profile's text, as the helper loaded it with apparmor_parser; null when none is stored. */
  text: string | null;
}

type VmArg = { vm: string };
type NoArgs = Record<string, never>;

/**
 * The one map of the helper protocol: each verb's arguments and result. The helper's verb table is typed
 * from it (a verb missing there, or one it does not list, fails the build) and the client's `request` takes
 * and returns these types, so both ends of the JSON Lines channel are checked against the same shape, as
 * ipc-contract.ts holds the renderer's calls. The helper's schemas still check every request at run time:
 * the types say what a well-behaved client sends, never what the helper may assume.
 */
export interface HelperVerbs {
  status: { args: NoArgs; result: HelperHostStatus };
  list: { args: NoArgs; result: RunInfo[] };
  reconcile: { args: NoArgs; result: { cleanedUp: string[]; restoredFiles: number } };
  /** reservedLevels: static labels of the requester's stopped VMs, which no dynamic pair may take. */
  start: { args: { definition: VmDefinition | VmDefinitionInput; allowUnconfined?: boolean; reservedLevels?: string[] }; result: RunInfo };
  stop: { args: VmArg & { force?: boolean; timeoutMs?: number }; result: StopResult };
  forceOff: { args: VmArg; result: StopResult };
  control: { args: VmArg & { action: 'pause' | 'resume' | 'reboot' }; result: { id: string; status: string; running: boolean } };
  snapshot: {
    args: VmArg & { op: 'list' | 'take' | 'delete' | 'revert'; name?: string };
    /** Each disk's snapshots as qemu's query-named-block-nodes reports them. */
    result: { id: string; disks: { disk: string; snapshots: Record<string, unknown>[] }[] };
  };
  /** job: the requester's own id for a tree walk, which cancelRelabel stops. */
  relabel: { args: { path: string; mode: 'shared' | 'readonly' | 'private' | 'restore'; vm?: string; job?: string }; result: RelabelOutcome };
  cancelRelabel: { args: { job: string }; result: { cancelled: string } };
  checkDevice: {
    args: { path: string; class?: 'private' | 'shared' | 'readonly' };
    result: { path: string; node: string; majMin: string; sizeBytes: number; content: string | null };
  };
  listDevices: { args: NoArgs; result: DeviceChoice[] };
  consoleAttach: {
    args: VmArg & { resumeFrom?: number | null };
    result: { session: string; vm: string; offset: number; replayedBytes: number; dropped: number; size: WindowSize | null };
  };
  consoleInput: { args: { session: string; data: string; encoding?: 'utf8' | 'base64' }; result: null };
  consoleResize: { args: { session: string; cols: number; rows: number }; result: null };
  consoleDetach: { args: { session: string }; result: null };
  displayAttach: { args: VmArg; result: { session: string; vm: string } };
  displayInput: { args: { session: string; data: string }; result: null };
  displayDetach: { args: { session: string }; result: null };
  /** The loaded AppArmor profiles of the requester's running VMs (root: every VM's). */
  vmProfiles: { args: NoArgs; result: { enabled: boolean; vms: VmProfileReport[] } };
}

export type HelperVerb = keyof HelperVerbs;
export type Args<K extends HelperVerb> = HelperVerbs[K]['args'];
export type Result<K extends HelperVerb> = HelperVerbs[K]['result'];

/** Runtime list of verbs; typed so that a verb added to HelperVerbs without listing it fails to compile. */
export const HELPER_VERBS = [
  'status', 'list', 'reconcile', 'start', 'stop', 'forceOff', 'control', 'snapshot', 'relabel', 'cancelRelabel',
  'checkDevice', 'listDevices', 'consoleAttach', 'consoleInput', 'consoleResize', 'consoleDetach',
  'displayAttach', 'displayInput', 'displayDetach', 'vmProfiles',
] as const satisfies readonly HelperVerb[];
type MissingVerb = Exclude<HelperVerb, (typeof HELPER_VERBS)[number]>;
const _allVerbsListed: MissingVerb extends never ? true : never = true;
void _allVerbsListed;
