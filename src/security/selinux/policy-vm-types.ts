/**
 * The installed policy's VM domain and image types (src/core/selinux/seclabel-rules.ts says how they are
 * chosen), from one `seinfo POLICY -x -a` run. The helper asks once per session, on its first start;
 * when the policy cannot be read it falls back to the context files' own types and says so.
 *
 * seinfo takes about 3 s here and minutes on a slow host (TCG), so its attribute list is kept in a cache
 * file in the helper's root-only state directory, keyed by the policy file's identity (path, device,
 * inode, size, mtime): a rebuilt or reloaded policy (semodule writes a new file) is read again.
 */
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { readJsonFile, writeFileAtomic } from '../../host/atomic-file';
import type { PolicyProfile } from '../../core/selinux/policy-profile';
import { parseSeinfoAttributes, vmTypeSets, type VmTypeSets } from '../../core/selinux/seclabel-rules';
import { defaultPolicyPath } from './policy-query';
import { SELINUX_ROOT } from './selinux-files';

const run = promisify(execFile);

export interface VmTypeOptions {
  policyPath?: string;
  selinuxRoot?: string;
  /** Where seinfo's answer is kept between helper sessions (none: seinfo runs every time). */
  cacheFile?: string;
}

interface CachedAttributes {
  policy: string;
  attributes: [string, string[]][];
}

async function policyIdentity(policyPath: string): Promise<string | null> {
  const st = await stat(policyPath).catch(() => null);
  return st === null ? null : `${policyPath}:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

async function cachedAttributes(cacheFile: string, identity: string): Promise<Map<string, string[]> | null> {
  // A cache that cannot be read or parsed is only a slower start: seinfo answers again.
  const cached = (await readJsonFile(cacheFile).catch(() => undefined)) as CachedAttributes | undefined;
  if (cached?.policy !== identity || !Array.isArray(cached.attributes)) return null;
  return new Map(cached.attributes);
}

export async function loadVmTypeSets(profile: PolicyProfile, options: VmTypeOptions = {}): Promise<VmTypeSets> {
  let policyPath: string;
  try {
    policyPath = options.policyPath ?? (await defaultPolicyPath(options.selinuxRoot ?? SELINUX_ROOT));
  } catch (err) {
    return vmTypeSets(profile, undefined, `the policy could not be found (${(err as Error).message})`);
  }
  const identity = options.cacheFile === undefined ? null : await policyIdentity(policyPath);
  const cached = identity === null || options.cacheFile === undefined ? null : await cachedAttributes(options.cacheFile, identity);
  if (cached !== null) return withNote(vmTypeSets(profile, cached), policyPath);
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
  if (identity !== null && options.cacheFile !== undefined) {
    const entry: CachedAttributes = { policy: identity, attributes: [...attributes] };
    await writeFileAtomic(options.cacheFile, JSON.stringify(entry)).catch(() => undefined);
  }
  return withNote(vmTypeSets(profile, attributes), policyPath);
}

function withNote(sets: VmTypeSets, policyPath: string): VmTypeSets {
  return { ...sets, note: `${sets.note} (${policyPath})` };
}
