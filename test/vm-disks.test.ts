import { execFile } from 'node:child_process';
import { chown, mkdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/user/helper-client';
import { readLabel, writeLabel } from '../src/security/selinux/file-labels';
import { GUEST_READY_MARKER } from './support/guest';
import { ConsoleTap, createTestHost, ORIGINAL_LABEL, type TestHost } from './support/helper-session';
import { wireDefinition } from './support/wire-definition';

// Real helper, real qemu (TCG), real qcow2 chains and labels: disks (issue 13 §3) and running-VM control (§5).
const execFileAsync = promisify(execFile);
let host: TestHost;
let helper: HelperClient;

const CONTENT = 'system_u:object_r:virt_content_t:s0';
const definition = (name: string, disks: object[]) => wireDefinition({
  version: 1, name, memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(),
  boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
  disks, seclabel: { mode: 'dynamic' },
});

async function overlayOver(base: string, name: string, owner?: number): Promise<string> {
  const overlay = path.join(path.dirname(base), name);
  await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay]);
  await writeLabel(overlay, ORIGINAL_LABEL);
  if (owner !== undefined) await chown(overlay, owner, owner);
  return overlay;
}

beforeAll(async () => {
  host = await createTestHost();
  helper = host.startHelper();
});
afterAll(async () => {
  const running = await helper.request('list').catch(() => []);
  for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  await host.dispose();
});

describe('qcow2 backing chains and running-VM control', () => {
  it('runs a VM on an overlay: the overlay carries its pair, the backing file read-only content, qemu gets only fds, and both get their labels back at stop', async () => {
    const base = await host.disk('base.raw');
    const overlay = await overlayOver(base, 'overlay.qcow2');
    const vm = await helper.request('start', {
      definition: definition('chain', [{ path: overlay, format: 'qcow2', class: 'private', relabel: true }]), allowUnconfined: true,
    });
    expect(await readLabel(overlay)).toBe(`system_u:object_r:svirt_image_t:${vm.level}`);
    expect(await readLabel(base)).toBe(CONTENT);

    const argv = (await readFile(`/proc/${vm.pid}/cmdline`, 'utf8')).split('\0');
    expect(argv.filter((a) => a.includes(overlay) || a.includes(base) || a.includes('.qcow2') || a.includes('.raw'))).toEqual([]);
    const blockdevs = argv.filter((a, i) => argv[i - 1] === '-blockdev').map((a) => JSON.parse(a) as { filename?: string; backing?: unknown });
    expect(blockdevs.filter((b) => b.filename !== undefined).map((b) => b.filename)).toEqual(['/dev/fdset/2', '/dev/fdset/1']);

    // The guest sees the backing file's 8 MiB through the overlay.
    const tap = await ConsoleTap.attach(helper, 'chain');
    await tap.waitFor(new RegExp(GUEST_READY_MARKER));
    await tap.run('cat /sys/block/vda/size', /^16384\r?$/m);

    const paused = await helper.request('control', { vm: 'chain', action: 'pause' });
    expect(paused).toMatchObject({ status: 'paused', running: false });
    expect(await helper.request('control', { vm: 'chain', action: 'resume' })).toMatchObject({ status: 'running', running: true });
    await tap.run('echo $((6*7))', /^42\r?$/m);

    // Snapshots of a running VM go through QMP into the overlay; reverting under a running guest is refused.
    const taken = await helper.request('snapshot', { vm: 'chain', op: 'take', name: 'live1' });
    expect(taken.disks.map((d) => [d.disk, d.snapshots.map((s) => s.name)])).toEqual([[overlay, ['live1']]]);
    await expect(helper.request('snapshot', { vm: 'chain', op: 'revert', name: 'live1' })).rejects.toThrow(/stop the VM to revert/);
    await expect(helper.request('snapshot', { vm: 'chain', op: 'take', name: '-l' })).rejects.toThrow(/name/);
    const afterDelete = await helper.request('snapshot', { vm: 'chain', op: 'delete', name: 'live1' });
    expect(afterDelete.disks[0]?.snapshots).toEqual([]);

    const from = tap.output.length;
    expect(await helper.request('control', { vm: 'chain', action: 'reboot' })).toMatchObject({ status: 'running' });
    await tap.waitFor(new RegExp(GUEST_READY_MARKER), 60_000, from);

    await helper.request('stop', { vm: 'chain', force: true });
    expect(await readLabel(overlay)).toBe(ORIGINAL_LABEL);
    expect(await readLabel(base)).toBe(ORIGINAL_LABEL);
    // Two boots and a reset under TCG on a shared 2-core machine.
  }, 600_000);

  it("refuses a backing file that belongs to another user, before labeling anything", async () => {
    // The requester is uid 1000 (as sudo would say); its overlay names a file of uid 65534's.
    const mine = path.join(host.dir, 'home-1000');
    const theirs = path.join(host.dir, 'home-65534');
    await mkdir(mine, { mode: 0o755 });
    await mkdir(theirs, { mode: 0o755 });
    await chown(mine, 1000, 1000);
    await chown(theirs, 65534, 65534);
    const base = await host.disk('their-base.raw');
    const theirBase = path.join(theirs, 'base.raw');
    await execFileAsync('mv', [base, theirBase]);
    await chown(theirBase, 65534, 65534);
    const overlay = await overlayOver(theirBase, 'x.qcow2', 1000);
    const myOverlay = path.join(mine, 'overlay.qcow2');
    await execFileAsync('mv', [overlay, myOverlay]);

    const asUser = host.startHelper({ SUDO_UID: '1000' });
    await expect(asUser.request('start', {
      definition: definition('stolen', [{ path: myOverlay, format: 'qcow2', class: 'private', relabel: true }]), allowUnconfined: true,
    })).rejects.toThrow(`refusing "${theirBase}": it belongs to uid 65534, not to the requesting user (uid 1000)`);
    expect(await readLabel(myOverlay)).toBe(ORIGINAL_LABEL);
    expect(await readLabel(theirBase)).toBe(ORIGINAL_LABEL);
    await asUser.close();
  });
});
