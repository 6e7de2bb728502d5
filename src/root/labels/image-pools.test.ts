import { chmod, chown, mkdir, mkdtemp, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadHelperConfig, resolveRequester } from '../helper/helper-config';
import { readLabel, writeLabel } from '../../security/selinux/file-labels';
import { emptyJournal } from './label-journal';
import { openRelabelTarget, type ImagePool, type PathPolicyConfig, type Requester } from '../../host/path-policy';
import { labelContentTree, labelFile, type RelabelContext } from './relabeler';

// Image pools on real files (issue 12, item 7): none by default, each says who may use it and whether
// files another user owns in it are shared. Pools live under /var/tmp, where the path rules refuse
// everything that is not in a pool.
const ORIGINAL = 'unconfined_u:object_r:user_home_t:s0';
const PRIVATE = 'system_u:object_r:svirt_image_t:s0:c1,c2';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const MEMBER: Requester = { uid: 4242, name: 'pool-member', groups: ['pool-member', 'vmusers'] };
const OUTSIDER: Requester = { uid: 4343, name: 'outsider', groups: ['outsider'] };

let pool: string;
let scratch: string;

beforeEach(async () => {
  pool = await mkdtemp('/var/tmp/svirt-pool-');
  scratch = await mkdtemp('/var/tmp/svirt-pool-scratch-');
});
afterEach(async () => {
  await rm(pool, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

const config = (pools: Partial<ImagePool>[]): PathPolicyConfig => ({
  pools: pools.map((p) => ({ path: pool, users: [], groups: [], shared: false, ...p })),
  devices: [],
});

async function image(dir: string, name: string, owner: number, mode = 0o600): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, 'image');
  await chown(p, owner, owner);
  await chmod(p, mode);
  await writeLabel(p, ORIGINAL);
  return p;
}

const opens = (p: string, policy: PathPolicyConfig, requester: Requester) =>
  openRelabelTarget(p, { config: policy, requester }).then(async (opened) => {
    await opened.handle.close();
    return 'opened';
  });

function context(policy: PathPolicyConfig, requester: Requester): RelabelContext {
  return { journal: emptyJournal(), persist: async () => {}, config: policy, requester, isRunning: () => false, treeLogDir: path.join(scratch, 'trees') };
}

describe('image pools', () => {
  it('has no default pools: a root-owned 0600 image in /var/lib/libvirt/images is refused to a user', async () => {
    const configFile = path.join(scratch, 'helper.json');
    await writeFile(configFile, '{}');
    const { pathPolicy } = await loadHelperConfig({ SVIRT_HELPER_CONFIG: configFile });
    expect(pathPolicy.pools).toEqual([]);
    const libvirtImages = '/var/lib/libvirt/images';
    const existed = await stat(libvirtImages).then(() => true, () => false);
    await mkdir(libvirtImages, { recursive: true });
    const img = await image(libvirtImages, `svirt-test-${process.pid}.qcow2`, 0);
    try {
      await expect(labelFile(context(pathPolicy, MEMBER), 'vm', 'private', img, PRIVATE)).rejects.toThrow(/system directory \/var/);
      expect(await readLabel(img)).toBe(ORIGINAL);
    } finally {
      await rm(img, { force: true });
      if (!existed) await rmdir(libvirtImages).then(() => rmdir('/var/lib/libvirt')).catch(() => undefined);
    }
  });

  it('lets the members of a pool\'s group use it, and nobody else', async () => {
    const policy = config([{ groups: ['vmusers'] }]);
    const mine = await image(pool, 'member.img', MEMBER.uid);
    const theirs = await image(pool, 'outsider.img', OUTSIDER.uid);
    expect(await opens(mine, policy, MEMBER)).toBe('opened');
    // The outsider's own file in the pool is refused too: outside a pool they may use, /var is the system's.
    await expect(opens(theirs, policy, OUTSIDER)).rejects.toThrow(/system directory \/var \(outside the configured image pools\)/);
    expect(await opens(theirs, config([{ users: ['outsider'] }]), OUTSIDER)).toBe('opened');
    expect(await opens(theirs, config([{ users: [String(OUTSIDER.uid)] }]), OUTSIDER)).toBe('opened');
  });

  it('keeps a file another user owns in a pool theirs unless the pool is shared', async () => {
    const foreign = await image(pool, 'foreign.img', OUTSIDER.uid);
    await expect(labelFile(context(config([{ groups: ['vmusers'] }]), MEMBER), 'vm', 'private', foreign, PRIVATE))
      .rejects.toThrow(/belongs to uid 4343, not to the requesting user \(uid 4242\) \(the pool .* is not shared\)/);
    expect(await readLabel(foreign)).toBe(ORIGINAL);
    await labelFile(context(config([{ groups: ['vmusers'], shared: true }]), MEMBER), 'vm', 'private', foreign, PRIVATE);
    expect(await readLabel(foreign)).toBe(PRIVATE);
  });

  it('applies the same pool rules to a tree relabeled in one walk by svirt-label-tree', async () => {
    const tree = path.join(pool, 'tree');
    await mkdir(tree);
    await chown(tree, MEMBER.uid, MEMBER.uid);
    await writeLabel(tree, ORIGINAL);
    const foreign = await image(tree, 'foreign.img', OUTSIDER.uid, 0o644);
    await expect(labelContentTree(context(config([{ groups: ['vmusers'] }]), MEMBER), tree, 'shared', SHARED)).rejects.toThrow(/4343|owner|belongs/);
    expect(await readLabel(foreign)).toBe(ORIGINAL);
    // The pool inside a tree the member owns elsewhere: shared, so the tool may label its foreign files.
    await labelContentTree(context(config([{ groups: ['vmusers'], shared: true }]), MEMBER), tree, 'shared', SHARED);
    expect(await readLabel(foreign)).toBe(SHARED);
  });

  it('refuses a helper.json pool given as a plain path, naming the entry', async () => {
    const configFile = path.join(scratch, 'helper.json');
    await writeFile(configFile, JSON.stringify({ pools: [{ path: '/srv/vm' }, '/var/lib/libvirt/images'] }));
    await expect(loadHelperConfig({ SVIRT_HELPER_CONFIG: configFile })).rejects.toThrow(/pools\[1\] is a plain path/);
    await writeFile(configFile, JSON.stringify({ pools: [{ path: '/srv/../etc' }] }));
    await expect(loadHelperConfig({ SVIRT_HELPER_CONFIG: configFile })).rejects.toThrow(/pools\[0\]\.path/);
  });

  it('knows the requester\'s user name and groups from /etc/passwd and /etc/group', async () => {
    const requester = await resolveRequester({ SUDO_UID: '1' });
    expect(requester).toMatchObject({ uid: 1, name: 'daemon' });
    expect(requester.groups).toContain('daemon');
  });
});
