import { describe, expect, it } from 'vitest';
import {
  canonicalContext, compareLevels, ContextSyntaxError, formatCategories, labelSyntaxProblem, parseContext, parseLevel, staticLabelProblem,
} from './context';

describe('contexts', () => {
  it('parses and formats a full sVirt process context', () => {
    const ctx = parseContext('system_u:system_r:svirt_t:s0:c12,c345');
    expect(ctx).toMatchObject({ user: 'system_u', role: 'system_r', type: 'svirt_t' });
    expect(ctx.range?.low.categories).toEqual([12, 345]);
    expect(canonicalContext('system_u:system_r:svirt_t:s0:c12,c345')).toBe('system_u:system_r:svirt_t:s0:c12,c345');
  });

  it('collapses runs and writes low == high once, as libsepol does', () => {
    expect(canonicalContext('u:r:t:s0:c2,c0,c1,c9')).toBe('u:r:t:s0:c0.c2,c9');
    // As the kernel writes it (the enforcing test host read back c379,c380 for a pair the product wrote c379.c380).
    expect(canonicalContext('u:r:t:s0:c3.c4')).toBe('u:r:t:s0:c3,c4');
    expect(canonicalContext('u:r:t:s0:c3,c4,c5')).toBe('u:r:t:s0:c3.c5');
    expect(canonicalContext('u:r:t:s0:c1-s0:c1')).toBe('u:r:t:s0:c1');
    expect(canonicalContext('unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023')).toBe('unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023');
    expect(canonicalContext('u:r:t')).toBe('u:r:t');
    expect(formatCategories([0, 1, 2, 5, 7, 8])).toBe('c0.c2,c5,c7,c8');
  });

  it.each([
    ['', 'context', /empty/],
    ['system_u:system_r', 'context', /expected user:role:type/],
    [':system_r:svirt_t:s0', 'user', /empty/],
    ['system_u:system r:svirt_t:s0', 'role', /not an identifier/],
    ['system_u:system_r:1bad:s0', 'type', /not an identifier/],
    ['u:r:t:', 'range', /empty/],
    ['u:r:t:x0', 'sensitivity', /not a sensitivity/],
    ['u:r:t:s0:', 'categories', /empty/],
    ['u:r:t:s0:c1,,c2', 'categories', /stray comma/],
    ['u:r:t:s0:c5.c2', 'categories', /backwards/],
    ['u:r:t:s0:c1.c2.c3', 'categories', /more than one/],
    ['u:r:t:s0:k1', 'categories', /not a category/],
    ['u:r:t:s0:c99999999', 'categories', /out of range/],
    ['u:r:t:s0:c1-s0', 'range', /does not dominate/],
    ['u:r:t:s0-s0-s0', 'range', /more than one "-"/],
    [' u:r:t:s0', 'context', /whitespace/],
  ])('rejects %j naming the %s field', (input, field, reason) => {
    let error: unknown;
    try {
      parseContext(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ContextSyntaxError);
    expect((error as ContextSyntaxError).field).toBe(field);
    expect((error as Error).message).toMatch(reason);
  });

  it('orders levels by dominance', () => {
    const l = (s: string) => parseLevel(s);
    expect(compareLevels(l('s0:c1,c2,c3'), l('s0:c1,c2'))).toBe('dom');
    expect(compareLevels(l('s0:c1,c2'), l('s0:c1,c2,c3'))).toBe('domby');
    expect(compareLevels(l('s0:c1,c2'), l('s0:c2,c3'))).toBe('incomp');
    expect(compareLevels(l('s0:c0.c2'), l('s0:c0,c1,c2'))).toBe('eq');
    expect(compareLevels(l('s0:c5'), l('s0'))).toBe('dom');
    expect(compareLevels(l('s1'), l('s0:c1'))).toBe('incomp');
  });

  it('says what is wrong with a label the user gave, naming the user\'s field, and nothing for a usable one', () => {
    expect(labelSyntaxProblem('system_u:system_r:svirt_t:s0:c1,c2')).toBeUndefined();
    expect(labelSyntaxProblem('garbage')).toMatch(/expected user:role:type\[:level\], found 1 field/);
    expect(staticLabelProblem('seclabel.label', 'system_u:system_r:svirt_t:s0:c1,c2', { needsLevel: true })).toBeUndefined();
    expect(staticLabelProblem('seclabel.baseLabel', 'system_u:system_r:svirt_t')).toBeUndefined();
    expect(staticLabelProblem('seclabel.label', 'system_u:system_r:svirt_t', { needsLevel: true }))
      .toBe('seclabel.label must carry an MCS/MLS level (user:role:type:s0:cN,cM), found "system_u:system_r:svirt_t"');
    expect(staticLabelProblem('seclabel.imageLabel', 'u:r:t:s0:cX')).toMatch(/^seclabel\.imageLabel: invalid categories/);
  });
});
