import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { renderVmProfile, vmProfileName } from '../core/apparmor/vm-profile';
import { parseProfile, profileGrants } from '../core/apparmor/profile-access';
import { cellsOf, type AuditedVm } from '../core/selinux/audit-report';
import type { Result, VmProfileReport } from '../contracts/helper-protocol';
import { auditHost, readProfileIncludes } from './audit-service';

// An include directory as /etc/apparmor.d has it: tunables with a directory include, the product's base.
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-audit-'));
  await mkdir(path.join(dir, 'tunables/home.d'), { recursive: true });
  await mkdir(path.join(dir, 'abstractions'));
  await writeFile(path.join(dir, 'tunables/global'), 'include <tunables/home>\n');
  await writeFile(path.join(dir, 'tunables/home'), '@{HOMEDIRS}=/home/\ninclude <tunables/home.d>\n');
  await writeFile(path.join(dir, 'tunables/home.d/site'), '@{HOMEDIRS}+=/srv/homes/\n');
  await writeFile(path.join(dir, 'tunables/home.d/site~'), '@{HOMEDIRS}+=/backup/\n');
  await writeFile(path.join(dir, 'abstractions/svirt-qemu'), '  deny @{HOMEDIRS}/*/.ssh/** rw,\n  /usr/share/qemu/** r,\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const files = { a: ['/home/u/a.img', '/home/u/.ssh/a.img'], b: ['/home/u/b.img'] } as const;
const audited = (name: 'a' | 'b'): AuditedVm => ({
  name, processLabel: vmProfileName(1000, name), confined: true, confinement: 'confined', notConfinedReason: null,
  resources: files[name].map((p) => ({ path: p, class: 'private', expectedLabel: null, actualLabel: null, tclass: 'file' })),
});
const report = (name: 'a' | 'b', over: Partial<VmProfileReport> = {}): VmProfileReport => {
  const profile = vmProfileName(1000, name);
  return {
    vm: `1000/${name}`, name, ownerUid: 1000, profile, loaded: true, mode: 'enforce', qemu: `${profile} (enforce)`,
    text: renderVmProfile({ name: profile, vm: `1000/${name}`, files: files[name].map((p) => ({ path: p, use: 'private' as const })), dirs: [], base: 'abstractions/svirt-qemu' }),
    ...over,
  };
};
const answer = (vms: VmProfileReport[]): (() => Promise<Result<'vmProfiles'>>) => async () => ({ enabled: true, vms });

describe('the audit in the host\'s model', () => {
  it('reads the includes a profile names from the parser\'s directory, a directory include as its files without backups', async () => {
    const includes = await readProfileIncludes([report('a').text as string], dir);
    expect([...includes.keys()].sort()).toEqual(['abstractions/svirt-qemu', 'tunables/global', 'tunables/home', 'tunables/home.d']);
    expect(includes.get('tunables/home.d')).toBe('@{HOMEDIRS}+=/srv/homes/\n');
  });

  it('under AppArmor answers from the loaded profiles: the own disk by its rule, the other VM\'s disk none, and names the model', async () => {
    const matrix = await auditHost('disabled', [audited('a'), audited('b')], answer([report('a'), report('b')]), { includeDir: dir, uid: 1000 });
    expect(matrix.source).toMatchObject({ kind: 'profiles', model: 'apparmor', modelName: 'AppArmor' });
    const cells = cellsOf(matrix);
    expect(cells.find((c) => c.vm === 'a' && c.path === '/home/u/a.img')).toMatchObject({ access: 'write', reason: 'svirt-vm-1000-a grants rw by "/home/u/a.img" rwk,' });
    expect(cells.find((c) => c.vm === 'a' && c.path === '/home/u/b.img')).toMatchObject({ access: 'none', reason: 'no rule of svirt-vm-1000-a grants r on /home/u/b.img' });
    // The base's deny rule, through the tunables' variable, wins over the VM's own rule.
    expect(cells.find((c) => c.vm === 'a' && c.path === '/home/u/.ssh/a.img')).toMatchObject({ access: 'none' });
    expect(cells.find((c) => c.vm === 'a' && c.path === '/home/u/.ssh/a.img')?.reason).toMatch(/denies r by <abstractions\/svirt-qemu>: deny @\{HOMEDIRS\}\/\*\/\.ssh\/\*\* rw, \(a deny rule wins\)/);
    expect(matrix.problems).toEqual([]);
  });

  it('counts a VM whose qemu runs outside its profile, or whose profile the kernel no longer holds, as unconfined', async () => {
    const matrix = await auditHost('disabled', [audited('a'), audited('b')], answer([
      report('a', { qemu: 'unconfined' }), report('b', { profile: null, loaded: false, text: null }),
    ]), { includeDir: dir, uid: 1000 });
    expect(matrix.problems.map((p) => [p.kind, p.vm, p.message])).toEqual([
      ['unconfined-vm', 'a', 'a: qemu runs as unconfined, not in its profile svirt-vm-1000-a'],
      ['unconfined-vm', 'b', 'b: qemu runs in no loaded AppArmor profile'],
    ]);
    expect(cellsOf(matrix).find((c) => c.vm === 'a' && c.path === '/home/u/b.img')?.access).toBe('write');
  });

  it('asks SELinux, not the helper\'s profiles, when the kernel runs SELinux', async () => {
    const profiles = vi.fn(answer([]));
    const matrix = await auditHost('enforcing', [], profiles, { selinuxfs: dir });
    expect(matrix.source).toMatchObject({ kind: 'kernel', model: 'selinux' });
    expect(profiles).not.toHaveBeenCalled();
  });

  // Debian's own tunables and abstractions/base (installed with apparmor, as .ci/run does), with the product's base.
  it.runIf(existsSync('/etc/apparmor.d/abstractions/base'))('reads a VM profile with the host\'s real includes, every rule of them readable', async () => {
    const copy = path.join(dir, 'etc-apparmor.d');
    await cp('/etc/apparmor.d', copy, { recursive: true });
    await cp(path.resolve(__dirname, '../../assets/apparmor/abstractions/svirt-qemu'), path.join(copy, 'abstractions/svirt-qemu'));
    const text = report('a').text as string;
    const parsed = parseProfile(text, await readProfileIncludes([text], copy), 'svirt-vm-1000-a');
    expect(parsed.unreadable).toEqual([]);
    expect(profileGrants(parsed, { path: '/home/u/a.img', mode: 'rw' }).granted).toBe(true);
    expect(profileGrants(parsed, { path: '/home/u/b.img', mode: 'r' }).granted).toBe(false);
    expect(profileGrants(parsed, { path: '/etc/ld.so.cache', mode: 'r' }).allowedBy[0]?.source).toBe('abstractions/base');
  });
});
