import { describe, expect, it } from 'vitest';
import { buildPolicyProfile } from './policy-profile';
import { checkStaticLabel } from './static-label-check';

const profile = buildPolicyProfile({
  selinuxConfig: 'SELINUXTYPE=default\n',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});

describe('static label check', () => {
  it('accepts a good label and derives the image label', () => {
    expect(checkStaticLabel('system_u:system_r:svirt_t:s0:c4,c9', true, profile, [])).toEqual({
      errors: [], warnings: [], imageLabel: 'system_u:object_r:svirt_image_t:s0:c4,c9',
    });
  });

  it('names the field of a malformed context and gives no image label', () => {
    const verdict = checkStaticLabel('system_u:system_r:svirt_t:s0:c9.c2', true, profile, []);
    expect(verdict.errors).toEqual([expect.stringMatching(/categories.*backwards/)]);
    expect(verdict.imageLabel).toBeNull();
  });

  it('refuses categories outside the policy range and a missing level', () => {
    expect(checkStaticLabel('system_u:system_r:svirt_t:s0:c1,c2000', true, profile, []).errors).toEqual([expect.stringMatching(/c2000 are outside the policy's range c0.c1023/)]);
    expect(checkStaticLabel('system_u:system_r:svirt_t', true, profile, []).errors).toEqual([expect.stringMatching(/no MLS\/MCS level/)]);
  });

  it('warns about a pair held by another VM, an overlapping one, a foreign type, and relabel off', () => {
    const verdict = checkStaticLabel('system_u:system_r:container_t:s0:c1,c2', false, profile, [
      { range: 's0:c1,c2', holder: 'VM web' },
      { range: 's0:c1,c2,c3', holder: 'VM db' },
      { range: 's0:c7,c8', holder: 'VM far' },
    ]);
    expect(verdict.errors).toEqual([]);
    expect(verdict.warnings).toEqual([
      'the pair s0:c1,c2 is already used by VM web',
      "s0:c1,c2 and VM db's s0:c1.c3 overlap: one can reach the other's files",
      "type container_t is not this policy's VM domain (svirt_t)",
      "relabel is off: the app will never touch this VM's files, so you must label them yourself",
    ]);
    expect(verdict.imageLabel).toBeNull();
  });
});
