import { open, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VmDefinition } from '../../core/vm-definition';
import type { VmSpec } from '../../core/vm-spec';
import { fakeAppArmor, type FakeAppArmor } from '../../../test/support/fake-apparmor';
import type { SecuredVm } from '../security-driver';
import { AppArmorDriver } from './apparmor-driver';
import { VmProfileStore } from './apparmor-host';

let fake: FakeAppArmor;
let driver: AppArmorDriver;
const noFiles = { hold: async () => { throw new Error('AppArmor changes no file'); } };

beforeEach(async () => {
  fake = await fakeAppArmor();
  const profileDir = path.join(fake.dir, 'profiles');
  driver = new AppArmorDriver({
    profileDir,
    vmDirs: (vm) => [`/var/lib/svirt-manager/run/${vm.ownerUid}-${vm.name}`],
    store: new VmProfileStore({ dir: profileDir, parser: fake.parser, host: fake.host }),
    probe: async () => ({ enabled: true }),
    modeParameter: path.join(fake.dir, 'mode'),
  });
});
afterEach(() => rm(fake.dir, { recursive: true, force: true }));

function vm(name: string, disk: string, seclabel: VmDefinition['seclabel'] = { mode: 'dynamic' }): SecuredVm {
  const spec: VmSpec = { name, accel: 'tcg', seclabel: { mode: 'dynamic' }, disks: [{ path: disk, class: 'private' }, { path: '/srv/iso/install.iso', class: 'readonly' }], kernel: '/home/u/vmlinuz', charDevices: [] };
  return { id: `1000/${name}`, name, ownerUid: 1000, definition: { seclabel } as VmDefinition, spec };
}

describe('the AppArmor driver', () => {
  it('runs where the kernel enforces AppArmor, as permissive in complain mode', async () => {
    await writeFile(path.join(fake.dir, 'mode'), 'enforce\n');
    expect(await driver.probe()).toEqual({ model: 'apparmor', state: 'enforcing' });
    await writeFile(path.join(fake.dir, 'mode'), 'complain\n');
    expect(await driver.probe()).toEqual({ model: 'apparmor', state: 'permissive' });
    const off = new AppArmorDriver({ profileDir: fake.dir, vmDirs: () => [], probe: async () => ({ enabled: false, reason: 'no' }) });
    expect(await off.probe()).toEqual({ model: 'apparmor', state: 'absent' });
  });

  it('gives each VM a profile of its own, execs qemu into it, and describes it without SELinux words', async () => {
    const a = vm('a', '/home/u/a.img');
    const label = await driver.generate(a, { others: [], reserved: [], state: undefined });
    expect(label).toEqual({ model: 'apparmor', dynamic: true, process: 'svirt-vm-1000-a', image: null, distinct: 'svirt-vm-1000-a' });
    expect(driver.confineProcess(a, label)).toEqual({ execPrefix: ['aa-exec', '-p', 'svirt-vm-1000-a', '--'] });
    const text = JSON.stringify(driver.describe(label));
    expect(text).toContain('svirt-vm-1000-a');
    expect(text).not.toMatch(/svirt_t|svirt_image_t|s0:c/);
    // seclabel none: no profile, qemu runs as it is.
    const none = await driver.generate(vm('n', '/home/u/n.img', { mode: 'none' }), { others: [], reserved: [], state: undefined });
    expect(none.process).toBeNull();
    expect(driver.confineProcess(vm('n', '/home/u/n.img'), none)).toEqual({});
  });

  it('loads a profile with the VM\'s own files at setAll, adds a private boot copy by the name it had, and removes it at restoreAll', async () => {
    const a = vm('a', '/home/u/a.img');
    const label = await driver.generate(a, { others: [], reserved: [], state: undefined });
    await driver.setAll(a, label, noFiles);
    const file = path.join(fake.dir, 'profiles/svirt-vm-1000-a');
    const loaded = await readFile(file, 'utf8');
    expect(loaded).toContain('"/home/u/a.img" rwk,');
    expect(loaded).toContain('"/srv/iso/install.iso" rk,');
    expect(loaded).toContain('"/home/u/vmlinuz" rk,');
    expect(loaded).toContain('"/var/lib/svirt-manager/run/1000-a/**" rwk,');
    expect(loaded).not.toContain('b.img');
    // A private copy, unlinked once opened: only its fd names it.
    const copy = path.join(fake.dir, '.boot-copy');
    await writeFile(copy, 'kernel');
    const handle = await open(copy, 'r');
    await rm(copy);
    try {
      await driver.labelPrivateCopy(`/proc/${process.pid}/fd/${handle.fd}`, label);
    } finally {
      await handle.close();
    }
    expect(await readFile(file, 'utf8')).toContain(`"${copy}" rk,`);
    expect((await readFile(fake.parserLog, 'utf8')).split('\n').filter((l) => l.startsWith('-r ')).length).toBe(2);
    await driver.restoreAll(a.id, label);
    expect(await readFile(fake.profilesFile, 'utf8')).not.toContain('svirt-vm-1000-a');
  });

  it('keeps both private boot copies in the profile when the kernel\'s and the initrd\'s are added at once', async () => {
    const a = vm('a', '/home/u/a.img');
    const label = await driver.generate(a, { others: [], reserved: [], state: undefined });
    await driver.setAll(a, label, noFiles);
    const copies = ['.boot-kernel', '.boot-initrd'].map((n) => path.join(fake.dir, n));
    const handles = await Promise.all(copies.map(async (c) => {
      await writeFile(c, c);
      const handle = await open(c, 'r');
      await rm(c);
      return handle;
    }));
    try {
      await Promise.all(handles.map((h) => driver.labelPrivateCopy(`/proc/${process.pid}/fd/${h.fd}`, label)));
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
    const loaded = await readFile(path.join(fake.dir, 'profiles/svirt-vm-1000-a'), 'utf8');
    for (const c of copies) expect(loaded).toContain(`"${c}" rk,`);
  });

  it('sweeps the profile of a VM no record keeps, loaded or stored, and keeps the profiles of the VMs on record', async () => {
    const [a, b] = [vm('a', '/home/u/a.img'), vm('b', '/home/u/b.img')];
    const book = { others: [] as { id: string; name: string; ownerUid: number; label: Awaited<ReturnType<AppArmorDriver['generate']>> | undefined }[], reserved: [], state: undefined };
    const [la, lb] = [await driver.generate(a, book), await driver.generate(b, book)];
    await driver.setAll(a, la, noFiles);
    await driver.setAll(b, lb, noFiles);
    // A crash left b's profile loaded with no record; a's VM still runs.
    book.others.push({ id: a.id, name: a.name, ownerUid: 1000, label: la });
    expect(await driver.sweep(book, new Set([a.id]))).toEqual([]);
    const profiles = await readFile(fake.profilesFile, 'utf8');
    expect(profiles).toContain('svirt-vm-1000-a');
    expect(profiles).not.toContain('svirt-vm-1000-b');
    expect(profiles).toContain('/usr/bin/man');
  });
});
