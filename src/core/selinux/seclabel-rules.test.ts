import { describe, expect, it } from 'vitest';
import { parseContext } from './context';
import { buildPolicyProfile, DEFAULT_CATEGORY_RANGE } from './policy-profile';
import { isReservableStaticLabel, MAX_GROUP_SIZE, parseSeinfoAttributes, seclabelProblems, vmTypeSets, type ForeignLevel, type SeclabelRules } from './seclabel-rules';

const debian = buildPolicyProfile({
  selinuxConfig: 'SELINUXTYPE=default\n',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});

// The shape `seinfo POLICY -x -a` prints (abridged from Debian's policy, plus a generic attribute).
const SEINFO = [
  '',
  'Type Attributes: 5',
  '   attribute domain;',
  ...Array.from({ length: MAX_GROUP_SIZE + 1 }, (_, i) => `\tt${i}_t`),
  '\tsvirt_t',
  '\tunconfined_t',
  '   attribute mcs_constrained_type;',
  '\tnetlabel_peer_t',
  '\tqemu_t',
  '\tsvirt_t',
  '   attribute virt_domain;',
  '\tqemu_t',
  '\tsvirt_t',
  '\tsvirt_unconstrained_t',
  '   attribute virt_image_type;',
  '\tqemu_image_t',
  '\tsvirt_image_t',
  '\tvirt_content_t',
  '   attribute empty_attr;',
  '',
].join('\n');

const types = vmTypeSets(debian, parseSeinfoAttributes(SEINFO));
const rules: SeclabelRules = { types, categoryRange: DEFAULT_CATEGORY_RANGE, allowSeclabelNone: false, configPath: '/etc/svirt-manager/helper.json' };
const dynamic = (extra: object = {}) => ({ seclabel: { mode: 'dynamic' as const, ...extra }, disks: [] });
const staticLabel = (label: string, imageLabel?: string) => ({
  seclabel: { mode: 'static' as const, label, relabel: true, ...(imageLabel === undefined ? {} : { imageLabel }) }, disks: [],
});

describe('VM types from the policy', () => {
  it('reads attributes and their members from seinfo -x -a', () => {
    const attributes = parseSeinfoAttributes(SEINFO);
    expect(attributes.get('virt_domain')).toEqual(['qemu_t', 'svirt_t', 'svirt_unconstrained_t']);
    expect(attributes.get('empty_attr')).toEqual([]);
  });

  it("takes the smallest attribute grouping the context files' types, MCS-constrained domains only, never a generic one", () => {
    expect([...types.domainTypes].sort()).toEqual(['qemu_t', 'svirt_t']);
    expect([...types.imageTypes].sort()).toEqual(['qemu_image_t', 'svirt_image_t', 'virt_content_t']);
    expect(types.note).toBe('VM domains from attribute virt_domain, image types from attribute virt_image_type');
  });

  it('falls back to the context files alone, saying why, when the policy cannot be read', () => {
    const fallback = vmTypeSets(debian, undefined, 'seinfo (setools) is not installed');
    expect([...fallback.domainTypes]).toEqual(['svirt_t']);
    expect([...fallback.imageTypes]).toEqual(['svirt_image_t', 'virt_content_t']);
    expect(fallback.note).toMatch(/^seinfo \(setools\) is not installed; only the types of virtual_domain_context/);
  });
});

