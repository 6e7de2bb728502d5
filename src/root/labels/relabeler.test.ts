import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readdir, rename, rm, symlink, writeFile, link, chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readLabel, writeLabel } from '../../security/selinux/file-labels';
import { emptyJournal, type JournalData } from './label-journal';
import { DEFAULT_PATH_POLICY } from '../../host/path-policy';
import { WalkCancelledError } from './label-tree-tool';
import { labelContentTree, labelFile, labelFiles, LabelConflictError, removeOrphanTreeLogs, restoreContent, restoreHolder, type RelabelContext } from './relabeler';

const PRIVATE_A = 'system_u:object_r:svirt_image_t:s0:c1,c2';
const PRIVATE_B = 'system_u:object_r:svirt_image_t:s0:c3,c4';
const ORIGINAL = 'unconfined_u:object_r:user_home_t:s0';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const CONTENT = 'system_u:object_r:virt_content_t:s0';
const execFileP = promisify(execFile);

let dir: string;
let journal: JournalData;
let persisted: string[];
let running: Set<string>;

function context(uid = 0): RelabelContext {
  return {
    journal,
    persist: async () => { persisted.push(JSON.stringify(journal)); },
    config: DEFAULT_PATH_POLICY,
    requester: { uid },
    isRunning: (id) => running.has(id),
    treeLogDir: path.join(dir, '.trees'),
  };
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-relabel-'));
  journal = emptyJournal();
  persisted = [];
  running = new Set();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, label: string | null = ORIGINAL): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, 'data');
  if (label) await writeLabel(p, label);
  return p;
}

