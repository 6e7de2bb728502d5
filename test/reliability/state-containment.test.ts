import { chown, copyFile, link, mkdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../../src/user/helper-client';
import type { JournalData } from '../../src/root/labels/label-journal';
import { ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { OTHER_UID, REQUESTER_UID, snapshotFiles, vmDefinition } from './support/reliability';
import { openTwoUsers, ownedFile, type TwoUsers } from './support/two-users';

// One user's relabel/restore steps on their own files must never leave state that stops another user's
// helper: the reconcile every helper runs first is total.
const SHARED_LABEL = 'system_u:object_r:svirt_image_t:s0';

let users: TwoUsers;
let host: TestHost;
let mallory: HelperClient;
let alice: HelperClient;

beforeAll(async () => {
  users = await openTwoUsers();
  ({ host, mallory, alice } = users);
});
afterAll(async () => {
  await users?.close();
});

describe('one user\'s state cannot stop another user\'s helper', () => {
  it('survives a relabel/restore sequence that leaves a journal entry whose attribute is already gone', async () => {
    const home = path.join(host.dir, 'mallory');
    await mkdir(home);
    await chown(home, REQUESTER_UID, REQUESTER_UID);
    const kernel = await ownedFile(path.join(home, 'vmlinuz'), REQUESTER_UID, ORIGINAL_LABEL);
    const initrd = await ownedFile(path.join(home, 'initrd.gz'), REQUESTER_UID, ORIGINAL_LABEL);
    await copyFile(host.kernel, kernel);
    await copyFile(host.initrd, initrd);
    const disk = await ownedFile(path.join(home, 'disk.img'), REQUESTER_UID, ORIGINAL_LABEL);
    const vm = await mallory.request('start', {
      definition: vmDefinition({ kernel, initrd, append: host.append }, 'crafted', [{ path: disk, class: 'private' }]),
      allowUnconfined: true,
    });
    // A tree, one unlabeled file of it restored alone, a hard link to that file outside the tree held
    // privately by the VM ("no label" journaled as its original), then the whole tree restored.
    const tree = path.join(home, 'tree');
    await mkdir(tree);
    await chown(tree, REQUESTER_UID, REQUESTER_UID);
    const inner = await ownedFile(path.join(tree, 'bare.img'), REQUESTER_UID, null);
    const outer = path.join(home, 'bare-link.img');
    await link(inner, outer);
    await mallory.request('relabel', { path: tree, mode: 'shared' });
    await mallory.request('relabel', { path: inner, mode: 'restore' });
    await mallory.request('relabel', { path: outer, mode: 'private', vm: vm.id });
    await mallory.request('relabel', { path: tree, mode: 'restore' });
    expect((await snapshotFiles([outer])).get(outer)?.label).toBeNull();

    // Stopping the VM restores its holds: the gone attribute is skipped, the disk gets its label back.
    await mallory.request('forceOff', { vm: vm.id });
    expect((await snapshotFiles([disk])).get(disk)?.label).toBe(ORIGINAL_LABEL);

    // Another user's helper still works.
    const mine = path.join(host.dir, 'alice.img');
    await ownedFile(mine, OTHER_UID, ORIGINAL_LABEL);
    await alice.request('relabel', { path: mine, mode: 'shared' });
    expect((await snapshotFiles([mine])).get(mine)?.label).toBe(SHARED_LABEL);
    const journal = JSON.parse(await readFile(path.join(host.stateDir, 'journal.json'), 'utf8')) as JournalData;
    expect(journal.entries).toEqual({});
    expect(Object.values(journal.trees ?? {}).map((t) => t.root)).toEqual([mine]);
  });
});
