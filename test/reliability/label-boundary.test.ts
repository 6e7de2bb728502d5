import { chown, copyFile, mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../../src/user/helper-client';
import { writeLabel } from '../../src/security/selinux/file-labels';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { diffSnapshots, helperEnv, OTHER_UID, REQUESTER_UID, snapshotFiles, vmDefinition } from './support/reliability';
import type { VmDefinitionInput } from '../../src/core/vm-definition';

// The helper as the boundary between two local users, for what labels and starts can do: every label in a
// start request is checked by the helper itself against the installed policy, and one user's static VM
// cannot take another's pair nor starve everyone's allocations. Real helpers, real qemu, real labels.
let host: TestHost;
let root: HelperClient;
let user: HelperClient; // acts for REQUESTER_UID
let other: HelperClient; // acts for OTHER_UID
const homes = new Map<number, { dir: string; kernel: string; initrd: string }>();

async function own(p: string, uid: number): Promise<string> {
  await chown(p, uid, uid);
  await writeLabel(p, ORIGINAL_LABEL);
  return p;
}

/** A private copy of the guest's disk in `uid`'s directory, labeled as a user's file. */
async function diskOf(uid: number, name: string): Promise<string> {
  const p = path.join((homes.get(uid) as { dir: string }).dir, name);
  await copyFile(await host.disk(`${uid}-${name}`), p);
  return own(p, uid);
}

function definitionOf(uid: number, name: string, disks: { path: string; label?: string }[], seclabel: object): VmDefinitionInput {
  const home = homes.get(uid) as { kernel: string; initrd: string };
  const def = vmDefinition({ kernel: home.kernel, initrd: home.initrd, append: host.append }, name, disks.map((d) => ({ path: d.path, class: 'private' as const })), { seclabel });
  (def.disks as unknown as Record<string, unknown>[]).forEach((d, i) => {
    const label = disks[i]?.label;
    if (label !== undefined) d.label = label;
  });
  return def;
}

const start = (helper: HelperClient, definition: VmDefinitionInput) => helper.request('start', { definition, allowUnconfined: true });

/** Requires a refusal matching `reason`, with the disks, kernel and initrd unchanged and no VM left running. */
async function expectRefused(helper: HelperClient, uid: number, definition: VmDefinitionInput, reason: RegExp): Promise<void> {
  const home = homes.get(uid) as { kernel: string; initrd: string };
  const watched = [...definition.disks.map((d) => d.path), home.kernel, home.initrd];
  const before = await snapshotFiles(watched);
  const outcome = await start(helper, definition).then(
    (vm) => ({ code: 'ACCEPTED', message: `started ${vm.id} as ${vm.processLabel}` }),
    (err: Error & { code: string }) => ({ code: err.code, message: err.message }),
  );
  expect(outcome.code, outcome.message).toBe('refused');
  expect(outcome.message).toMatch(reason);
  expect(diffSnapshots(before, await snapshotFiles(watched))).toEqual([]);
  expect((await helper.request('list')).map((vm) => vm.name)).not.toContain(definition.name);
}

beforeAll(async () => {
  host = await createTestHost();
  for (const uid of [REQUESTER_UID, OTHER_UID]) {
    const dir = path.join(host.dir, `home-${uid}`);
    await mkdir(dir);
    await chown(dir, uid, uid);
    const kernel = path.join(dir, 'vmlinuz');
    const initrd = path.join(dir, 'initrd.gz');
    await copyFile(host.kernel, kernel);
    await copyFile(host.initrd, initrd);
    homes.set(uid, { dir, kernel: await own(kernel, uid), initrd: await own(initrd, uid) });
  }
  root = host.startHelper(helperEnv(0));
  user = host.startHelper(helperEnv(REQUESTER_UID));
  other = host.startHelper(helperEnv(OTHER_UID));
});
afterAll(async () => {
  const running = await root?.request('list').catch(() => []) ?? [];
  for (const vm of running) await root.request('forceOff', { vm: vm.id }).catch(() => undefined);
  await host?.dispose();
});

const svirt = (level: string) => `system_u:system_r:svirt_t:${level}`;

describe('seclabels are checked by the helper itself, against the installed policy', () => {
  it('refuses process labels outside the policy\'s VM domains, with any range, changing nothing on disk', async () => {
    const disk = await diskOf(REQUESTER_UID, 'domain.img');
    for (const type of ['unconfined_t', 'kernel_t', 'spc_t']) {
      for (const level of ['s0:c1,c2', 's0-s0:c0.c1023', 's0']) {
        const def = definitionOf(REQUESTER_UID, 'bad-domain', [{ path: disk }], { mode: 'static', label: `system_u:system_r:${type}:${level}`, relabel: true });
        await expectRefused(user, REQUESTER_UID, def, new RegExp(`static label \\(seclabel.label\\).*type ${type} is not a VM domain of this host's policy \\(use one of [^)]*svirt_t`));
      }
    }
  });

  it('refuses a dynamic base label of a type that is not a VM domain', async () => {
    const disk = await diskOf(REQUESTER_UID, 'base.img');
    for (const type of ['unconfined_t', 'spc_t', 'svirt_image_t']) {
      const def = definitionOf(REQUESTER_UID, 'bad-base', [{ path: disk }], { mode: 'dynamic', baseLabel: `system_u:system_r:${type}:s0` });
      await expectRefused(user, REQUESTER_UID, def, new RegExp(`seclabel.baseLabel: type ${type} is not a VM domain`));
    }
  });

  it('refuses image and disk labels that are not image or content types, leaving the files as they were', async () => {
    const disk = await diskOf(REQUESTER_UID, 'image-type.img');
    const staticImage = definitionOf(REQUESTER_UID, 'bad-image', [{ path: disk }], {
      mode: 'static', label: svirt('s0:c11,c12'), relabel: true, imageLabel: 'system_u:object_r:shadow_t:s0:c11,c12',
    });
    await expectRefused(user, REQUESTER_UID, staticImage, /static image label \(seclabel.imageLabel\).*type shadow_t is not a VM image type.*svirt_image_t/);
    for (const type of ['shadow_t', 'passwd_exec_t', 'etc_t']) {
      const def = definitionOf(REQUESTER_UID, 'bad-disk', [{ path: disk, label: `system_u:object_r:${type}:s0` }], { mode: 'dynamic' });
      await expectRefused(user, REQUESTER_UID, def, new RegExp(`disk label \\(disks\\[0\\].label\\).*type ${type} is not a VM image type`));
    }
  });

  it('refuses levels outside the helper\'s category range and at another sensitivity', async () => {
    const disk = await diskOf(REQUESTER_UID, 'levels.img');
    const cases: [object, RegExp][] = [
      [{ mode: 'static', label: svirt('s0:c1,c1024'), relabel: false }, /categories c1024 are outside this host's range c0.c1023/],
      [{ mode: 'static', label: svirt('s1:c1,c2'), relabel: false }, /sensitivity must be s0/],
      [{ mode: 'static', label: svirt('s0:c1,c2-s0:c1.c9'), relabel: false }, /is a range; give one level/],
    ];
    for (const [seclabel, reason] of cases) await expectRefused(user, REQUESTER_UID, definitionOf(REQUESTER_UID, 'bad-level', [{ path: disk }], seclabel), reason);
    const diskLabel = definitionOf(REQUESTER_UID, 'bad-level', [{ path: disk, label: 'system_u:object_r:svirt_image_t:s0:c2000' }], { mode: 'dynamic' });
    await expectRefused(user, REQUESTER_UID, diskLabel, /disk label \(disks\[0\].label\).*c2000 are outside/);
  });

  it("refuses a static label at another user's live pair, and a disk label that VM could open", async () => {
    const theirs = await start(other, definitionOf(OTHER_UID, 'their-vm', [{ path: await diskOf(OTHER_UID, 'their.img') }], { mode: 'dynamic' }));
    try {
      const level = theirs.level as string;
      const disk = await diskOf(REQUESTER_UID, 'pair.img');
      await expectRefused(user, REQUESTER_UID, definitionOf(REQUESTER_UID, 'pair-thief', [{ path: disk }], { mode: 'static', label: svirt(level), relabel: true }),
        new RegExp(`static label .*is the pair of VM their-vm of uid ${OTHER_UID}`));
      const shared = definitionOf(REQUESTER_UID, 'pair-leak', [{ path: disk, label: `system_u:object_r:svirt_image_t:${level}` }], { mode: 'dynamic' });
      await expectRefused(user, REQUESTER_UID, shared, new RegExp(`disk label .*is the pair of VM their-vm of uid ${OTHER_UID}`));
    } finally {
      await other.request('forceOff', { vm: theirs.name });
    }
  });

  it('refuses seclabel none unless helper.json allows it, and says where to allow it', async () => {
    const disk = await diskOf(REQUESTER_UID, 'none.img');
    const def = definitionOf(REQUESTER_UID, 'unconfined', [{ path: disk }], { mode: 'none' });
    await expectRefused(user, REQUESTER_UID, def, /seclabel none \(--seclabel none\).*"allowSeclabelNone": true in .*helper\.json/);
    const allowing = path.join(host.dir, 'allow-none.json');
    await writeFile(allowing, JSON.stringify({ allowSeclabelNone: true }));
    const permitted = host.startHelper({ ...helperEnv(REQUESTER_UID), SVIRT_HELPER_CONFIG: allowing });
    const vm = await start(permitted, def);
    expect(vm).toMatchObject({ seclabelMode: 'none', processLabel: null, confined: false });
    await permitted.request('forceOff', { vm: vm.name });
  });
});

describe('one static VM cannot stop other users\' starts', () => {
  it('refuses a static label that reserves more than one pair, and other users\' dynamic starts keep working', async () => {
    const disk = await diskOf(REQUESTER_UID, 'wide.img');
    for (const level of ['s0:c0.c1023', 's0:c0.c1022', 's0:c5', 's0']) {
      const def = definitionOf(REQUESTER_UID, 'hog', [{ path: disk }], { mode: 'static', label: svirt(level), relabel: false });
      await expectRefused(user, REQUESTER_UID, def, /static label \(seclabel.label\).*one static VM may hold exactly one pair of two categories/);
      const theirs = await start(other, definitionOf(OTHER_UID, 'after-hog', [{ path: await diskOf(OTHER_UID, 'after.img') }], { mode: 'dynamic' }));
      expect(theirs.level).toMatch(/^s0:c\d+[,.]c\d+$/);
      await other.request('forceOff', { vm: theirs.name });
    }
    // A static VM at one pair starts, and only that pair is kept from the others.
    const pair = await start(user, definitionOf(REQUESTER_UID, 'one-pair', [{ path: disk }], { mode: 'static', label: svirt('s0:c3,c7'), relabel: true }));
    try {
      expect(pair.imageLabel).toBe('system_u:object_r:svirt_image_t:s0:c3,c7');
      const theirs = await start(other, definitionOf(OTHER_UID, 'beside-pair', [{ path: await diskOf(OTHER_UID, 'beside.img') }], { mode: 'dynamic' }));
      expect(theirs.level).not.toBe('s0:c3,c7');
      await other.request('forceOff', { vm: theirs.name });
    } finally {
      await user.request('forceOff', { vm: pair.name });
    }
  });
});

describe('requests act for the requester only', () => {
  it("lists only the requester's own VMs; root sees everyone's", async () => {
    const mine = await start(user, definitionOf(REQUESTER_UID, 'listed-mine', [{ path: await diskOf(REQUESTER_UID, 'mine.img') }], { mode: 'dynamic' }));
    const theirs = await start(other, definitionOf(OTHER_UID, 'listed-theirs', [{ path: await diskOf(OTHER_UID, 'theirs.img') }], { mode: 'dynamic' }));
    try {
      expect((await user.request('list')).map((vm) => vm.id)).toEqual([mine.id]);
      expect((await other.request('list')).map((vm) => vm.id)).toEqual([theirs.id]);
      expect((await root.request('list')).map((vm) => vm.id).sort()).toEqual([mine.id, theirs.id].sort());
    } finally {
      await user.request('forceOff', { vm: mine.name });
      await other.request('forceOff', { vm: theirs.name });
    }
  });

  it('refuses to run when SUDO_UID or PKEXEC_UID is set but is not a uid, instead of acting for root', async () => {
    for (const bad of ['', 'abc', '-1', '1e3', '4242 ']) {
      const helper = host.startHelper({ SUDO_UID: bad, PKEXEC_UID: undefined });
      const outcome = await helper.request('status').then((s) => `acted for uid ${s.requesterUid}`, (err: Error & { code: string }) => `${err.code}: ${err.message}`);
      expect(outcome).toMatch(/^helper-exited: .*SUDO_UID is ".*", not a uid: refusing to guess whom to act for/);
    }
  });
});
