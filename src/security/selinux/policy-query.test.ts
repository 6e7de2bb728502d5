import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPolicyPath, forgetLoadedPolicies, loadAccessPolicy, readLiveBooleanStates, runPolicyTools } from './policy-query';
import { REFERENCE_POLICY } from '../../../test/support/access-policy-fixture';


let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'svirt-policy-query-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('defaultPolicyPath', () => {
  it('picks the highest policy version of SELINUXTYPE', async () => {
    const root = join(scratch, 'selinux');
    await mkdir(join(root, 'targeted', 'policy'), { recursive: true });
    await writeFile(join(root, 'config'), '# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n');
    for (const version of ['31', '33', '9']) await writeFile(join(root, 'targeted', 'policy', `policy.${version}`), '');
    await writeFile(join(root, 'targeted', 'policy', 'policy.33.bak'), '');
    expect(await defaultPolicyPath(root)).toBe(join(root, 'targeted', 'policy', 'policy.33'));
  });

  it('says what is missing', async () => {
    await expect(defaultPolicyPath(join(scratch, 'nowhere'))).rejects.toThrow(/cannot read .*config.*--policy/);
  });
});

describe('readLiveBooleanStates', () => {
  it('reads "current pending" values from selinuxfs, and nothing without it', async () => {
    const fs = join(scratch, 'selinuxfs');
    await mkdir(join(fs, 'booleans'), { recursive: true });
    await writeFile(join(fs, 'booleans', 'virt_use_nfs'), '1 1');
    await writeFile(join(fs, 'booleans', 'virt_use_samba'), '0 1');
    expect(await readLiveBooleanStates(fs)).toEqual(new Map([['virt_use_nfs', true], ['virt_use_samba', false]]));
    expect(await readLiveBooleanStates(join(scratch, 'no-selinuxfs'))).toBeUndefined();
  });
});

describe('loading the installed policy', () => {
  it('fails on a policy path the tools cannot open, instead of reading the running policy', async () => {
    await expect(runPolicyTools(join(scratch, 'missing.33'))).rejects.toThrow(/sesearch|seinfo/);
  });

  it('runs the tools once, then answers from the disk cache, then from memory', async () => {
    const cacheDir = join(scratch, 'cache');
    forgetLoadedPolicies();
    const cold = await loadAccessPolicy({ policyPath: REFERENCE_POLICY, cacheDir });
    expect(cold.fromCache).toBe('none');
    expect(cold.timing.toolsMs).toBeGreaterThan(0);
    expect(cold.policy.problems).toEqual([]);
    expect(cold.policy.constraintSource).toBe('cil'); // checkpolicy is installed (.ci/run)
    expect(await readdir(cacheDir)).toHaveLength(1);

    forgetLoadedPolicies();
    const warm = await loadAccessPolicy({ policyPath: REFERENCE_POLICY, cacheDir });
    expect(warm.fromCache).toBe('disk');
    expect(warm.timing.toolsMs).toBe(0);
    expect(warm.policy.teIndex.size).toBe(cold.policy.teIndex.size);

    const again = await loadAccessPolicy({ policyPath: REFERENCE_POLICY, cacheDir });
    expect(again.fromCache).toBe('memory');
    expect(again.policy).toBe(warm.policy);
    console.info(`policy load: cold ${Math.round(cold.timing.totalMs)} ms (tools ${Math.round(cold.timing.toolsMs)} ms), warm ${Math.round(warm.timing.totalMs)} ms`);
  }, 60_000);

  it('recomputes over a torn cache file', async () => {
    // Reuses the previous test's cache file, so only the recomputation runs the tools.
    const cacheDir = join(scratch, 'cache');
    const [file] = await readdir(cacheDir);
    await writeFile(join(cacheDir, file as string), '{"format": 1, "identity"');
    forgetLoadedPolicies();
    const reloaded = await loadAccessPolicy({ policyPath: REFERENCE_POLICY, cacheDir });
    expect(reloaded.fromCache).toBe('none');
    expect(reloaded.policy.problems).toEqual([]);
    forgetLoadedPolicies();
    expect((await loadAccessPolicy({ policyPath: REFERENCE_POLICY, cacheDir })).fromCache).toBe('disk');
  }, 60_000);
});
