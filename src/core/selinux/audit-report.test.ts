import { beforeAll, describe, expect, it } from 'vitest';
import { parseContext } from './context';
import { evaluateAccess } from './access/evaluate-access';
import { loadAccessPolicy, type LoadedPolicy } from '../../security/selinux/policy-query';
import { buildAuditMatrix, cellsOf, memoizeOracle, type AccessOracle, type AuditedVm } from './audit-report';

// The audit over the real reference policy through the offline evaluator (as on a host without SELinux).
let loaded: LoadedPolicy;
let oracle: AccessOracle;
beforeAll(async () => {
  loaded = await loadAccessPolicy();
  oracle = async (s, t, tclass, perms) => evaluateAccess(loaded.policy, { scontext: parseContext(s), tcontext: parseContext(t), tclass, perms });
}, 60_000);

const image = (pair: string) => `system_u:object_r:svirt_image_t:${pair}`;
const vm = (name: string, pair: string, resources: AuditedVm['resources'], confined = true): AuditedVm => ({
  name, processLabel: `system_u:system_r:svirt_t:${pair}`, confined, notConfinedReason: confined ? null : 'not confined: SELinux disabled', resources,
});
const res = (path: string, cls: string, expected: string | null, actual: string | null) => ({ path, class: cls, expectedLabel: expected, actualLabel: actual, tclass: 'file' });

