import { describe, expect, it } from 'vitest';
import { cellsOf } from '../selinux/audit-report';
import { parseProfile } from './profile-access';
import { buildProfileAuditMatrix, type ProfiledVm } from './profile-audit';
import { renderVmProfile, vmProfileName } from './vm-profile';

const INCLUDES = new Map([['abstractions/svirt-qemu', '  /usr/share/qemu/** r,\n'], ['tunables/global', '']]);

function vm(name: string, files: { path: string; use: 'private' | 'shared' | 'readonly' }[], mode: ProfiledVm['mode'] = 'enforce'): ProfiledVm {
  const profile = vmProfileName(1000, name);
  const text = renderVmProfile({ name: profile, vm: `1000/${name}`, files, dirs: [`/run/svirt/1000-${name}`], base: 'abstractions/svirt-qemu' });
  return {
    name, profile, mode, parsed: parseProfile(text, INCLUDES, profile), notConfinedReason: null,
    resources: files.map((f) => ({ path: f.path, class: f.use })),
  };
}

const cell = (matrix: ReturnType<typeof buildProfileAuditMatrix>, vmName: string, path: string) => cellsOf(matrix).find((c) => c.vm === vmName && c.path === path);

describe('the audit under AppArmor', () => {
  const a = vm('a', [{ path: '/home/u/a.img', use: 'private' }, { path: '/srv/iso/d.iso', use: 'readonly' }]);
  const b = vm('b', [{ path: '/home/u/b.img', use: 'private' }, { path: '/srv/iso/d.iso', use: 'readonly' }]);

  it('answers each VM\'s own disk write, shared read-only content read, and another VM\'s disk none, each with the rule or its absence', () => {
    const matrix = buildProfileAuditMatrix([a, b]);
    expect(cell(matrix, 'a', '/home/u/a.img')).toEqual({ vm: 'a', path: '/home/u/a.img', access: 'write', reason: 'svirt-vm-1000-a grants rw by "/home/u/a.img" rwk,' });
    expect(cell(matrix, 'a', '/home/u/b.img')).toMatchObject({ access: 'none', reason: 'no rule of svirt-vm-1000-a grants r on /home/u/b.img' });
    expect(cell(matrix, 'b', '/home/u/a.img')?.access).toBe('none');
    expect(cell(matrix, 'a', '/srv/iso/d.iso')?.access).toBe('read');
    expect(cell(matrix, 'a', '/srv/iso/d.iso')?.reason).toMatch(/^read only: svirt-vm-1000-a grants r by "\/srv\/iso\/d.iso" rk,/);
    expect(matrix.vms.map((v) => v.processLabel)).toEqual(['svirt-vm-1000-a', 'svirt-vm-1000-b']);
    expect(matrix.resources.map((r) => r.usedBy)).toEqual([['a'], ['a', 'b'], ['b']]);
    expect(matrix.problems).toEqual([]);
  });

  it('reports a private disk another VM\'s profile reaches as unintended sharing', () => {
    const intruder = vm('c', [{ path: '/home/u/c.img', use: 'private' }, { path: '/home/u/a.img', use: 'readonly' }]);
    const matrix = buildProfileAuditMatrix([a, intruder]);
    expect(matrix.problems).toEqual([{ kind: 'unintended-sharing', severity: 'critical', path: '/home/u/a.img', message: '/home/u/a.img is private to a but c can reach it too' }]);
  });

  it('reports a VM in no profile, and one whose profile only complains, as critical; the first reaches every file', () => {
    const loose: ProfiledVm = { name: 'loose', profile: null, mode: null, notConfinedReason: 'seclabel none', resources: [] };
    const matrix = buildProfileAuditMatrix([a, loose, vm('d', [], 'complain')]);
    expect(matrix.problems.map((p) => [p.kind, p.vm])).toEqual([['unconfined-vm', 'loose'], ['apparmor-complain', 'd']]);
    expect(cell(matrix, 'loose', '/home/u/a.img')?.access).toBe('write');
  });

  it('asks the profile about the canonical path, and shows the path as the definition names it', () => {
    const dev = vm('e', [{ path: '/dev/dm-3', use: 'private' }]);
    const matrix = buildProfileAuditMatrix([{ ...dev, resources: [{ path: '/dev/vg/e', class: 'private' }] }], [], new Map([['/dev/vg/e', '/dev/dm-3']]));
    expect(cell(matrix, 'e', '/dev/vg/e')?.access).toBe('write');
  });

  it('answers error, never none, for a VM whose profile could not be read', () => {
    const broken: ProfiledVm = { name: 'f', profile: 'svirt-vm-1000-f', mode: 'enforce', problem: 'include <x> was not given', notConfinedReason: null, resources: [] };
    const matrix = buildProfileAuditMatrix([a, broken]);
    expect(cell(matrix, 'f', '/home/u/a.img')).toMatchObject({ access: 'error', reason: 'svirt-vm-1000-f could not be read: include <x> was not given' });
  });
});
