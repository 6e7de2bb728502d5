import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { evaluateAccess } from '../labeling/access/evaluate-access';
import { buildAuditMatrix, type AccessOracle, type AuditedVm, type AuditMatrix } from '../labeling/audit-report';
import { parseContext } from '../labeling/context';
import type { SelinuxMode } from './host-selinux';
import { loadAccessPolicy } from './policy-query';

const run = promisify(execFile);

export interface AuditSource {
  kind: 'kernel' | 'evaluator';
  why: string;
}

/**
 * The kernel's own answer through libselinux (`selinux_check_access`, exit 0 = allowed), one process
 * per permission set; only meaningful on a host where SELinux is on.
 */
const kernelOracle: AccessOracle = async (scontext, tcontext, tclass, perms) => {
  for (const perm of perms) {
    try {
      await run('selinux_check_access', [scontext, tcontext, tclass, perm]);
    } catch {
      return { decision: 'denied', reason: `the kernel denies ${tclass} ${perm}` };
    }
  }
  return { decision: 'allowed', reason: `the kernel allows ${tclass} { ${perms.join(' ')} }` };
};

/** Audit of running VMs: from the kernel when SELinux is on, else from the installed policy, offline. */
export async function auditRunningVms(mode: SelinuxMode, vms: readonly AuditedVm[]): Promise<AuditMatrix & { source: AuditSource }> {
  if (mode !== 'disabled') {
    const source: AuditSource = { kind: 'kernel', why: `SELinux is ${mode}: the kernel's security server answers each check` };
    return { ...(await buildAuditMatrix(mode, vms, kernelOracle)), source };
  }
  const loaded = await loadAccessPolicy();
  const oracle: AccessOracle = async (s, t, tclass, perms) => {
    const options = loaded.booleanStates ? { booleanStates: loaded.booleanStates } : {};
    return evaluateAccess(loaded.policy, { scontext: parseContext(s), tcontext: parseContext(t), tclass, perms }, options);
  };
  const source: AuditSource = { kind: 'evaluator', why: `SELinux is disabled in this kernel: the installed policy (${loaded.policyPath}) is evaluated offline, TE rules and constraints` };
  return { ...(await buildAuditMatrix(mode, vms, oracle)), source };
}
