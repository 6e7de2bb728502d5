import { describe, expect, it } from 'vitest';
import { levelOfLabel } from './context';
import { buildPolicyProfile, sharedContentLabel } from './policy-profile';

describe('sharedContentLabel', () => {
  const profile = buildPolicyProfile({
    virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
  });

  it('gives shared read-write images the image type and read-only content the content type, both at the bare sensitivity', () => {
    expect(sharedContentLabel(profile, 'shared')).toBe('system_u:object_r:svirt_image_t:s0');
    expect(sharedContentLabel(profile, 'readonly')).toBe('system_u:object_r:virt_content_t:s0');
  });

  it('takes the sensitivity of the helper\'s category range when one is given', () => {
    expect(sharedContentLabel(profile, 'shared', { sensitivity: 1, first: 0, last: 1023 })).toBe('system_u:object_r:svirt_image_t:s1');
  });
});

describe('levelOfLabel', () => {
  it('reads the level out of a context, and nothing out of a non-context', () => {
    expect(levelOfLabel('system_u:system_r:svirt_t:s0:c1,c5')).toBe('s0:c1,c5');
    expect(levelOfLabel('not a context')).toBeNull();
    expect(levelOfLabel(null)).toBeNull();
  });
});
