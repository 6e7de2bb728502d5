/**
 * The installed policy's VM domain and image types (src/labeling/seclabel-rules.ts says how they are
 * chosen), from one `seinfo POLICY -x -a` run. The helper asks once per session, on its first start;
 * when the policy cannot be read it falls back to the context files' own types and says so.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { PolicyProfile } from '../labeling/policy-profile';
import { parseSeinfoAttributes, vmTypeSets, type VmTypeSets } from '../labeling/seclabel-rules';
import { defaultPolicyPath } from './policy-query';
import { SELINUX_ROOT } from './selinux-files';

const run = promisify(execFile);

export async function loadVmTypeSets(profile: PolicyProfile, options: { policyPath?: string; selinuxRoot?: string } = {}): Promise<VmTypeSets> {
  let policyPath: string;
  try {
    policyPath = options.policyPath ?? (await defaultPolicyPath(options.selinuxRoot ?? SELINUX_ROOT));
  } catch (err) {
    return vmTypeSets(profile, undefined, `the policy could not be found (${(err as Error).message})`);
  }
  let stdout: string;
  try {
    // The path goes first (seinfo's optional-value options would take it otherwise).
    ({ stdout } = await run('seinfo', [policyPath, '-x', '-a'], { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return vmTypeSets(profile, undefined, missing ? 'seinfo (setools) is not installed' : `seinfo could not read ${policyPath}`);
  }
  const attributes = parseSeinfoAttributes(stdout);
  if (attributes.size === 0) return vmTypeSets(profile, undefined, `seinfo listed no attributes in ${policyPath}`);
  const sets = vmTypeSets(profile, attributes);
  return { ...sets, note: `${sets.note} (${policyPath})` };
}
