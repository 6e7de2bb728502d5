import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildPolicyProfile } from '../../core/selinux/policy-profile';
import { loadVmTypeSets } from './policy-vm-types';

// The installed (Debian) policy and the Fedora fixture, read with the real seinfo.
const profile = (domains: string) => buildPolicyProfile({
  selinuxConfig: 'SELINUXTYPE=default\n',
  virtualDomainContext: domains,
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});

describe('VM types of a real policy', () => {
  it("groups svirt_t with the policy's other MCS-constrained VM domains on Debian, and svirt_tcg_t on Fedora", async () => {
    const debian = await loadVmTypeSets(profile('system_u:system_r:svirt_t:s0\n'), { policyPath: '/etc/selinux/default/policy/policy.33' });
    expect([...debian.domainTypes].sort()).toEqual(['qemu_t', 'svirt_prot_exec_t', 'svirt_t']);
    expect(debian.imageTypes).toContain('virt_image_t');
    expect(debian.imageTypes).not.toContain('shadow_t');
    const fedora = await loadVmTypeSets(profile('system_u:system_r:svirt_t:s0\nsystem_u:system_r:svirt_tcg_t:s0\n'), {
      policyPath: '/work/shared/fixtures/fedora-targeted/policy.33',
    });
    expect([...fedora.domainTypes].sort()).toEqual(['svirt_t', 'svirt_tcg_t']);
    expect([...fedora.imageTypes].sort()).toEqual(['svirt_image_t', 'virt_content_t', 'virt_image_t', 'xen_image_t']);
    expect(fedora.note).toMatch(/attribute virt_domain.*attribute virt_image_type/);
  });

  it('falls back to the context files when the policy cannot be read', async () => {
    const missing = await loadVmTypeSets(profile('system_u:system_r:svirt_t:s0\n'), { policyPath: '/nonexistent/policy.33' });
    expect([...missing.domainTypes]).toEqual(['svirt_t']);
    expect(missing.note).toMatch(/seinfo could not read \/nonexistent\/policy.33; only the types of virtual_domain_context/);
  });

  it("keeps seinfo's answer for the same policy file, and asks again once the file changes", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'svirt-vmtypes-'));
    try {
      const policyPath = path.join(dir, 'policy.33');
      copyFileSync('/etc/selinux/default/policy/policy.33', policyPath);
      const cacheFile = path.join(dir, 'policy-vm-types.json');
      const p = profile('system_u:system_r:svirt_t:s0\n');
      const first = await loadVmTypeSets(p, { policyPath, cacheFile });
      // Tamper with the cache: if the next answer comes from it, the extra domain shows.
      const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as { policy: string; attributes: [string, string[]][] };
      for (const [, members] of cached.attributes) if (members.includes('svirt_t')) members.push('from_the_cache_t');
      writeFileSync(cacheFile, JSON.stringify(cached));
      const second = await loadVmTypeSets(p, { policyPath, cacheFile });
      expect([...second.domainTypes].sort()).toEqual([...first.domainTypes, 'from_the_cache_t'].sort());
      // A new policy file (semodule writes one) is read again.
      utimesSync(policyPath, new Date(), new Date(Date.now() + 5000));
      const third = await loadVmTypeSets(p, { policyPath, cacheFile });
      expect([...third.domainTypes].sort()).toEqual([...first.domainTypes].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
