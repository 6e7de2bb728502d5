import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Ajv, type ErrorObject } from 'ajv';
import type { Command } from 'commander';
import { evaluateAccess, type AccessAnswer, type AccessDecision } from '../../core/selinux/access/evaluate-access';
import { ContextSyntaxError, parseContext, type SecurityContext } from '../../core/selinux/context';
import { loadAccessPolicy, PolicyQueryError, type LoadedPolicy } from '../../security/selinux/policy-query';
import { CliError, EXIT } from './exit-codes';

/**
 * `svirt access`: would the policy let a subject context use permissions on an object context?
 * One question from the arguments, or many as JSON Lines on stdin with --batch.
 */

/** What the command reads from the host; tests pass their own. */
export interface AccessCommandDeps {
  readonly loadPolicy: (policyPath: string | undefined) => Promise<Pick<LoadedPolicy, 'policy' | 'booleanStates'>>;
  readonly input: () => NodeJS.ReadableStream;
  readonly write: (text: string) => void;
}

const HOST_DEPS: AccessCommandDeps = {
  loadPolicy: (policyPath) => loadAccessPolicy(policyPath === undefined ? {} : { policyPath }),
  input: () => process.stdin,
  write: (text) => process.stdout.write(text),
};

export const DECISION_EXIT: Readonly<Record<AccessDecision, number>> = { allowed: EXIT.ok, denied: EXIT.negative, unknown: EXIT.unknown };

const HELP_AFTER = `
PERM is one permission or several separated by commas (read,open). All must be allowed for "allowed".
The decision follows the kernel: a TE allow rule in effect for every permission (conditional rules per
their boolean's state), and every constrain/mlsconstrain of the class holding. "unknown" means the
policy data cannot settle it (the reason says why).

--batch reads JSON Lines on stdin, one request a line:
  {"scontext": "...", "tcontext": "...", "tclass": "file", "perms": ["read"]}
and prints one line per line read, in order: {"decision": "allowed"|"denied"|"unknown", "reason": "..."},
or {"error": "..."} for a malformed line (the batch goes on).

Exit codes: 0 allowed, 1 denied, 3 unknown (or the policy could not be loaded), 2 bad input.
With --batch: 0 once every line is answered.`;

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

function parseContextArgument(field: 'scontext' | 'tcontext', text: string): SecurityContext {
  try {
    return parseContext(text);
  } catch (e) {
    if (e instanceof ContextSyntaxError) throw new CliError(`${field}: ${e.message}`);
    throw e;
  }
}

function parsePerms(text: string): string[] {
  const perms = text.split(',');
  const bad = perms.find((perm) => !PERMISSION.test(perm));
  if (bad !== undefined) throw new CliError(`PERM: "${bad}" is not a permission name (give PERM[,PERM…], e.g. read,open)`);
  return perms;
}

