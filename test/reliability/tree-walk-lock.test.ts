import { execFile } from 'node:child_process';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../../src/user/helper-client';
import type { TestHost } from '../support/helper-session';
import type { JournalData } from '../../src/root/labels/label-journal';
import { helperEnv, OTHER_UID, REQUESTER_UID, snapshotFiles, vmDefinition } from './support/reliability';
import { openTwoUsers, ownedFile, userHome, type TwoUsers } from './support/two-users';

// A tree walk holds the host-wide state lock only to record its intent and its result: another user's
// start goes through while it walks. The walk is frozen (SIGSTOP) as it starts, so "while it walks" does not
// depend on how fast this host is; before, the start waited for the lock and gave up after 30 s.
const execFileP = promisify(execFile);
const FILES = 20_000;

let users: TwoUsers;
let host: TestHost;
let mallory: HelperClient;
let alice: HelperClient;

/** The label tool a helper runs (its child, by command name), as soon as it appears. */
async function labelToolOf(helper: HelperClient): Promise<number> {
  const pid = helper.pid as number;
  for (;;) {
    const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
    for (const child of children.split(' ').filter(Boolean)) {
      if ((await readFile(`/proc/${child}/comm`, 'utf8').catch(() => '')).startsWith('svirt-label-tre')) return Number(child);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A tree of FILES empty files owned by `uid`, without labels. */
async function fileTree(tree: string, uid: number): Promise<string> {
  for (let d = 0; d < FILES / 1000; d++) {
    const sub = path.join(tree, `d${d}`);
    await mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: 1000 }, (_, i) => writeFile(path.join(sub, `f${i}`), '')));
  }
  await execFileP('chown', ['-R', `${uid}:${uid}`, tree]);
  return tree;
}

/** A user's home with its own kernel, initrd and disk. */
async function home(name: string, uid: number): Promise<{ dir: string; kernel: string; initrd: string; append: string; disk: string }> {
  const h = await userHome(host, name, uid);
  return { ...h, disk: await ownedFile(path.join(h.dir, 'disk.img'), uid) };
}

beforeAll(async () => {
  users = await openTwoUsers();
  ({ host, mallory, alice } = users);
});
afterAll(async () => {
  await users?.close();
});

describe('tree walks and the state lock', () => {
  it('another user\'s start completes while a tree relabel walks, and the tree being walked is refused to others', async () => {
    const m = await home('mallory', REQUESTER_UID);
    const a = await home('alice', OTHER_UID);
    const tree = await fileTree(path.join(m.dir, 'tree'), REQUESTER_UID);
    const inTree = await ownedFile(path.join(tree, 'd0', 'disk.img'), REQUESTER_UID);

    let walked = false;
    const relabel = mallory.request('relabel', { path: tree, mode: 'shared' }).finally(() => { walked = true; });
    relabel.catch(() => undefined); // awaited below; a failure before that is the test's own
    const tool = await labelToolOf(mallory);
    process.kill(tool, 'SIGSTOP');
    try {
      const vm = await alice.request('start', {
        definition: vmDefinition(a, 'beside-walk', [{ path: a.disk, class: 'private' }]), allowUnconfined: true,
      });
      expect(vm.state).toBe('running');
      expect(walked).toBe(false);
      // A file inside the tree being walked cannot be taken by a start, nor the tree by another walk.
      await expect(mallory.request('start', {
        definition: vmDefinition(m, 'inside-walk', [{ path: inTree, class: 'private' }]), allowUnconfined: true,
      })).rejects.toThrow(/being relabeled/);
      await expect(mallory.request('relabel', { path: path.join(tree, 'd1'), mode: 'restore' })).rejects.toThrow(/being relabeled/);
      await alice.request('forceOff', { vm: vm.id });
    } finally {
      process.kill(tool, 'SIGCONT');
    }
    const outcome = await relabel;
    expect('labeled' in outcome ? outcome.labeled : NaN).toBeGreaterThan(FILES);
    const journal = JSON.parse(await readFile(path.join(host.stateDir, 'journal.json'), 'utf8')) as { trees: Record<string, { root: string; walker?: unknown }> };
    expect(Object.values(journal.trees).map((t) => [t.root, t.walker])).toEqual([[tree, undefined]]);
  }, 300_000);

  it('a helper killed mid-walk leaves a tree record that the next helper releases, and a restore puts every file back', async () => {
    const dir = path.join(host.dir, 'crash');
    await mkdir(dir);
    await chown(dir, REQUESTER_UID, REQUESTER_UID);
    const tree = await fileTree(path.join(dir, 'tree'), REQUESTER_UID);
    const doomed = host.startHelper(helperEnv(REQUESTER_UID, 'mid-tree-walk'));
    await expect(doomed.request('relabel', { path: tree, mode: 'readonly' })).rejects.toThrow(/exited/);
    const journalNow = async () => JSON.parse(await readFile(path.join(host.stateDir, 'journal.json'), 'utf8')) as JournalData;
    const [record] = Object.values((await journalNow()).trees ?? {}).filter((t) => t.root === tree);
    expect(record?.walker?.op).toBe('label');
    // The walk was cut short: some files carry the label, some not.
    const sample = [path.join(tree, 'd0', 'f0'), path.join(tree, `d${FILES / 1000 - 1}`, 'f999')];
    // Any helper's next request reconciles: the dead walker's mark goes, the record stays with its log.
    await mallory.request('relabel', { path: path.join(dir, 'other-missing'), mode: 'restore' });
    const after = Object.values((await journalNow()).trees ?? {}).filter((t) => t.root === tree);
    expect(after.map((t) => t.walker)).toEqual([undefined]);
    const result = await mallory.request('relabel', { path: tree, mode: 'restore' });
    expect(result).toMatchObject({ skipped: [] });
    expect(Object.values((await journalNow()).trees ?? {}).filter((t) => t.root === tree)).toEqual([]);
    const labels = await snapshotFiles(sample);
    expect([...labels.values()].map((f) => f.label)).toEqual([null, null]);
  }, 300_000);
});
