/**
 * SELinux's two answers to "may this subject use this object?", as access oracles for the audit
 * (src/core/selinux/audit-report.ts): the running kernel's security server, and the installed policy
 * evaluated offline. Both take contexts as the kernel writes them; parsing them is this model's business,
 * not the audit's.
 */
import { evaluateAccess } from '../../core/selinux/access/evaluate-access';
import type { AccessOracle } from '../../core/selinux/audit-report';
import { parseContext } from '../../core/selinux/context';
import { SELINUXFS } from './host-selinux';
import { KernelAccess } from './kernel-access';
import { loadAccessPolicy } from './policy-query';

/** The kernel as an access oracle (errors are 'error' verdicts, never denials). */
export function kernelOracle(selinuxfs: string = SELINUXFS): AccessOracle {
  const kernel = new KernelAccess(selinuxfs);
  return (scontext, tcontext, tclass, perms) => kernel.check(scontext, tcontext, tclass, perms);
}

/** The offline evaluator on a policy file as an access oracle. */
export async function evaluatorOracle(options: { policyPath?: string; booleanStates?: ReadonlyMap<string, boolean> } = {}): Promise<{ oracle: AccessOracle; policyPath: string }> {
  const loaded = await loadAccessPolicy(options.policyPath === undefined ? {} : { policyPath: options.policyPath });
  const booleanStates = options.booleanStates ?? loaded.booleanStates;
  const oracle: AccessOracle = async (s, t, tclass, perms) =>
    evaluateAccess(loaded.policy, { scontext: parseContext(s), tcontext: parseContext(t), tclass, perms }, booleanStates ? { booleanStates } : {});
  return { oracle, policyPath: loaded.policyPath };
}
