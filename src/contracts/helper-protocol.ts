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
import type { Confinement } from '../core/confinement';
import type { VmDefinition } from '../core/vm-definition';

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
}