describe('relabeler on real files', () => {
  it('labels a private image, journals the original first, and restores it', async () => {
    const disk = await file('a.img');
    const entry = await labelFile(context(), 'vm-a', 'private', disk, PRIVATE_A);
    expect(await readLabel(disk)).toBe(PRIVATE_A);
    expect(entry.original).toBe(ORIGINAL);
    expect(JSON.parse(persisted[0] as string).entries[disk].original).toBe(ORIGINAL);
    running.add('vm-a');
    const result = await restoreHolder(context(), 'vm-a');
    expect(result.restored).toBe(1);
    expect(await readLabel(disk)).toBe(ORIGINAL);
    expect(journal.entries).toEqual({});
  });

  it('refuses a malformed label or one without a level before touching the file, naming the label', async () => {
    const disk = await file('a.img');
    await expect(labelFile(context(), 'vm-a', 'private', disk, 'system_u:object_r:svirt_image_t')).rejects.toThrow(/^label must carry an MCS\/MLS level/);
    await expect(labelFile(context(), 'vm-a', 'private', disk, 'garbage')).rejects.toThrow(/^label: invalid context/);
    await expect(labelContentTree(context(), dir, 'shared', 'u:r:t:s0:cX')).rejects.toThrow(/^label: invalid categories/);
    expect(await readLabel(disk)).toBe(ORIGINAL);
    expect(journal.entries).toEqual({});
    expect(persisted).toEqual([]);
  });

  it('restores "no label" by removing the attribute', async () => {
    const disk = await file('bare.img', null);
    await labelFile(context(), 'vm-a', 'private', disk, PRIVATE_A);
    await restoreHolder(context(), 'vm-a');
    expect(await readLabel(disk)).toBeNull();
  });

  it('refuses a different label on a file a running VM holds (already in use), changing nothing', async () => {
    const disk = await file('a.img');
    await labelFile(context(), 'vm-a', 'private', disk, PRIVATE_A);
    running.add('vm-a');
    await expect(labelFile(context(), 'vm-b', 'private', disk, PRIVATE_B)).rejects.toThrow(LabelConflictError);
    await expect(labelContentTree(context(), disk, 'shared', SHARED)).rejects.toThrow(/already in use by VM vm-a/);
    expect(await readLabel(disk)).toBe(PRIVATE_A);
    expect(journal.entries[disk]?.holder).toBe('vm-a');
  });

  it('journals all of a VM\'s files in one write before changing any, and a file in use changes none of them', async () => {
    const [disk, kernel, busy] = [await file('a.img'), await file('vmlinuz'), await file('busy.img')];
    await labelFile(context(), 'vm-a', 'private', busy, PRIVATE_A);
    running.add('vm-a');
    persisted = [];
    const changes = [
      { kind: 'private' as const, target: disk, label: PRIVATE_B },
      { kind: 'readonly' as const, target: kernel, label: CONTENT },
      { kind: 'private' as const, target: busy, label: PRIVATE_B },
    ];
    await expect(labelFiles(context(), 'vm-b', changes)).rejects.toThrow(/busy\.img is already in use by VM vm-a/);
    expect([await readLabel(disk), await readLabel(kernel)]).toEqual([ORIGINAL, ORIGINAL]);
    expect(Object.keys(journal.entries)).toEqual([busy]);
    expect(persisted).toEqual([]);

    await labelFiles(context(), 'vm-b', changes.slice(0, 2));
    expect([await readLabel(disk), await readLabel(kernel)]).toEqual([PRIVATE_B, CONTENT]);
    expect(persisted).toHaveLength(1);
    expect(JSON.parse(persisted[0] as string).entries[kernel]).toMatchObject({ holder: 'vm-b', original: ORIGINAL, applied: CONTENT });
  });

  it('does not restore a file that was replaced by another inode', async () => {
    const disk = await file('a.img');
    await labelFile(context(), 'vm-a', 'private', disk, PRIVATE_A);
    // Create the replacement before the old inode is freed, so its inode number must differ.
    const replacement = await file('new.img', PRIVATE_B);
    await rename(replacement, disk);
    const result = await restoreHolder(context(), 'vm-a');
    expect(result.skipped[0]?.reason).toMatch(/replaced/);
    expect(await readLabel(disk)).toBe(PRIVATE_B);
  });

  it('refuses symlinks, symlinked parents, other users\' files, and system paths without touching them', async () => {
    const target = await file('target.img');
    const link1 = path.join(dir, 'link.img');
    await symlink(target, link1);
    await expect(labelFile(context(), 'vm-a', 'private', link1, PRIVATE_A)).rejects.toThrow(/symbolic link/);
    await mkdir(path.join(dir, 'real'));
    const inner = path.join(dir, 'real', 'x.img');
    await writeFile(inner, 'x');
    await symlink(path.join(dir, 'real'), path.join(dir, 'alias'));
    await expect(labelFile(context(), 'vm-a', 'private', path.join(dir, 'alias', 'x.img'), PRIVATE_A)).rejects.toThrow(/resolves to/);
    await expect(labelFile(context(), 'vm-a', 'private', '/etc/shadow', PRIVATE_A)).rejects.toThrow(/system directory \/etc/);
    await expect(labelFile(context(), 'vm-a', 'private', `${dir}/../x`, PRIVATE_A)).rejects.toThrow(/"\.\."/);
    const hard = path.join(dir, 'hard.img');
    await link(target, hard);
    await chown(target, 4242, 4242);
    await expect(labelFile(context(1000), 'vm-a', 'private', hard, PRIVATE_A)).rejects.toThrow(/belongs to uid 4242/);
    expect(await readLabel(target)).toBe(ORIGINAL);
    expect(journal.entries).toEqual({});
  });

  it('labels a content tree with progress, skips symlinks, and restores it', async () => {
    const root = path.join(dir, 'iso');
    await mkdir(path.join(root, 'sub'), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(path.join(root, 'sub', `f${i}`), 'x');
    await writeLabel(path.join(root, 'sub', 'f0'), ORIGINAL);
    await symlink('/etc/passwd', path.join(root, 'passwd'));
    const progress: number[] = [];
    const result = await labelContentTree(context(), root, 'readonly', 'system_u:object_r:virt_content_t:s0', (done) => progress.push(done));
    expect(result.labeled).toBe(7);
    expect(result.skippedSymlinksAndSpecial).toEqual([path.join(root, 'passwd')]);
    expect(progress.at(-1)).toBe(7);
    expect(await readLabel(path.join(root, 'sub', 'f3'))).toBe('system_u:object_r:virt_content_t:s0');
    expect(await readLabel('/etc/passwd')).not.toBe('system_u:object_r:virt_content_t:s0');
    await restoreContent(context(), root);
    expect(await readLabel(path.join(root, 'sub', 'f0'))).toBe(ORIGINAL);
    expect(await readLabel(path.join(root, 'sub', 'f3'))).toBeNull();
  });

  it('keeps the first originals when a labeled tree is relabeled, and restores them exactly', async () => {
    const root = path.join(dir, 'content');
    await mkdir(path.join(root, 'a b'), { recursive: true });
    const custom = 'system_u:object_r:samba_share_t:s0';
    await file('content/a b/one', custom);
    await file('content/two', null);
    await link(path.join(root, 'two'), path.join(root, 'a b', 'two-again')); // one inode, two names
    await labelContentTree(context(), root, 'shared', SHARED);
    await labelContentTree(context(), root, 'readonly', CONTENT);
    expect(await readLabel(path.join(root, 'a b', 'one'))).toBe(CONTENT);
    expect(Object.keys(journal.trees ?? {})).toHaveLength(1); // the second log replaced the first
    expect(await readdir(path.join(dir, '.trees'))).toHaveLength(1);
    const result = await restoreContent(context(), root);
    expect(result.restored).toBe(5);
    expect(await readLabel(path.join(root, 'a b', 'one'))).toBe(custom);
    expect(await readLabel(path.join(root, 'two'))).toBeNull();
    expect(await readLabel(path.join(root, 'a b', 'two-again'))).toBeNull();
    expect(journal.trees).toEqual({});
    expect(await readdir(path.join(dir, '.trees'))).toEqual([]);
  });

  it('journals the tree before the walk and removes it when the walk is refused, changing nothing', async () => {
    // Many directories, another user's file early among them: the workers (one per CPU) are still
    // labeling when one of them refuses, and all must have stopped once the refusal is reported.
    const root = path.join(dir, 'mixed');
    const files: string[] = [];
    for (let d = 0; d < 300; d++) {
      await mkdir(path.join(root, `d${d}`), { recursive: true });
      for (let i = 0; i < 10; i++) files.push(path.join(root, `d${d}`, `f${i}`));
    }
    await Promise.all(files.map((f) => writeFile(f, '')));
    await execFileP('chcon', ['-R', ORIGINAL, root]);
    await execFileP('chown', ['-R', '1000:1000', root]);
    await chown(path.join(root, 'd1', 'f3'), 4242, 4242);
    const journaled: number[] = [];
    const ctx = { ...context(1000), persist: async () => { journaled.push(Object.keys(journal.trees ?? {}).length); } };
    await expect(labelContentTree(ctx, root, 'shared', SHARED)).rejects.toThrow(/refusing ".*d1\/f3": it belongs to uid 4242/);
    expect(journaled[0]).toBe(1); // the tree was in the journal before any file changed
    await new Promise((resolve) => setTimeout(resolve, 300)); // a worker left running would label on
    const { stdout } = await execFileP('getfattr', ['-R', '-h', '-n', 'security.selinux', '--absolute-names', root], { maxBuffer: 16 << 20 });
    expect(stdout.split('\n').filter((l) => l.startsWith('security.selinux=') && !l.includes(ORIGINAL))).toEqual([]);
    expect(journal.trees).toEqual({});
    expect(await readdir(path.join(dir, '.trees'))).toEqual([]);
  });

  it('restores part of a labeled tree, then the rest, and skips files replaced in between', async () => {
    const root = path.join(dir, 'lib');
    await mkdir(path.join(root, 'isos'), { recursive: true });
    await file('lib/isos/a.iso');
    await file('lib/readme');
    await file('lib/replaced');
    await labelContentTree(context(), root, 'readonly', CONTENT);
    const partial = await restoreContent(context(), path.join(root, 'isos'));
    expect(partial.restored).toBe(2); // the directory and its file
    expect(await readLabel(path.join(root, 'isos', 'a.iso'))).toBe(ORIGINAL);
    expect(await readLabel(path.join(root, 'readme'))).toBe(CONTENT);
    await rm(path.join(root, 'replaced'));
    await file('lib/replaced', CONTENT);
    const rest = await restoreContent(context(), root);
    expect(rest.skipped.map((s) => s.path)).toEqual([path.join(root, 'replaced')]);
    expect(await readLabel(path.join(root, 'readme'))).toBe(ORIGINAL);
    expect(await readLabel(path.join(root, 'replaced'))).toBe(CONTENT);
  });

  it('carries the original of a file labeled alone into a tree relabel over it', async () => {
    const root = path.join(dir, 'pool');
    await mkdir(root);
    const disk = await file('pool/shared.img');
    await labelFile(context(), 'vm-a', 'shared', disk, SHARED);
    await labelContentTree(context(), root, 'readonly', CONTENT);
    expect(journal.entries).toEqual({}); // the tree's log holds it now
    await restoreContent(context(), root);
    expect(await readLabel(disk)).toBe(ORIGINAL);
  });

  it('removes tree logs the journal does not name, and nothing else', async () => {
    const root = path.join(dir, 'kept');
    await mkdir(root);
    await file('kept/a');
    await labelContentTree(context(), root, 'shared', SHARED);
    const [kept] = Object.keys(journal.trees ?? {});
    const orphan = '00000000-1111-4222-8333-444444444444.log';
    await writeFile(path.join(dir, '.trees', orphan), '1 - - = .\n');
    await writeFile(path.join(dir, '.trees', 'notes.txt'), 'not ours');
    expect(await removeOrphanTreeLogs(context())).toEqual([orphan]);
    expect((await readdir(path.join(dir, '.trees'))).sort()).toEqual([kept, 'notes.txt'].sort());
  });

  it('lets only a user who may relabel a path restore it', async () => {
    const root = path.join(dir, 'theirs');
    await mkdir(root);
    await file('theirs/a');
    await execFileP('chown', ['-R', '4242:4242', root]);
    await labelContentTree(context(), root, 'shared', SHARED);
    await expect(restoreContent(context(1000), root)).rejects.toThrow(/belongs to uid 4242/);
    expect(await readLabel(path.join(root, 'a'))).toBe(SHARED);
    expect((await restoreContent(context(4242), root)).restored).toBe(2);
    expect(await readLabel(path.join(root, 'a'))).toBe(ORIGINAL);
  });

  it("refuses to drop another user's records of a tree that no longer exists, and lets its owner drop them", async () => {
    const root = path.join(dir, 'theirs');
    await mkdir(root);
    await file('theirs/a');
    await execFileP('chown', ['-R', '4242:4242', root]);
    await labelContentTree(context(4242), root, 'shared', SHARED);
    const [logName] = Object.keys(journal.trees ?? {});
    await rm(root, { recursive: true });
    await expect(restoreContent(context(1000), root)).rejects.toThrow(/no longer exists, and .*theirs was labeled for uid 4242/);
    expect(Object.keys(journal.trees ?? {})).toEqual([logName]);
    expect(await readdir(path.join(dir, '.trees'))).toEqual([logName]);
    await restoreContent(context(4242), root);
    expect(journal.trees).toEqual({});
    expect(await readdir(path.join(dir, '.trees'))).toEqual([]);
  });
});

describe('restore is total', () => {
  // The sequence a user can run on their own files: a tree labeled, one file of it restored alone, a hard
  // link to that file (outside the tree, so the tree's restore sees no private hold) labeled for a running
  // VM with "no label" as its original, then the whole tree restored: the inode loses its attribute while
  // the VM's entry still says "remove it".
  async function goneAttributeSequence(): Promise<{ link: string }> {
    const root = path.join(dir, 'tree');
    await mkdir(root);
    const inner = await file('tree/disk.img', null);
    const outer = path.join(dir, 'disk-link.img');
    await link(inner, outer);
    await labelContentTree(context(), root, 'shared', SHARED);
    await restoreContent(context(), inner);
    await labelFile(context(), 'vm-a', 'private', outer, PRIVATE_A);
    running.add('vm-a');
    await restoreContent(context(), root);
    expect(await readLabel(outer)).toBeNull();
    return { link: outer };
  }

  it('skips (and reports) a private entry whose attribute is already gone instead of failing', async () => {
    const { link: outer } = await goneAttributeSequence();
    running.delete('vm-a');
    const result = await restoreHolder(context(), 'vm-a');
    expect(result.restored).toBe(1);
    expect(journal.entries[outer]).toBeUndefined();
    expect(await readLabel(outer)).toBeNull();
  });

});

describe('cancelling a tree relabel', () => {
  it('stops the walk midway and puts back every label it changed: real files, read back with getfattr, and a clean journal', async () => {
    const root = path.join(dir, 'big');
    const FILES = 24_000;
    for (let d = 0; d < 60; d++) {
      const sub = path.join(root, `d${d}`);
      await mkdir(sub, { recursive: true });
      await Promise.all(Array.from({ length: FILES / 60 }, (_, k) => writeFile(path.join(sub, `f${k}`), '')));
    }
    await execFileP('chcon', ['-R', ORIGINAL, root]);
    const controller = new AbortController();
    let doneAtCancel = -1;
    const walk = labelContentTree(context(), root, 'shared', SHARED, (done) => {
      if (doneAtCancel < 0 && done > 0) {
        doneAtCancel = done;
        controller.abort();
      }
    }, controller.signal);
    await expect(walk).rejects.toBeInstanceOf(WalkCancelledError);
    // Cancelled mid-walk: some files had their new label, not all.
    expect(doneAtCancel).toBeGreaterThan(0);
    expect(doneAtCancel).toBeLessThan(FILES);
    const { stdout } = await execFileP('getfattr', ['-R', '-h', '-n', 'security.selinux', '--only-values', '--absolute-names', '-e', 'text', root], { maxBuffer: 64 * 1024 * 1024 });
    const labels = stdout.split(/\0|\n/).map((l) => l.replace(/^"|"$/g, '')).filter((l) => l.length > 0);
    expect(labels.length).toBeGreaterThanOrEqual(FILES);
    expect(labels.filter((l) => l !== ORIGINAL)).toEqual([]);
    expect(journal.trees ?? {}).toEqual({});
    expect(journal.entries).toEqual({});
    expect(await readdir(path.join(dir, '.trees')).catch(() => [])).toEqual([]);
  }, 240_000);
});