describe('seclabel rules', () => {
  it('accepts a dynamic VM, a static VM at one pair with its own image label, and shared or pair disk labels', () => {
    expect(seclabelProblems(dynamic(), rules, [])).toEqual([]);
    expect(seclabelProblems(dynamic({ baseLabel: 'system_u:system_r:qemu_t:s0' }), rules, [])).toEqual([]);
    expect(seclabelProblems(staticLabel('system_u:system_r:svirt_t:s0:c1,c2', 'system_u:object_r:svirt_image_t:s0:c1,c2'), rules, [])).toEqual([]);
    const disks = [{ label: 'system_u:object_r:virt_content_t:s0' }, { label: 'system_u:object_r:svirt_image_t:s0:c4,c5' }, {}];
    expect(seclabelProblems({ ...dynamic(), disks }, rules, [])).toEqual([]);
  });

  it('refuses seclabel none unless allowed, naming the setting and its file', () => {
    expect(seclabelProblems({ seclabel: { mode: 'none' }, disks: [] }, rules, [])).toEqual([expect.stringMatching(/"allowSeclabelNone": true in \/etc\/svirt-manager\/helper.json/)]);
    expect(seclabelProblems({ seclabel: { mode: 'none' }, disks: [] }, { ...rules, allowSeclabelNone: true }, [])).toEqual([]);
  });

  it('bounds a static label to one pair: a wider clearance, one category or none is refused', () => {
    for (const level of ['s0:c0.c1023', 's0:c1,c2,c3', 's0:c5', 's0']) {
      expect(seclabelProblems(staticLabel(`system_u:system_r:svirt_t:${level}`), rules, [])).toEqual([
        expect.stringMatching(/^static label \(seclabel.label\) .*one static VM may hold exactly one pair of two categories, as a dynamic VM does; e.g. /),
      ]);
    }
    expect(isReservableStaticLabel('system_u:system_r:svirt_t:s0:c1,c2', DEFAULT_CATEGORY_RANGE)).toBe(true);
    for (const label of ['system_u:system_r:svirt_t:s0:c0.c1023', 'system_u:system_r:svirt_t:s0:c1,c1024', 'garbage', 'u:r:t:s0-s0:c1,c2']) {
      expect(isReservableStaticLabel(label, DEFAULT_CATEGORY_RANGE)).toBe(false);
    }
  });

  it('wants a static image label at the static pair, and disk labels at s0 or one pair', () => {
    expect(seclabelProblems(staticLabel('system_u:system_r:svirt_t:s0:c1,c5', 'system_u:object_r:svirt_image_t:s0'), rules, []))
      .toEqual([expect.stringMatching(/its level must be the static label's own pair s0:c1,c5/)]);
    expect(seclabelProblems({ ...dynamic(), disks: [{ label: 'system_u:object_r:svirt_image_t:s0:c4' }] }, rules, []))
      .toEqual([expect.stringMatching(/^disk label \(disks\[0\].label\) .*must be s0 \(shared by every VM\) or one pair/)]);
  });

  it("refuses what reaches another user's VM: its pair, a clearance over it, a disk label it could open", () => {
    const foreign: ForeignLevel[] = [
      { range: parseContext('u:r:t:s0:c7,c9').range!, kind: 'subject', holder: 'VM web of uid 4343' },
      { range: parseContext('u:r:t:s0:c20,c21').range!, kind: 'object', holder: 'the images of VM db of uid 4343' },
    ];
    expect(seclabelProblems(staticLabel('system_u:system_r:svirt_t:s0:c7,c9'), rules, foreign)).toEqual([expect.stringMatching(/is the pair of VM web of uid 4343/)]);
    expect(seclabelProblems(staticLabel('system_u:system_r:svirt_t:s0:c20,c21'), rules, foreign)).toEqual([expect.stringMatching(/is the pair of the images of VM db/)]);
    expect(seclabelProblems({ ...dynamic(), disks: [{ label: 'system_u:object_r:svirt_image_t:s0:c7,c9' }] }, rules, foreign)).toEqual([expect.stringMatching(/VM web of uid 4343/)]);
    // A shared (s0) disk is every VM's by design; a pair nobody holds is free.
    expect(seclabelProblems({ ...dynamic(), disks: [{ label: 'system_u:object_r:svirt_image_t:s0' }] }, rules, foreign)).toEqual([]);
    expect(seclabelProblems(staticLabel('system_u:system_r:svirt_t:s0:c7,c8'), rules, foreign)).toEqual([]);
  });

  it('names the field of a malformed label', () => {
    expect(seclabelProblems(staticLabel('system_u:system_r:svirt_t:s0:c9.c2'), rules, [])).toEqual([expect.stringMatching(/^seclabel.label: invalid categories/)]);
  });
});