async function loadPolicy(policyPath: string | undefined, deps: AccessCommandDeps): Promise<Pick<LoadedPolicy, 'policy' | 'booleanStates'>> {
  if (policyPath !== undefined) {
    try {
      await stat(policyPath);
    } catch (e) {
      throw new CliError(`--policy: cannot read ${policyPath}: ${(e as Error).message}`);
    }
  }
  try {
    return await deps.loadPolicy(policyPath);
  } catch (e) {
    if (e instanceof PolicyQueryError) throw new CliError(`cannot load the policy: ${e.message}`, EXIT.unknown);
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
 * A class or permission the policy does not define is bad input (exit 2), not an undecidable
 * question: the message names the policy's classes, or the class's permissions, nearest first.
 */
export function checkClassAndPerms(policy: Pick<LoadedPolicy, 'policy'>['policy'], tclass: string, perms: readonly string[]): string | undefined {
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

function answer(loaded: Pick<LoadedPolicy, 'policy' | 'booleanStates'>, scontext: SecurityContext, tcontext: SecurityContext, tclass: string, perms: readonly string[]): AccessAnswer {
  const options = loaded.booleanStates ? { booleanStates: loaded.booleanStates } : {};
  return evaluateAccess(loaded.policy, { scontext, tcontext, tclass, perms }, options);
}

/** One JSON Lines request to its one output line (without the newline). */
export function answerBatchLine(loaded: Pick<LoadedPolicy, 'policy' | 'booleanStates'>, line: string): string {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch (e) {
    return JSON.stringify({ error: line.trim() === '' ? 'empty line' : `not JSON: ${(e as Error).message}` });
  }
  if (!validateRequest(request)) return JSON.stringify({ error: describeSchemaErrors(validateRequest.errors) });
  let scontext: SecurityContext;
  let tcontext: SecurityContext;
  try {
    scontext = parseContext(request.scontext);
  } catch (e) {
    if (e instanceof ContextSyntaxError) return JSON.stringify({ error: `scontext: ${e.message}` });
    throw e;
  }
  try {
    tcontext = parseContext(request.tcontext);
  } catch (e) {
    if (e instanceof ContextSyntaxError) return JSON.stringify({ error: `tcontext: ${e.message}` });
    throw e;
  }
  const badName = checkClassAndPerms(loaded.policy, request.tclass, request.perms);
  if (badName !== undefined) return JSON.stringify({ error: badName });
  const result = answer(loaded, scontext, tcontext, request.tclass, request.perms);
  return JSON.stringify({ decision: result.decision, reason: result.reason });
}

export interface AccessOptions {
  readonly batch?: boolean;
  readonly policy?: string;
  readonly json?: boolean;
}

/** Runs `svirt access`; returns the exit code. */
export async function runAccess(args: readonly string[], options: AccessOptions, deps: AccessCommandDeps = HOST_DEPS): Promise<number> {
  if (options.batch) {
    if (args.length > 0) throw new CliError('--batch reads its requests from stdin; give no SCON TCON CLASS PERM arguments');
    const loaded = await loadPolicy(options.policy, deps);
    const lines = createInterface({ input: deps.input(), crlfDelay: Infinity });
    let pending: string[] = [];
    for await (const line of lines) {
      pending.push(answerBatchLine(loaded, line));
      // Written in chunks: one write per line costs more than the evaluation itself.
      if (pending.length >= 256) {
        deps.write(`${pending.join('\n')}\n`);
        pending = [];
      }
    }
    if (pending.length > 0) deps.write(`${pending.join('\n')}\n`);
    return EXIT.ok;
  }

  const [scon, tcon, tclass, permText] = args;
  if (scon === undefined || tcon === undefined || tclass === undefined || permText === undefined) {
    throw new CliError('give SCON TCON CLASS PERM[,PERM…], or --batch');
  }
  const scontext = parseContextArgument('scontext', scon);
  const tcontext = parseContextArgument('tcontext', tcon);
  if (!PERMISSION.test(tclass)) throw new CliError(`CLASS: "${tclass}" is not a class name`);
  const perms = parsePerms(permText);
  const loaded = await loadPolicy(options.policy, deps);
  const badName = checkClassAndPerms(loaded.policy, tclass, perms);
  if (badName !== undefined) throw new CliError(badName);
  const result = answer(loaded, scontext, tcontext, tclass, perms);
  const { decision, reason, source } = result;
  deps.write(options.json ? `${JSON.stringify({ decision, reason, source })}\n` : `${decision}: ${reason}\n(${source})\n`);
  return DECISION_EXIT[result.decision];
}

export function registerAccessCommand(program: Command, deps: AccessCommandDeps = HOST_DEPS): void {
  program
    .command('access')
    .description('decide whether a subject context may use permissions on an object context, by the SELinux policy')
    .argument('[scon]', 'subject (process) context, e.g. system_u:system_r:svirt_t:s0:c1,c2')
    .argument('[tcon]', 'object context, e.g. system_u:object_r:svirt_image_t:s0:c1,c2')
    .argument('[class]', 'object class, e.g. file')
    .argument('[perm]', 'permission(s), comma-separated, e.g. read,open')
    .option('--batch', 'read JSON Lines requests on stdin, print one JSON answer per line')
    .option('--policy <file>', 'binary policy file (default: the installed one, /etc/selinux/<SELINUXTYPE>/policy/policy.<N>)')
    .option('--json', 'print the answer as JSON ({decision, reason, source})')
    .addHelpText('after', HELP_AFTER)
    .action(async (scon: string | undefined, tcon: string | undefined, tclass: string | undefined, perm: string | undefined, options: AccessOptions) => {
      const args = [scon, tcon, tclass, perm].filter((a): a is string => a !== undefined);
      process.exitCode = await runAccess(args, options, deps);
    });
}
