/**
 * Reads the installed SELinux policy's configuration files for the pure code in src/core/selinux: the
 * config naming the policy, the virtual_*_context files and mcstrans' setrans.conf. A missing file is
 * `undefined` (the labeling code decides what that means); any other read error is thrown.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  buildPolicyProfile, readSelinuxConfigValue, type CategoryRange, type PolicyFiles, type PolicyProfile,
} from '../../core/selinux/policy-profile';

export const SELINUX_ROOT = '/etc/selinux';

export type SelinuxFiles = PolicyFiles & { readonly setransConf?: string };

// SELINUXTYPE becomes a directory name: no separators, no `.` or `..`.
const POLICY_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** The policy type named by `<root>/config`, or undefined when the file or the key is absent. */
export function policyTypeOf(files: SelinuxFiles): string | undefined {
  return files.selinuxConfig === undefined ? undefined : readSelinuxConfigValue(files.selinuxConfig, 'SELINUXTYPE') || undefined;
}

export async function readPolicyFiles(root: string = SELINUX_ROOT): Promise<SelinuxFiles> {
  const selinuxConfig = await readIfPresent(join(root, 'config'));
  if (selinuxConfig === undefined) return {};
  const policyType = policyTypeOf({ selinuxConfig });
  if (policyType === undefined) return { selinuxConfig };
  if (!POLICY_NAME.test(policyType)) throw new Error(`${join(root, 'config')}: SELINUXTYPE "${policyType}" is not a policy name`);

  const policyDir = join(root, policyType);
  const [virtualDomainContext, virtualImageContext, setransConf] = await Promise.all([
    readIfPresent(join(policyDir, 'contexts', 'virtual_domain_context')),
    readIfPresent(join(policyDir, 'contexts', 'virtual_image_context')),
    readIfPresent(join(policyDir, 'setrans.conf')),
  ]);
  return {
    selinuxConfig,
    ...(virtualDomainContext === undefined ? {} : { virtualDomainContext }),
    ...(virtualImageContext === undefined ? {} : { virtualImageContext }),
    ...(setransConf === undefined ? {} : { setransConf }),
  };
}

/** The policy profile of the installed policy (built-in defaults stand in for missing files). */
export async function loadPolicyProfile(root: string = SELINUX_ROOT, categoryRange?: CategoryRange): Promise<PolicyProfile> {
  return buildPolicyProfile(await readPolicyFiles(root), categoryRange);
}
