import { describe, expect, it } from 'vitest';
import { canonicalContext } from './context';
import { SELINUX_EXAMPLES } from './label-examples';

describe('SELinux example labels', () => {
  it('are the labels the built-in profile gives a VM with the pair c1,c2, its shared files and its content', () => {
    expect(SELINUX_EXAMPLES).toEqual({
      processLabel: 'system_u:system_r:svirt_t:s0:c1,c2',
      imageLabel: 'system_u:object_r:svirt_image_t:s0:c1,c2',
      unorderedImageLabel: 'system_u:object_r:svirt_image_t:s0:c2,c1,c0',
      sharedImage: 'svirt_image_t:s0',
      readonlyContent: 'virt_content_t:s0',
    });
  });

  it('offers an out-of-order label that the canonical form rewrites', () => {
    expect(canonicalContext(SELINUX_EXAMPLES.unorderedImageLabel)).toBe('system_u:object_r:svirt_image_t:s0:c0.c2');
  });
});
