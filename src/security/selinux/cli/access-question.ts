/**
 * `svirt access` on the SELinux side: would the policy let a subject context use permissions on an
 * object context? The contexts, class and permissions are parsed and checked against the policy here,
 * and one JSON Lines request of --batch is answered here; the CLI only reads arguments and stdin, writes
 * the answers and turns the decision into an exit code.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { evaluateAccess, type AccessAnswer, type AccessRequest } from '../../../core/selinux/access/evaluate-access';
import { ContextSyntaxError, parseContext, type SecurityContext } from '../../../core/selinux/context';
import { loadAccessPolicy, PolicyQueryError, type LoadedPolicy } from '../policy-query';
import { SelinuxQuestionError } from './question-error';

/** The policy as the access questions need it. */
export type LoadedAccessPolicy = Pick<LoadedPolicy, 'policy' | 'booleanStates'>;

/** Loads the policy at a path, or the installed one. */
export type LoadAccessPolicy = (policyPath: string | undefined) => Promise<LoadedAccessPolicy>;

export const loadHostAccessPolicy: LoadAccessPolicy = (policyPath) => loadAccessPolicy(policyPath === undefined ? {} : { policyPath });

const PERMISSION = /^[A-Za-z_][A-Za-z0-9_]*$/;

const requestSchema = {
  type: 'object',
  properties: {
    scontext: { type: 'string', minLength: 1 },
    tcontext: { type: 'string', minLength: 1 },
    tclass: { type: 'string', pattern: PERMISSION.source },
    perms: { type: 'array', minItems: 1, items: { type: 'string', pattern: PERMISSION.source } },
  },
  required: ['scontext', 'tcontext', 'tclass', 'perms'],
  additionalProperties: false,
} as const;

interface BatchRequest {
  scontext: string;
  tcontext: string;
  tclass: string;
  perms: string[];
}

const validateRequest = new Ajv({ allErrors: true }).compile<BatchRequest>(requestSchema);

function describeSchemaErrors(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => {
      const where = e.instancePath === '' ? 'request' : e.instancePath.slice(1).replace(/\//g, '.');
      const extra = e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : '';
      return `${where} ${e.message ?? 'is invalid'}${extra}`;
    })
    .join('; ');
}

function parseContextField(field: 'scontext' | 'tcontext', text: string): SecurityContext {
  try {
    return parseContext(text);
  } catch (e) {
    if (e instanceof ContextSyntaxError) throw new SelinuxQuestionError(`${field}: ${e.message}`);
    throw e;
  }
}

function parsePerms(text: string): string[] {
  const perms = text.split(',');
  const bad = perms.find((perm) => !PERMISSION.test(perm));
  if (bad !== undefined) throw new SelinuxQuestionError(`PERM: "${bad}" is not a permission name (give PERM[,PERM…], e.g. read,open)`);
  return perms;
}

/** The question the arguments SCON TCON CLASS PERM[,PERM…] ask; bad input names the argument. */
export function parseAccessRequest(scon: string, tcon: string, tclass: string, permText: string): AccessRequest {
  const scontext = parseContextField('scontext', scon);
  const tcontext = parseContextField('tcontext', tcon);
  if (!PERMISSION.test(tclass)) throw new SelinuxQuestionError(`CLASS: "${tclass}" is not a class name`);
  return { scontext, tcontext, tclass, perms: parsePerms(permText) };
}

/** The policy from the loader; one that cannot be loaded leaves every question unknown. */
export async function loadPolicyForQuestions(policyPath: string | undefined, load: LoadAccessPolicy): Promise<LoadedAccessPolicy> {
  try {
    return await load(policyPath);
  } catch (e) {
    if (e instanceof PolicyQueryError) throw new SelinuxQuestionError(`cannot load the policy: ${e.message}`, 'unknown');
    throw e;
  }
}

/** Names nearest to a misspelling first (edit distance), so the likely one leads the list. */
function byCloseness(wanted: string, names: Iterable<string>): string[] {
  const distance = (a: string, b: string): number => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) {
        next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
      row = next;
    }
    return row[b.length] ?? 0;
  };
  return [...names].sort((x, y) => distance(wanted, x) - distance(wanted, y) || x.localeCompare(y));
}

/**
 * A class or permission the policy does not define is bad input, not an undecidable question: the
 * message names the policy's classes, or the class's permissions, nearest first.
 */
export function checkClassAndPerms(policy: LoadedAccessPolicy['policy'], tclass: string, perms: readonly string[]): string | undefined {
  const classes = policy.symbols.classes;
  if (classes.size === 0) return undefined;
  const classPerms = classes.get(tclass);
  if (!classPerms) {
    const known = byCloseness(tclass, classes.keys());
    return `CLASS: "${tclass}" is not a class of this policy (did you mean ${known[0]}?); its classes are: ${known.join(', ')}`;
  }
  const unknown = perms.filter((perm) => !classPerms.has(perm));
  if (unknown.length === 0) return undefined;
  const first = unknown[0] as string;
  const known = byCloseness(first, classPerms);
  return `PERM: ${unknown.map((p) => `"${p}"`).join(', ')} ${unknown.length === 1 ? 'is not a permission' : 'are not permissions'} of class ${tclass} (did you mean ${known[0]}?); its permissions are: ${[...classPerms].sort().join(', ')}`;
}

function evaluate(loaded: LoadedAccessPolicy, question: AccessRequest): AccessAnswer {
  const options = loaded.booleanStates ? { booleanStates: loaded.booleanStates } : {};
  return evaluateAccess(loaded.policy, question, options);
}

/** The policy's answer to one question; a class or permission it does not define is bad input. */
export function answerAccessRequest(loaded: LoadedAccessPolicy, question: AccessRequest): AccessAnswer {
  const badName = checkClassAndPerms(loaded.policy, question.tclass, question.perms);
  if (badName !== undefined) throw new SelinuxQuestionError(badName);
  return evaluate(loaded, question);
}

/** One JSON Lines request to its one output line (without the newline). */
export function answerBatchLine(loaded: LoadedAccessPolicy, line: string): string {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch (e) {
    return JSON.stringify({ error: line.trim() === '' ? 'empty line' : `not JSON: ${(e as Error).message}` });
  }
  if (!validateRequest(request)) return JSON.stringify({ error: describeSchemaErrors(validateRequest.errors) });
  let question: AccessRequest;
  try {
    question = { scontext: parseContextField('scontext', request.scontext), tcontext: parseContextField('tcontext', request.tcontext), tclass: request.tclass, perms: request.perms };
  } catch (e) {
    if (e instanceof SelinuxQuestionError) return JSON.stringify({ error: e.message });
    throw e;
  }
  const badName = checkClassAndPerms(loaded.policy, question.tclass, question.perms);
  if (badName !== undefined) return JSON.stringify({ error: badName });
  const result = evaluate(loaded, question);
  return JSON.stringify({ decision: result.decision, reason: result.reason });
}
