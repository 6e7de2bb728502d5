import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, link, mkdir, rm, rmdir, stat, symlink, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../../src/user/helper-client';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { diffSnapshots, helperEnv, OTHER_UID, REQUESTER_UID, snapshotFiles, vmDefinition } from './support/reliability';

// Path attacks on the real helper, through `relabel` and through `start` with a disk path: each is refused
// with a clear error, and every file's label (and owner and mode) is unchanged, read back from disk.
const execFileP = promisify(execFile);
const DECOY_LABEL = 'system_u:object_r:shadow_t:s0';
const SHARED_LABEL = 'system_u:object_r:svirt_image_t:s0';

let host: TestHost;
let root: HelperClient; // acts for root: no ownership rule protects anything, only the path rules
let user: HelperClient; // acts for REQUESTER_UID
let attack: string; // the requester's own directory
let decoyDir: string;
let decoy: string; // an /etc/shadow look-alike outside the requester's reach
let userKernel: string;
let userInitrd: string;
const created: string[] = [];

interface Refusal {
  code: string;
  message: string;
}

async function refusal(work: Promise<unknown>): Promise<Refusal> {
  return work.then(
    (result) => ({ code: 'ACCEPTED', message: JSON.stringify(result) }),
    (err: Error & { code: string }) => ({ code: err.code, message: err.message }),
  );
}

/** Runs `attempt` and requires a refusal matching `reason`, with every watched file unchanged. */
async function expectRefused(watched: readonly string[], attempt: () => Promise<unknown>, reason: RegExp, code = 'refused'): Promise<void> {
  const before = await snapshotFiles(watched);
  const result = await refusal(attempt());
  expect(result.code, result.message).toBe(code);
  expect(result.message).toMatch(reason);
  expect(diffSnapshots(before, await snapshotFiles(watched))).toEqual([]);
}

// Unchecked: the attacks loop over modes as plain strings; the helper's schema is what they probe.
const relabel = (helper: HelperClient, p: string, mode: string, vm?: string) => helper.requestUnchecked('relabel', { path: p, mode, ...(vm ? { vm } : {}) });

/** A start (as the requester unless `as` says otherwise) whose only disk is `disk`. */
function startWith(disk: string, variant: 'private' | 'relabel-off' | 'seclabel-none', as: HelperClient = user, name = 'attack-vm'): Promise<unknown> {
  const kernel = as === user ? { kernel: userKernel, initrd: userInitrd, append: host.append } : host;
  const definition = vmDefinition(kernel, name, [{ path: disk, class: 'private', relabel: variant !== 'relabel-off' }],
    variant === 'seclabel-none' ? { seclabel: { mode: 'none' } } : {});
  return as.request('start', { definition, allowUnconfined: true });
}

async function file(p: string, uid: number, label: string | null = ORIGINAL_LABEL, mode = 0o644): Promise<string> {
  await writeFile(p, Buffer.alloc(64 * 1024));
  await chown(p, uid, uid);
  await chmod(p, mode);
  if (label !== null) await execFileP('setfattr', ['-h', '-n', 'security.selinux', '-v', label, p]);
  return p;
}

beforeAll(async () => {
  // seclabel none is allowed here, so that its starts meet the path rules (label-boundary.test covers the setting).
  // /var/lib/libvirt/images is a pool the requester may use, shared: files another user (root) owns in it may
  // be relabeled by her; nothing outside it may.
  host = await createTestHost({
    allowSeclabelNone: true,
    pools: [{ path: '/var/lib/libvirt/images', users: [String(REQUESTER_UID)], groups: [], shared: true }],
  });
  root = host.startHelper(helperEnv(0));
  user = host.startHelper(helperEnv(REQUESTER_UID));
  attack = path.join(host.dir, 'attack');
  decoyDir = path.join(host.dir, 'decoy');
  await mkdir(attack);
  await mkdir(decoyDir);
  await chown(attack, REQUESTER_UID, REQUESTER_UID);
  decoy = await file(path.join(decoyDir, 'shadow'), 0, DECOY_LABEL, 0o640);
  // The requester's own copies of the guest's kernel and initrd: a start gets as far as its disk.
  userKernel = await file(path.join(attack, 'vmlinuz'), REQUESTER_UID);
  userInitrd = await file(path.join(attack, 'initrd.gz'), REQUESTER_UID);
  await copyFile(host.kernel, userKernel);
  await copyFile(host.initrd, userInitrd);
});
afterAll(async () => {
  for (const helper of [root, user]) {
    const running = await helper.request('list').catch(() => []);
    for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  }
  for (const p of created.reverse()) await rm(p, { recursive: true, force: true }).catch(() => rmdir(p).catch(() => undefined));
  await host.dispose();
});

