import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { AccessDecision } from '../../core/selinux/access/evaluate-access';
import { SELINUX_EXAMPLES } from '../../core/selinux/label-examples';
import {
  answerAccessRequest, answerBatchLine, loadHostAccessPolicy, loadPolicyForQuestions, parseAccessRequest,
  type LoadAccessPolicy, type LoadedAccessPolicy,
} from '../../security/selinux/cli/access-question';
import { cliErrorOf } from './selinux-questions';
import { CliError, EXIT } from './exit-codes';

/**
 * `svirt access`: would the policy let a subject context use permissions on an object context?
 * One question from the arguments, or many as JSON Lines on stdin with --batch. The SELinux side
 * (src/security/selinux/cli/access-question.ts) parses and answers; this reads the arguments and stdin,
 * writes the answers and sets the exit code.
 */

/** What the command reads from the host; tests pass their own. */
export interface AccessCommandDeps {
  readonly loadPolicy: LoadAccessPolicy;
  readonly input: () => NodeJS.ReadableStream;
  readonly write: (text: string) => void;
}

const HOST_DEPS: AccessCommandDeps = {
  loadPolicy: loadHostAccessPolicy,
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

async function loadPolicy(policyPath: string | undefined, deps: AccessCommandDeps): Promise<LoadedAccessPolicy> {
  if (policyPath !== undefined) {
    try {
      await stat(policyPath);
    } catch (e) {
      throw new CliError(`--policy: cannot read ${policyPath}: ${(e as Error).message}`);
    }
  }
  return cliErrorOf(() => loadPolicyForQuestions(policyPath, deps.loadPolicy));
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
  const question = await cliErrorOf(async () => parseAccessRequest(scon, tcon, tclass, permText));
  const loaded = await loadPolicy(options.policy, deps);
  const result = await cliErrorOf(async () => answerAccessRequest(loaded, question));
  const { decision, reason, source } = result;
  deps.write(options.json ? `${JSON.stringify({ decision, reason, source })}\n` : `${decision}: ${reason}\n(${source})\n`);
  return DECISION_EXIT[result.decision];
}

export function registerAccessCommand(program: Command, deps: AccessCommandDeps = HOST_DEPS): void {
  program
    .command('access')
    .description('decide whether a subject context may use permissions on an object context, by the SELinux policy')
    .argument('[scon]', `subject (process) context, e.g. ${SELINUX_EXAMPLES.processLabel}`)
    .argument('[tcon]', `object context, e.g. ${SELINUX_EXAMPLES.imageLabel}`)
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
