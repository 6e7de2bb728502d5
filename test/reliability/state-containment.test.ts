import { execFile } from 'node:child_process';
import { chown, copyFile, link, mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../../src/main/helper-client';
import type { RunInfo } from '../../src/main/helper/vm-lifecycle';
import type { JournalData } from '../../src/main/labels/label-journal';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { helperEnv, OTHER_UID, REQUESTER_UID, snapshotFiles, vmDefinition } from './support/reliability';

// One user's relabel/restore steps on their own files must never leave state that stops another user's
// helper: the reconcile every helper runs first is total.
const execFileP = promisify(execFile);
const SHARED_LABEL = 'system_u:object_r:svirt_image_t:s0';

let host: TestHost;
let mallory: HelperClient;
let alice: HelperClient;

async function owned(p: string, uid: number, label: string | null): Promise<string> {
  await writeFile(p, Buffer.alloc(64 * 1024));
  await chown(p, uid, uid);
  if (label !== null) await execFileP('setfattr', ['-h', '-n', 'security.selinux', '-v', label, p]);
  return p;
}

beforeAll(async () => {
  host = await createTestHost();
  mallory = host.startHelper(helperEnv(REQUESTER_UID));
  alice = host.startHelper(helperEnv(OTHER_UID));
});
afterAll(async () => {
  for (const helper of [mallory, alice]) {
    const running = await helper.request<RunInfo[]>('list').catch(() => []);
    for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  }
  await host.dispose();
});

describe('one user\'s state cannot stop another user\'s helper', () => {
  it('survives a relabel/restore sequence that leaves a journal entry whose attribute is already gone', async () => {
    const home = path.join(host.dir, 'mallory');
    await mkdir(home);
    await chown(home, REQUESTER_UID, REQUESTER_UID);
    const kernel = await owned(path.join(home, 'vmlinuz'), REQUESTER_UID, ORIGINAL_LABEL);
    const initrd = await owned(path.join(home, 'initrd.gz'), REQUESTER_UID, ORIGINAL_LABEL);
    await copyFile(host.kernel, kernel);
    await copyFile(host.initrd, initrd);
    const disk = await owned(path.join(home, 'disk.img'), REQUESTER_UID, ORIGINAL_LABEL);
    const vm = await mallory.request<RunInfo>('start', {
      definition: vmDefinition({ kernel, initrd, append: host.append }, 'crafted', [{ path: disk, class: 'private' }]),
      allowUnconfined: true,
    });
    // A tree, one unlabeled file of it restored alone, a hard link to that file outside the tree held
    // privately by the VM ("no label" journaled as its original), then the whole tree restored.
    const tree = path.join(home, 'tree');
    await mkdir(tree);
    await chown(tree, REQUESTER_UID, REQUESTER_UID);
    const inner = await owned(path.join(tree, 'bare.img'), REQUESTER_UID, null);
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
    await owned(mine, OTHER_UID, ORIGINAL_LABEL);
    await alice.request('relabel', { path: mine, mode: 'shared' });
    expect((await snapshotFiles([mine])).get(mine)?.label).toBe(SHARED_LABEL);
    const journal = JSON.parse(await readFile(path.join(host.stateDir, 'journal.json'), 'utf8')) as JournalData;
    expect(journal.entries).toEqual({});
    expect(Object.values(journal.trees ?? {}).map((t) => t.root)).toEqual([mine]);
  });
});