describe('audit matrix on the reference policy', () => {
  it('shows each VM writing its own image and shared images, reading content, and not reaching the other\'s image', async () => {
    const a = vm('a', 's0:c1,c2', [res('/a.img', 'private', image('s0:c1,c2'), image('s0:c1,c2')), res('/shared.img', 'shared', image('s0'), image('s0')),
      res('/iso', 'readonly', 'system_u:object_r:virt_content_t:s0', 'system_u:object_r:virt_content_t:s0')]);
    const b = vm('b', 's0:c3,c4', [res('/b.img', 'private', image('s0:c3,c4'), image('s0:c3,c4')), res('/shared.img', 'shared', image('s0'), image('s0'))]);
    const report = await buildAuditMatrix('enforcing', [a, b], oracle);
    const access = (v: string, p: string) => cellsOf(report).find((c) => c.vm === v && c.path === p)?.access;
    expect(access('a', '/a.img')).toBe('write');
    expect(access('a', '/b.img')).toBe('none');
    expect(access('b', '/a.img')).toBe('none');
    expect(access('b', '/shared.img')).toBe('write');
    expect(access('a', '/iso')).toBe('read');
    expect(access('b', '/iso')).toBe('read');
    expect(cellsOf(report).find((c) => c.vm === 'b' && c.path === '/a.img')?.reason).toMatch(/constraint/i);
    expect(report.problems).toEqual([]);
    expect(report.resources.find((r) => r.path === '/shared.img')?.usedBy).toEqual(['a', 'b']);
  });

  it('lists drift, duplicate pairs, unintended sharing and a disabled SELinux, which covers the VMs it leaves unconfined', async () => {
    // b's image drifted to a's pair: a can now write it, and it no longer has b's label.
    const a = vm('a', 's0:c1,c2', [res('/a.img', 'private', image('s0:c1,c2'), image('s0:c1,c2'))], false);
    const b = vm('b', 's0:c3,c4', [res('/b.img', 'private', image('s0:c3,c4'), image('s0:c1,c2'))]);
    const c = vm('c', 's0:c3,c4', []);
    const report = await buildAuditMatrix('disabled', [a, b, c], oracle);
    const kinds = report.problems.map((p) => p.kind).sort();
    expect(kinds).toEqual(['duplicate-pair', 'label-drift', 'selinux-disabled', 'unintended-sharing']);
    expect(report.problems.find((p) => p.kind === 'unintended-sharing')?.message).toBe('/b.img is private to b but a can reach it too');
    expect(cellsOf(report).find((cell) => cell.vm === 'a' && cell.path === '/b.img')?.access).toBe('write');
  });

  it('lists one problem once: two VMs on one pair reaching each other\'s image is one duplicate-pair item naming the image', async () => {
    const a = vm('a', 's0:c1,c2', [res('/a.img', 'private', image('s0:c1,c2'), image('s0:c1,c2'))]);
    const b = vm('b', 's0:c1,c2', [res('/b.img', 'private', image('s0:c1,c2'), image('s0:c1,c2'))]);
    const report = await buildAuditMatrix('enforcing', [a, b], oracle);
    expect(cellsOf(report).find((cell) => cell.vm === 'b' && cell.path === '/a.img')?.access).toBe('write');
    expect(report.problems.map((p) => p.kind)).toEqual(['duplicate-pair']);
    expect(report.problems[0]?.message).toMatch(/a and b run with the same MCS pair s0:c1[,.]c2.*\/a\.img, \/b\.img/);
  });

  it('still lists a VM that runs unconfined by its own label when SELinux is off', async () => {
    const none: AuditedVm = { name: 'legacy', processLabel: null, confined: false, notConfinedReason: 'seclabel none: runs unconfined', resources: [] };
    const report = await buildAuditMatrix('disabled', [vm('a', 's0:c1,c2', [], false), none], oracle);
    expect(report.problems.filter((p) => p.kind === 'unconfined-vm').map((p) => p.vm)).toEqual(['legacy']);
  });

  it('gives an unconfined VM a row that reaches every file, and counts it as no intruder per file (its own problem says it)', async () => {
    const a = vm('a', 's0:c1,c2', [res('/a.img', 'private', image('s0:c1,c2'), image('s0:c1,c2')), res('/iso', 'readonly', 'system_u:object_r:virt_content_t:s0', 'system_u:object_r:virt_content_t:s0')]);
    const none: AuditedVm = { name: 'legacy', processLabel: null, confined: false, notConfinedReason: 'seclabel none: runs unconfined', resources: [] };
    const report = await buildAuditMatrix('enforcing', [a, none], oracle);
    expect(report.vms.map((v) => [v.name, v.processLabel])).toEqual([['a', image('s0:c1,c2').replace('object_r:svirt_image_t', 'system_r:svirt_t')], ['legacy', null]]);
    const legacy = cellsOf(report).filter((c) => c.vm === 'legacy');
    expect(legacy.map((c) => [c.path, c.access])).toEqual([['/a.img', 'write'], ['/iso', 'write']]);
    expect(legacy[0]?.reason).toMatch(/unconfined/);
    expect(report.problems.map((p) => p.kind)).toEqual(['unconfined-vm']);
  });

  it('adds the content trees no running VM uses as columns of their own, with each running VM\'s access to them', async () => {
    const content = 'system_u:object_r:virt_content_t:s0';
    const a = vm('a', 's0:c1,c2', [res('/a.img', 'private', image('s0:c1,c2'), image('s0:c1,c2')), res('/iso', 'readonly', content, content)]);
    const idle = [res('/srv/media', 'readonly', null, content), res('/srv/scratch', 'shared', null, image('s0')), res('/iso', 'readonly', null, content)];
    const report = await buildAuditMatrix('enforcing', [a], oracle, idle);
    // A tree a running VM uses stays its column, once.
    expect(report.resources.map((r) => [r.path, r.usedBy])).toEqual([['/a.img', ['a']], ['/iso', ['a']], ['/srv/media', []], ['/srv/scratch', []]]);
    const access = (p: string) => cellsOf(report).find((c) => c.vm === 'a' && c.path === p)?.access;
    expect(access('/srv/media')).toBe('read');
    expect(access('/srv/scratch')).toBe('write');
    expect(report.problems).toEqual([]);
  });

  it('packs a large matrix into few verdicts: 20 VMs × 2,000 files on 20 pairs', async () => {
    const vms = Array.from({ length: 20 }, (_, i) => {
      const pair = `s0:c${2 * i},c${2 * i + 1}`;
      return vm(`v${i}`, pair, Array.from({ length: 100 }, (_, k) => res(`/v${i}/${k}.img`, 'private', image(pair), image(pair))));
    });
    const report = await buildAuditMatrix('enforcing', vms, oracle);
    expect(cellsOf(report)).toHaveLength(20 * 2000);
    // A VM's own files side by side: a few runs per row, not 2,000 numbers.
    expect(report.runs.length).toBeLessThanOrEqual(20 * 3 * 2);
    expect(report.verdicts.length).toBeLessThanOrEqual(3);
    expect(cellsOf(report).filter((c) => c.access === 'write').every((c) => c.path.startsWith(`/${c.vm}/`))).toBe(true);
    expect(cellsOf(report).filter((c) => c.access === 'write')).toHaveLength(2000);
    expect(report.problems).toEqual([]);
  });

  it('asks the policy each distinct question once: many pairs, the same answers as unmemoized', async () => {
    const vms = Array.from({ length: 12 }, (_, i) => vm(`v${i}`, `s0:c${2 * i},c${2 * i + 1}`, [res(`/v${i}.img`, 'private', image(`s0:c${2 * i},c${2 * i + 1}`), image(`s0:c${2 * i},c${2 * i + 1}`))]));
    let asked = 0;
    const counting: AccessOracle = async (...args) => {
      asked++;
      return oracle(...args);
    };
    const report = await buildAuditMatrix('enforcing', vms, counting);
    let plainAsked = 0;
    const plain: AccessOracle = async (...args) => {
      plainAsked++;
      return oracle(...args);
    };
    // Reference answers, one oracle call per question (no memo): every cell must agree.
    for (const cell of cellsOf(report)) {
      const s = vms.find((v) => v.name === cell.vm)?.processLabel as string;
      const t = vms.flatMap((v) => v.resources).find((r) => r.path === cell.path)?.actualLabel as string;
      const write = await plain(s, t, 'file', ['open', 'read', 'write', 'append']);
      expect(cell.access === 'write', `${cell.vm} ${cell.path}`).toBe(write.decision === 'allowed');
    }
    expect(cellsOf(report)).toHaveLength(144);
    expect(plainAsked).toBe(144);
    // Own image (equal levels) and another's (incomparable): a few questions, not 144 × 2.
    expect(asked).toBeLessThanOrEqual(4);
    const memo = memoizeOracle(counting);
    await memo(vms[0]!.processLabel!, image('s0:c0,c1'), 'file', ['read']);
    await memo(vms[1]!.processLabel!, image('s0:c2,c3'), 'file', ['read']);
    expect(memo.questions()).toBe(1);
  });

  it('reports a permissive host once, not each VM that runs in its label there as unconfined', async () => {
    const a = { ...vm('a', 's0:c1,c2', [], false), confinement: 'permissive' as const };
    const b = { ...vm('b', 's0:c3,c4', [], false), confinement: 'unconfined-none' as const };
    const report = await buildAuditMatrix('permissive', [a, b], oracle);
    expect(report.problems.map((p) => [p.kind, p.vm ?? null])).toEqual([['selinux-permissive', null], ['unconfined-vm', 'b']]);
    expect(report.vms.map((v) => v.confinement)).toEqual(['permissive', 'unconfined-none']);
  });

  it('shows a check the oracle could not answer as an error, not as "none"', async () => {
    const a = vm('a', 's0:c1,c2', [res('/a.img', 'private', image('s0:c1,c2'), image('s0:c1,c2'))]);
    const failing: AccessOracle = async () => ({ decision: 'error', reason: 'the kernel did not answer' });
    const report = await buildAuditMatrix('enforcing', [a], failing);
    expect(cellsOf(report)).toEqual([{ vm: 'a', path: '/a.img', access: 'error', reason: 'the kernel did not answer' }]);
  });
});
