import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { renderVmProfile, vmProfileName } from '../../core/apparmor/vm-profile';
import { fakeAppArmor } from '../../../test/support/fake-apparmor';
import { confinedExecPrefix, probeAppArmor, processConfinement, VM_PROFILE_BASE, VmProfileStore } from './apparmor-host';

let dir: string;
let host: { securityfs: string; enabledParameter: string };
let parserLog: string;
let store: VmProfileStore;

beforeEach(async () => {
  const fake = await fakeAppArmor();
  ({ dir, host, parserLog } = fake);
  store = new VmProfileStore({ dir: path.join(dir, 'profiles'), parser: fake.parser, host });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const profile = (vm: string, disk: string) =>
  renderVmProfile({ name: vmProfileName(1000, vm), vm: `1000/${vm}`, base: VM_PROFILE_BASE, files: [{ path: disk, use: 'private' }], dirs: [`/run/x/1000-${vm}`] });

describe('the AppArmor host', () => {
  it('is enabled only with the module on and its securityfs interface there, and says why not', async () => {
    expect(await probeAppArmor(host)).toEqual({ enabled: true });
    await writeFile(host.enabledParameter, 'N\n');
    expect(await probeAppArmor(host)).toEqual({ enabled: false, reason: 'AppArmor is disabled on this host' });
    await rm(host.enabledParameter);
    expect((await probeAppArmor(host)).reason).toBe('the kernel has no AppArmor');
    await writeFile(host.enabledParameter, 'Y');
    await rm(path.join(host.securityfs, 'profiles'));
    expect((await probeAppArmor(host)).reason).toMatch(/not mounted/);
  });

  it('reads a process\'s profile from its AppArmor attribute, else attr/current', async () => {
    const proc = path.join(dir, 'proc');
    await mkdir(path.join(proc, '42/attr/apparmor'), { recursive: true });
    await writeFile(path.join(proc, '42/attr/apparmor/current'), 'svirt-vm-1000-a (enforce)\n');
    await mkdir(path.join(proc, '43/attr'), { recursive: true });
    await writeFile(path.join(proc, '43/attr/current'), 'unconfined\n');
    expect(await processConfinement(42, proc)).toEqual({ profile: 'svirt-vm-1000-a', mode: 'enforce' });
    expect(await processConfinement(43, proc)).toEqual({ profile: 'unconfined', mode: 'unconfined' });
    expect(await processConfinement(44, proc)).toBeUndefined();
  });

  it('execs qemu through aa-exec into a VM profile and nothing else', () => {
    expect(confinedExecPrefix('svirt-vm-1000-a')).toEqual(['aa-exec', '-p', 'svirt-vm-1000-a', '--']);
    expect(() => confinedExecPrefix('unconfined')).toThrow();
  });
});

describe('the VM profile store', () => {
  it('loads a profile from a root-only file with apparmor_parser -r, without cache, and removes it with -R', async () => {
    await store.load('svirt-vm-1000-a', profile('a', '/home/u/a.img'));
    const file = path.join(dir, 'profiles/svirt-vm-1000-a');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect((await store.loaded()).map((p) => p.name)).toEqual(['svirt-vm-1000-a']);
    await store.unload('svirt-vm-1000-a');
    expect(await readFile(parserLog, 'utf8')).toBe(`-r -K -- ${file}\n-R -- ${file}\n`);
    expect(await store.loaded()).toEqual([]);
    expect(await store.stored()).toEqual([]);
    await store.unload('svirt-vm-1000-a');
  });

  it('removes a loaded profile whose file is gone by name through securityfs', async () => {
    await writeFile(path.join(host.securityfs, 'profiles'), 'svirt-vm-1000-gone (enforce)\n');
    // The fake kernel: .remove is a plain file here, so the profile stays listed and unload says so.
    await expect(store.unload('svirt-vm-1000-gone')).rejects.toThrow(/still loaded/);
    expect(await readFile(path.join(host.securityfs, '.remove'), 'utf8')).toBe('svirt-vm-1000-gone');
  });

  it('sweeps every VM profile without a running VM, loaded or only stored, and leaves other programs\' profiles', async () => {
    await store.load('svirt-vm-1000-a', profile('a', '/home/u/a.img'));
    await store.load('svirt-vm-1000-b', profile('b', '/home/u/b.img'));
    await store.load('svirt-vm-1000-c', profile('c', '/home/u/c.img'));
    // c crashed after its file was written, before its load.
    await writeFile(path.join(host.securityfs, 'profiles'), (await readFile(path.join(host.securityfs, 'profiles'), 'utf8')).replace(/^svirt-vm-1000-c .*\n/m, ''));
    const swept = await store.sweep(new Set(['svirt-vm-1000-a']));
    expect(swept.removed.sort()).toEqual(['svirt-vm-1000-b', 'svirt-vm-1000-c']);
    expect(await store.stored()).toEqual(['svirt-vm-1000-a']);
    expect((await readFile(path.join(host.securityfs, 'profiles'), 'utf8')).split('\n').filter(Boolean)).toEqual(['/usr/bin/man (enforce)', 'lsb_release (complain)', 'svirt-vm-1000-a (enforce)']);
  });
});