describe('path attacks through relabel and start', () => {
  it('refuses a symlink to /etc/shadow, and a symlink in a parent directory', async () => {
    const toShadow = path.join(attack, 'shadow-link');
    const etcLink = path.join(attack, 'etc');
    const toDecoyDir = path.join(attack, 'decoys');
    await symlink('/etc/shadow', toShadow);
    await symlink('/etc', etcLink);
    await symlink(decoyDir, toDecoyDir);
    const watched = ['/etc/shadow', '/etc', decoy, toShadow, attack];
    for (const helper of [root, user]) {
      for (const mode of ['shared', 'readonly']) {
        await expectRefused(watched, () => relabel(helper, toShadow, mode), /symbolic link/);
        await expectRefused(watched, () => relabel(helper, path.join(etcLink, 'shadow'), mode), /resolves to \/etc\/shadow|symbolic link in a parent/);
        await expectRefused(watched, () => relabel(helper, path.join(toDecoyDir, 'shadow'), mode), /resolves to .*decoy\/shadow/);
      }
    }
    for (const variant of ['private', 'relabel-off', 'seclabel-none'] as const) {
      await expectRefused(watched, () => startWith(toShadow, variant), /symbolic link/);
      await expectRefused(watched, () => startWith(path.join(toDecoyDir, 'shadow'), variant), /resolves to/);
      await expectRefused(watched, () => startWith(toShadow, variant, root), /symbolic link/);
    }
    // A disk straight at /etc/shadow, not relabeled: refused by location before anything opens it.
    await expectRefused(watched, () => startWith('/etc/shadow', 'relabel-off', root), /system directory \/etc/);
    await expectRefused(watched, () => startWith('/etc/shadow', 'seclabel-none'), /system directory \/etc/);
  });

  it('refuses a hard link to a file of another user, alone and inside a tree', async () => {
    const otherDir = path.join(host.dir, 'other');
    await mkdir(otherDir);
    const theirs = await file(path.join(otherDir, 'theirs.img'), OTHER_UID, ORIGINAL_LABEL, 0o666);
    const hard = path.join(attack, 'hard.img');
    await link(theirs, hard); // root may link it; a user may too where protected_hardlinks allows (rw access)
    const tree = path.join(attack, 'hard-tree');
    await mkdir(tree);
    await chown(tree, REQUESTER_UID, REQUESTER_UID);
    await file(path.join(tree, 'mine.img'), REQUESTER_UID);
    await link(theirs, path.join(tree, 'theirs.img'));
    const watched = [theirs, tree, path.join(tree, 'mine.img')];
    await expectRefused(watched, () => relabel(user, hard, 'shared'), /belongs to uid 4343/);
    await expectRefused(watched, () => relabel(user, tree, 'shared'), /belongs to uid 4343/);
    await expectRefused(watched, () => relabel(user, tree, 'readonly'), /belongs to uid 4343/);
    for (const variant of ['private', 'relabel-off', 'seclabel-none'] as const) {
      await expectRefused(watched, () => startWith(hard, variant), /belongs to uid 4343/);
    }
  });

  it('refuses ".." segments, newlines, NUL and other control characters in paths', async () => {
    const mine = await file(path.join(attack, 'mine.img'), REQUESTER_UID);
    const newline = await file(path.join(attack, 'new\nline.img'), REQUESTER_UID);
    const watched = [mine, newline, decoy];
    for (const p of [`${attack}/../attack/mine.img`, `${attack}/x/../mine.img`, `${attack}/./mine.img`, `${attack}/../decoy/shadow`]) {
      await expectRefused(watched, () => relabel(user, p, 'shared'), /"\." or "\.\." segments/);
      await expectRefused(watched, () => startWith(p, 'private'), /"\." or "\.\." segments/, 'bad-request');
    }
    for (const p of [newline, `${mine}\n${decoy}`, `${mine}\u0000`, `${mine}\r`, `${mine}\u007f`]) {
      await expectRefused(watched, () => relabel(user, p, 'shared'), /control characters/);
      await expectRefused(watched, () => startWith(p, 'relabel-off'), /control characters/, 'bad-request');
    }
    await expectRefused(watched, () => relabel(user, 'attack/mine.img', 'shared'), /must be absolute/);
  });

  it('refuses device nodes that are not allowed block devices', async () => {
    const block = path.join(attack, 'sdz');
    const char = path.join(attack, 'null');
    await execFileP('mknod', [block, 'b', '7', '0']);
    await execFileP('mknod', [char, 'c', '1', '3']);
    for (const p of [block, char]) {
      await chown(p, REQUESTER_UID, REQUESTER_UID);
      await execFileP('setfattr', ['-n', 'security.selinux', '-v', ORIGINAL_LABEL, p]);
    }
    const watched = [block, char];
    for (const helper of [root, user]) {
      await expectRefused(watched, () => relabel(helper, block, 'shared'), /block device not in the allowed list|device without a reader|not a regular file but a block device/);
      await expectRefused(watched, () => relabel(helper, char, 'shared'), /character devices are never given to VMs/);
    }
    for (const variant of ['private', 'relabel-off'] as const) {
      await expectRefused(watched, () => startWith(block, variant), /block device not in the allowed list|device without a reader|not a regular file but a block device/);
      await expectRefused(watched, () => startWith(char, variant), /character devices|not a regular file but a character device/);
    }
    // A tree with device nodes in it: they are skipped, never labeled.
    const tree = path.join(attack, 'dev-tree');
    await mkdir(tree);
    await chown(tree, REQUESTER_UID, REQUESTER_UID);
    const inner = path.join(tree, 'sdy');
    await execFileP('mknod', [inner, 'b', '7', '1']);
    await execFileP('setfattr', ['-n', 'security.selinux', '-v', ORIGINAL_LABEL, inner]);
    const before = await snapshotFiles([inner]);
    const result = await relabel(user, tree, 'shared') as { skippedSymlinksAndSpecial: string[] };
    expect(result.skippedSymlinksAndSpecial).toEqual([inner]);
    expect(diffSnapshots(before, await snapshotFiles([inner]))).toEqual([]);
    await relabel(user, tree, 'restore');
  });

  it('refuses every system directory of the deny-list and what lies under it, but allows a configured pool', async () => {
    const denied = ['/', '/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/root', '/run', '/sbin', '/sys', '/usr', '/var'];
    const existing: string[] = [];
    for (const d of denied) if (await stat(d).then(() => true, () => false)) existing.push(d);
    const inside = ['/etc/hostname', '/usr/bin/env', '/var/lib', '/dev/null', '/boot/../etc/shadow'];
    for (const helper of [root, user]) {
      // (For root, /root is also its home: refused as such first.)
      for (const d of denied) await expectRefused(existing, () => relabel(helper, d, 'shared'), /system directory|home directory itself/);
      for (const d of [...denied.slice(1).map((x) => `${x}/`), ...inside.slice(0, 4)]) {
        await expectRefused([...existing, '/etc/hostname'], () => relabel(helper, d, 'readonly'), /system directory|home directory itself/);
      }
    }
    for (const p of ['/etc/hostname', '/usr/bin/env']) {
      await expectRefused(['/etc/hostname', '/dev/null'], () => startWith(p, 'relabel-off', root), /system directory/);
    }
    // A disk under /dev goes to the block-device rules (block-devices.ts), which want a block device.
    await expectRefused(['/etc/hostname', '/dev/null'], () => startWith('/dev/null', 'relabel-off', root), /"\/dev\/null": it is not a block device/);
    // The configured pool /var/lib/libvirt/images: a file in it may be relabeled, the pool itself may not.
    const pool = '/var/lib/libvirt/images';
    for (const dir of ['/var/lib/libvirt', pool]) {
      if (!(await stat(dir).then(() => true, () => false))) {
        await mkdir(dir);
        created.push(dir);
      }
    }
    const pooled = await file(path.join(pool, `svirt-reliability-${randomBytes(4).toString('hex')}.img`), 0);
    created.push(pooled);
    await expectRefused([pooled], () => relabel(root, pool, 'shared'), /system directory \/var/);
    await relabel(user, pooled, 'shared');
    expect((await snapshotFiles([pooled])).get(pooled)?.label).toBe(SHARED_LABEL);
    await relabel(user, pooled, 'restore');
    expect((await snapshotFiles([pooled])).get(pooled)?.label).toBe(ORIGINAL_LABEL);
  });

  it("refuses the requester's home directory itself, not the files in it", async () => {
    // The helper reads the requester's home from /etc/passwd: a short-lived account whose home is a
    // directory of this test (created with useradd, removed after), so no real home is touched.
    const name = `svrel${randomBytes(3).toString('hex')}`;
    const home = path.join(host.dir, 'home', name);
    await mkdir(home, { recursive: true });
    // useradd exits 10 while another useradd (the helper's, for its qemu user) holds /etc/passwd.
    for (let attempt = 0; ; attempt++) {
      const added = await execFileP('useradd', ['--no-create-home', '--home-dir', home, '--shell', '/usr/sbin/nologin', name]).then(() => 0, (e: { code?: number }) => e.code ?? 1);
      if (added === 0) break;
      if (added !== 10 || attempt > 20) throw new Error(`useradd ${name} failed (${added})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      const uid = Number((await execFileP('id', ['-u', name])).stdout.trim());
      await chown(home, uid, uid);
      await execFileP('setfattr', ['-n', 'security.selinux', '-v', ORIGINAL_LABEL, home]);
      const inside = await file(path.join(home, 'disk.img'), uid);
      const helper = host.startHelper(helperEnv(uid));
      await expectRefused([home, inside], () => relabel(helper, home, 'shared'), /home directory itself/);
      await expectRefused([home, inside], () => relabel(helper, `${home}/`, 'readonly'), /home directory itself/);
      await relabel(helper, inside, 'shared');
      expect((await snapshotFiles([inside])).get(inside)?.label).toBe(SHARED_LABEL);
      await relabel(helper, inside, 'restore');
      await helper.close();
    } finally {
      await execFileP('userdel', [name]);
    }
  });

  it('refuses to relabel a file held private by another running VM, for relabel and for start', async () => {
    await mkdir(path.join(host.dir, 'held'));
    const [a, b] = await Promise.all([host.disk('held/a.img'), host.disk('held/b.img')]);
    const vmA = await root.request('start', { definition: vmDefinition(host, 'holder-a', [{ path: a as string, class: 'private' }]), allowUnconfined: true });
    await root.request('start', { definition: vmDefinition(host, 'holder-b', [{ path: b as string, class: 'private' }]), allowUnconfined: true });
    const held = `system_u:object_r:svirt_image_t:${vmA.level}`;
    expect((await snapshotFiles([a as string])).get(a as string)?.label).toBe(held);
    const watched = [a as string, b as string];
    await expectRefused(watched, () => relabel(root, a as string, 'private', 'holder-b'), /already in use by VM 0\/holder-a/, 'conflict');
    await expectRefused(watched, () => relabel(root, a as string, 'shared'), /already in use by VM 0\/holder-a/, 'conflict');
    await expectRefused(watched, () => relabel(root, a as string, 'readonly'), /already in use by VM 0\/holder-a/, 'conflict');
    await expectRefused(watched, () => relabel(root, a as string, 'restore'), /held privately by running VM 0\/holder-a/, 'conflict');
    await expectRefused(watched, () => relabel(root, path.join(host.dir, 'held'), 'shared'), /already in use by VM 0\/holder-/, 'conflict');
    await expectRefused(watched, () => startWith(a as string, 'private', root, 'holder-c'), /already in use by VM 0\/holder-a/, 'conflict');
    await root.request('forceOff', { vm: 'holder-a' });
    await root.request('forceOff', { vm: 'holder-b' });
    const after = await snapshotFiles(watched);
    expect([...after.values()].map((s) => s.label)).toEqual([ORIGINAL_LABEL, ORIGINAL_LABEL]);
  });
});

/**
 * Runs the swapper while `work` runs (it gets a `racing()` check and returns once it has seen enough);
 * returns how many swaps were made.
 */
async function racing<T>(target: string, real: string, linkName: string, work: () => Promise<T>): Promise<{ swaps: number; result: T }> {
  const stop = path.join(host.dir, `.stop-${randomBytes(4).toString('hex')}`);
  const child = spawn(process.execPath, [path.resolve('test/reliability/support/swapper.mjs'), target, real, linkName, '60000', stop], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  let result: T;
  try {
    result = await work();
  } finally {
    await writeFile(stop, '');
  }
  expect(await exited).toBe(0);
  return { swaps: Number(out.trim()), result };
}

/**
 * Issues `round` until `minMs` have passed and some request went through (proof that the race was run
 * against a target that was sometimes the real file), or until `maxMs`.
 */
async function raceRequests(round: () => Promise<Refusal[]>, minMs: number, maxMs: number): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  const start = Date.now();
  while (Date.now() - start < maxMs && (Date.now() - start < minMs || !outcomes.has('ACCEPTED'))) {
    for (const r of await round()) outcomes.set(r.code, (outcomes.get(r.code) ?? 0) + 1);
  }
  return outcomes;
}

describe('time of check to time of use', () => {
  it('labels the file that was checked, or nothing, while a renamer swaps it with a symlink to a decoy', async () => {
    const target = path.join(attack, 'race.img');
    const real = path.join(attack, '.race-real');
    const linkName = path.join(attack, '.race-link');
    await file(target, REQUESTER_UID);
    await symlink(decoy, linkName);
    const watched = [decoy, '/etc/shadow'];
    const before = await snapshotFiles(watched);
    const { swaps, result: outcomes } = await racing(target, real, linkName, () => raceRequests(
      () => Promise.all([root, user].flatMap((h) => ['shared', 'readonly', 'restore'].map((m) => refusal(relabel(h, target, m))))), 2500, 20_000));
    expect(swaps).toBeGreaterThan(100);
    expect(outcomes.get('ACCEPTED') ?? 0).toBeGreaterThan(0); // the race was real: some requests did go through
    expect(diffSnapshots(before, await snapshotFiles(watched))).toEqual([]);
  });

  it('never lets a tree relabel follow a directory swapped for a symlink after the walk', async () => {
    const tree = path.join(attack, 'race-tree');
    const sub = path.join(tree, 'sub');
    const real = path.join(tree, '.sub-real');
    const linkName = path.join(tree, '.sub-link');
    const decoyTree = path.join(decoyDir, 'tree');
    await mkdir(sub, { recursive: true });
    await mkdir(decoyTree);
    const names = Array.from({ length: 300 }, (_, i) => `f${i}.img`);
    for (const n of names) {
      await writeFile(path.join(sub, n), 'x');
      await writeFile(path.join(decoyTree, n), 'decoy');
    }
    await execFileP('chown', ['-R', `${REQUESTER_UID}:${REQUESTER_UID}`, tree]);
    await execFileP('setfattr', ['-n', 'security.selinux', '-v', DECOY_LABEL, ...names.map((n) => path.join(decoyTree, n))]);
    await symlink(decoyTree, linkName);
    const watched = [decoyTree, ...names.map((n) => path.join(decoyTree, n))];
    const before = await snapshotFiles(watched);
    const { swaps, result: outcomes } = await racing(sub, real, linkName, () => raceRequests(async () => {
      const out: Refusal[] = [];
      for (const [h, m] of [[user, 'shared'], [root, 'readonly'], [user, 'restore']] as const) out.push(await refusal(relabel(h, tree, m)));
      return out;
    }, 4000, 30_000));
    expect(swaps).toBeGreaterThan(100);
    expect(outcomes.get('ACCEPTED') ?? 0).toBeGreaterThan(0);
    const changed = diffSnapshots(before, await snapshotFiles(watched));
    expect(changed.slice(0, 5), `${changed.length} decoy files changed; outcomes ${JSON.stringify([...outcomes])}`).toEqual([]);
  });
});

