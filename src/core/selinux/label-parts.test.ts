import { describe, expect, it } from 'vitest';
import { parseContext } from './context';
import { describeSelinuxLabel, labelParts, levelMark, staticLabelForm } from './label-parts';

describe('SELinux labels as parts', () => {
  it('splits a context into user, role, type and level, the level in canonical spelling with its meaning', () => {
    expect(labelParts('system_u:system_r:svirt_t:s0:c345,c12', 'the pair only this VM holds')).toEqual([
      { name: 'user', value: 'system_u' },
      { name: 'role', value: 'system_r' },
      { name: 'type', value: 'svirt_t' },
      { name: 'level', value: 's0:c12,c345', meaning: 'the pair only this VM holds' },
    ]);
  });

  it('gives no parts for text that is no context, and for no label', () => {
    expect(labelParts('garbage')).toEqual([]);
    expect(labelParts(null)).toEqual([]);
  });

  it('marks a single level with categories as a pair, and shared s0 and ranges as none', () => {
    expect(levelMark('system_u:object_r:svirt_image_t:s0:c345,c12')).toEqual({ level: 's0:c12,c345', pair: 's0:c12,c345' });
    expect(levelMark('system_u:object_r:svirt_image_t:s0')).toEqual({ level: 's0', pair: null });
    expect(levelMark('unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023')).toEqual({ level: 's0-s0:c0.c1023', pair: null });
    expect(levelMark('svirt-1000-kiosk')).toBeNull();
  });

  it('describes a static label as the definition gives it, and a malformed one as it is written', () => {
    const described = describeSelinuxLabel({ process: 'system_u:system_r:svirt_t:s0:c5,c9', image: null, dynamic: false, distinct: 's0:c5,c9' });
    expect(described.summary).toBe('qemu runs as svirt_t at s0:c5,c9, the static label its definition gives');
    expect(described.processParts.at(-1)).toEqual({ name: 'level', value: 's0:c5,c9', meaning: 'the level the definition gives' });
    const malformed = describeSelinuxLabel({ process: 'not-a-context', image: null, dynamic: false, distinct: null });
    expect(malformed.processParts).toEqual([]);
    expect(malformed.summary).toMatch(/not a valid SELinux context/);
  });

  it("fills the static label editor's fields from a label, the level keeping its colons, or from the policy's process context", () => {
    const process = parseContext('system_u:system_r:svirt_t:s0');
    const filled = staticLabelForm('staff_u:system_r:svirt_tcg_t:s0:c1,c2', process);
    expect(filled.fields.map((f) => [f.key, f.value])).toEqual([['user', 'staff_u'], ['role', 'system_r'], ['type', 'svirt_tcg_t'], ['level', 's0:c1,c2']]);
    expect(filled.separator).toBe(':');
    expect(staticLabelForm(undefined, process).fields.map((f) => f.value)).toEqual(['system_u', 'system_r', 'svirt_t', 's0:c']);
  });
});
