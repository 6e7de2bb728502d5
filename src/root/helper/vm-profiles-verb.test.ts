import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { renderVmProfile, vmProfileName } from '../../core/apparmor/vm-profile';
import type { Result, RunInfo } from '../../contracts/helper-protocol';
import { VM_PROFILE_BASE, VmProfileStore } from '../../security/apparmor/apparmor-host';
import { fakeAppArmor, type FakeAppArmor } from '../../../test/support/fake-apparmor';
import { createVerbs, type VerbDeps } from './helper-verbs';

// The verb on its own: a stand-in securityfs and parser (this kernel has no AppArmor), and a lifecycle
// whose list is the requester's running VMs (its filtering is VmLifecycle.list's, tested with it).
let fake: FakeAppArmor;
let store: VmProfileStore;
let enabled: boolean;
const proc = () => path.join(fake.dir, 'proc');

beforeEach(async () => {
  fake = await fakeAppArmor();
  store = new VmProfileStore({ dir: path.join(fake.dir, 'profiles'), parser: fake.parser, host: fake.host });
  enabled = true;
});
afterEach(() => rm(fake.dir, { recursive: true, force: true }));

const run = (ownerUid: number, name: string, pid: number | null): RunInfo => ({ id: `${ownerUid}/${name}`, name, ownerUid, pid } as RunInfo);
const profileText = (uid: number, vm: string) => renderVmProfile({
  name: vmProfileName(uid, vm), vm: `${uid}/${vm}`, base: VM_PROFILE_BASE, files: [{ path: `/home/u${uid}/${vm}.img`, use: 'private' }], dirs: [],
});

async function ask(listed: RunInfo[], args: object = {}): Promise<Result<'vmProfiles'>> {
  const deps = {
    lifecycle: { list: async () => listed }, profile: {}, config: {}, requester: { uid: 1000 },
    apparmor: { store, enabled: async () => enabled, procRoot: proc() },
  } as unknown as VerbDeps;
  const verb = createVerbs(deps).vmProfiles;
  if (!verb?.validate(args)) throw new Error('refused by the schema');
  return (verb.run as (a: object, c: object) => Promise<Result<'vmProfiles'>>)(args, { emit: () => undefined });
}

describe('the vmProfiles verb', () => {
  it('answers the loaded profile text of each of the requester\'s running VMs, with the kernel\'s mode and what its qemu runs as', async () => {
    await store.load('svirt-vm-1000-a', profileText(1000, 'a'));
    await mkdir(path.join(proc(), '42/attr'), { recursive: true });
    await writeFile(path.join(proc(), '42/attr/current'), 'svirt-vm-1000-a (enforce)\n');
    const answer = await ask([run(1000, 'a', 42)]);
    expect(answer).toEqual({
      enabled: true,
      vms: [{
        vm: '1000/a', name: 'a', ownerUid: 1000, profile: 'svirt-vm-1000-a', loaded: true, mode: 'enforce', qemu: 'svirt-vm-1000-a (enforce)',
        text: await readFile(path.join(fake.dir, 'profiles/svirt-vm-1000-a'), 'utf8'),
      }],
    });
    expect(answer.vms[0]?.text).toContain('"/home/u1000/a.img" rwk,');
  });

  it('gives no other user\'s profile, loaded as it is, and takes no argument that could name one', async () => {
    await store.load('svirt-vm-1000-a', profileText(1000, 'a'));
    await store.load('svirt-vm-2000-b', profileText(2000, 'b'));
    const answer = await ask([run(1000, 'a', null)]);
    expect(answer.vms.map((v) => v.profile)).toEqual(['svirt-vm-1000-a']);
    expect(JSON.stringify(answer)).not.toContain('u2000');
    await expect(ask([run(1000, 'a', null)], { vm: '2000/b' })).rejects.toThrow(/schema/);
  });

  it('gives no text for a profile the kernel no longer holds, and says it is not loaded', async () => {
    await store.load('svirt-vm-1000-a', profileText(1000, 'a'));
    await writeFile(fake.profilesFile, '/usr/bin/man (enforce)\n');
    expect((await ask([run(1000, 'a', null)])).vms).toEqual([
      { vm: '1000/a', name: 'a', ownerUid: 1000, profile: null, loaded: false, mode: null, qemu: null, text: null },
    ]);
  });

  it('still gives the stored text when the kernel\'s list cannot be read, marked as unconfirmed', async () => {
    await store.load('svirt-vm-1000-a', profileText(1000, 'a'));
    await rm(fake.profilesFile);
    const [vm] = (await ask([run(1000, 'a', null)])).vms;
    expect(vm).toMatchObject({ profile: 'svirt-vm-1000-a', loaded: null, mode: null });
    expect(vm?.text).toContain('profile svirt-vm-1000-a {');
  });

  it('answers that AppArmor is off, with no profile for any VM, on a host without it', async () => {
    await store.load('svirt-vm-1000-a', profileText(1000, 'a'));
    enabled = false;
    expect(await ask([run(1000, 'a', null)])).toEqual({
      enabled: false, vms: [{ vm: '1000/a', name: 'a', ownerUid: 1000, profile: null, loaded: false, mode: null, qemu: null, text: null }],
    });
  });
});
