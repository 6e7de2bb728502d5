import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLabel } from '../src/security/selinux/file-labels';
import { GUEST_READY_MARKER } from './support/guest';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from './support/helper-session';

// The new svirt commands as a user types them: the built bin, real qemu-img, a real helper, real guests.
const execFileP = promisify(execFile);
let host: TestHost;

interface Run { code: number; stdout: string; stderr: string }

async function svirtAs(options: { uid?: number; cwd?: string }, ...args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [path.resolve('bin/svirt.js'), ...args], {
      env: { ...host.env, XDG_CONFIG_HOME: path.join(host.dir, 'config'), XDG_DATA_HOME: path.join(host.dir, 'data') },
      timeout: 180_000,
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
const svirt = (...args: string[]) => svirtAs({}, ...args);

async function guestSays(vm: string, send: string, expect: string): Promise<Run> {
  return svirt('console', vm, '--send', send, '--expect', expect, '--timeout', '60');
}

beforeAll(async () => {
  host = await createTestHost();
});
afterAll(async () => {
  for (const vm of ['snap', 'snap-copy']) await svirt('stop', vm, '--force');
  await host.dispose();
});

describe('svirt disk, snapshot, clone, edit, pause/resume/reboot', () => {
  it('creates a 1 GiB qcow2 as the user who asks, owned by that user, refusing bad sizes', async () => {
    const dir = path.join(host.dir, 'user-1000');
    await mkdir(dir);
    await chown(dir, 1000, 1000);
    const created = await svirtAs({ uid: 1000, cwd: dir }, 'disk', 'create', 'new.qcow2', '--size', '1G');
    expect(created).toMatchObject({ code: 0, stdout: `created ${dir}/new.qcow2 (qcow2, 1073741824 bytes)\n` });
    expect((await stat(path.join(dir, 'new.qcow2'))).uid).toBe(1000);
    const info = JSON.parse((await execFileP('qemu-img', ['info', '--output=json', path.join(dir, 'new.qcow2')])).stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 1024 ** 3 });

    const zero = await svirtAs({ uid: 1000, cwd: dir }, 'disk', 'create', 'zero.qcow2', '--size', '0');
    expect(zero).toMatchObject({ code: 2, stderr: 'svirt: --size must be more than 0, not "0"\n' });
    expect((await svirtAs({ uid: 1000, cwd: dir }, 'disk', 'create', 'new.qcow2', '--size', '1M')).stderr).toMatch(/already exists/);
    // Not where the user may not write: qemu-img runs as the user, not as root.
    expect((await svirtAs({ uid: 1000, cwd: dir }, 'disk', 'create', '/etc/evil.qcow2', '--size', '1M')).stderr).toBe('svirt: cannot create /etc/evil.qcow2: you may not write in /etc (permission denied); choose a directory of yours\n');
  });

  it('clones a UEFI VM with its own copy of the variable store and makes a static label dynamic', async () => {
    const nvram = await host.disk('uefi_VARS.fd');
    const vms = path.join(host.dir, 'config', 'svirt-manager', 'vms');
    await mkdir(vms, { recursive: true });
    const definition = {
      version: 1, name: 'uefi-vm', memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(),
      boot: { kind: 'kernel', kernel: host.kernel }, disks: [], firmware: { kind: 'uefi', nvram },
      seclabel: { mode: 'static', label: 'system_u:system_r:svirt_t:s0:c1,c2', relabel: true },
    };
    await writeFile(path.join(vms, 'uefi-vm.json'), JSON.stringify(definition));
    const cloned = await svirt('clone', 'uefi-vm', 'uefi-copy');
    const copy = path.join(host.dir, 'uefi-copy_VARS.fd');
    expect(cloned).toMatchObject({ code: 0, stdout: `cloned uefi-vm as uefi-copy; ${nvram} -> ${copy}\n` });
    expect(cloned.stderr).toMatch(/note: uefi-vm has the static label system_u:system_r:svirt_t:s0:c1,c2; the clone is dynamic/);
    const saved = JSON.parse(await readFile(path.join(vms, 'uefi-copy.json'), 'utf8')) as { firmware: unknown; seclabel: unknown };
    expect(saved).toMatchObject({ firmware: { kind: 'uefi', nvram: copy }, seclabel: { mode: 'dynamic' } });
    expect((await readFile(copy)).equals(await readFile(nvram))).toBe(true);
    for (const vm of ['uefi-vm', 'uefi-copy']) expect((await svirt('undefine', vm)).code).toBe(0);
  });

  it('defines with a new disk, refuses another VM on the same private disk, snapshots, reverts, clones, controls and edits', async () => {
    const work = path.join(host.dir, 'work');
    await mkdir(work);
    await chmod(work, 0o755);
    const defined = await svirt('define', '--name', 'snap', '--kernel', host.kernel, '--initrd', host.initrd, '--append', host.append,
      '--memory', '128', '--disk-size', '64M');
    expect(defined).toMatchObject({ code: 0, stdout: 'defined snap\n' });
    const disk = path.join(host.dir, 'data', 'svirt-manager', 'images', 'snap.qcow2');
    expect(defined.stderr).toBe(`created ${disk} (64M)\n`);

    const dup = await svirtAs({ cwd: path.dirname(disk) }, 'define', '--name', 'dup', '--kernel', host.kernel, '--disk', 'snap.qcow2');
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain(`--disk #1 ${disk} is already the private disk of VM "snap"`);

    expect((await svirt('start', 'snap', '--allow-unconfined')).code).toBe(0);
    expect((await svirt('console', 'snap', '--expect', GUEST_READY_MARKER, '--timeout', '90')).code).toBe(0);
    expect((await guestSays('snap', 'echo original-data | dd of=/dev/vda conv=fsync 2>/dev/null; echo wrote-$((1+1))', '^wrote-2')).code).toBe(0);
    expect(await svirt('snapshot', 'snap', 'take', 'before')).toMatchObject({ code: 0, stdout: 'took before on snap (qmp)\n' });
    expect((await guestSays('snap', 'echo changed-data | dd of=/dev/vda conv=fsync 2>/dev/null; head -c 12 /dev/vda; echo', '^changed-data')).code).toBe(0);
    const refused = await svirt('snapshot', 'snap', 'revert', 'before');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/stop the VM to revert/);
    expect((await svirt('clone', 'snap', 'snap-copy')).stderr).toMatch(/is running: stop it to clone it/);
    expect((await svirt('stop', 'snap', '--force')).code).toBe(0);

    // Stopped: qemu-img, as the user.
    const listed = JSON.parse((await svirt('snapshot', 'snap', 'list', '--json')).stdout) as { via: string; disks: { disk: string; snapshots: { name: string }[] }[] };
    expect(listed).toMatchObject({ via: 'qemu-img', disks: [{ disk, snapshots: [{ name: 'before' }] }] });
    expect(await svirt('snapshot', 'snap', 'revert', 'before')).toMatchObject({ code: 0, stdout: 'reverted to before on snap (qemu-img)\n' });
    expect((await svirt('snapshot', 'snap', 'take', '-x')).code).not.toBe(0);

    const cloned = await svirt('clone', 'snap', 'snap-copy');
    const copy = path.join(path.dirname(disk), 'snap-copy-0.qcow2');
    expect(cloned).toMatchObject({ code: 0, stdout: `cloned snap as snap-copy; ${disk} -> ${copy}\n` });

    // Both run at once, each on its own pair; the revert brought the original data back, in the clone too.
    expect((await svirt('start', 'snap', '--allow-unconfined')).code).toBe(0);
    expect((await svirt('start', 'snap-copy', '--allow-unconfined')).code).toBe(0);
    const running = JSON.parse((await svirt('list', '--json')).stdout) as { name: string; level: string }[];
    const levels = running.map((v) => v.level);
    expect(levels).toHaveLength(2);
    expect(levels[0]).toMatch(/^s0:c\d+,c\d+$/);
    expect(levels[0]).not.toBe(levels[1]);
    expect(await readLabel(copy)).toBe(`system_u:object_r:svirt_image_t:${running.find((v) => v.name === 'snap-copy')?.level}`);
    for (const vm of ['snap', 'snap-copy']) {
      expect((await svirt('console', vm, '--expect', GUEST_READY_MARKER, '--timeout', '90')).code).toBe(0);
      expect((await guestSays(vm, 'head -c 13 /dev/vda; echo', '^original-data')).code).toBe(0);
    }

    expect(await svirt('pause', 'snap-copy')).toMatchObject({ code: 0, stdout: 'snap-copy: paused\n' });
    expect(await svirt('resume', 'snap-copy')).toMatchObject({ code: 0, stdout: 'snap-copy: running\n' });
    expect(await svirt('reboot', 'snap-copy')).toMatchObject({ code: 0, stdout: 'snap-copy: running\n' });
    expect((await svirt('pause', 'not-defined')).code).not.toBe(0);
    expect((await svirt('edit', 'snap-copy', '--memory', '256')).stderr).toMatch(/is running: stop it to edit it/);

    for (const vm of ['snap', 'snap-copy']) expect((await svirt('stop', vm, '--force')).code).toBe(0);
    expect(await readLabel(copy)).not.toBe(`system_u:object_r:svirt_image_t:${running[0]?.level}`);

    // Edit: rename, memory, detach and attach (relative to the current directory).
    const extra = await host.disk('extra.img');
    const edited = await svirtAs({ cwd: host.dir }, 'edit', 'snap-copy', '--name', 'edited', '--memory', '256', '--remove-disk', copy, '--add-disk', 'extra.img:shared');
    expect(edited).toMatchObject({ code: 0, stdout: 'edited edited\n' });
    const vms = JSON.parse((await svirt('list', '--json')).stdout) as { name: string; memoryMiB: number }[];
    expect(vms.map((v) => [v.name, v.memoryMiB])).toEqual([['edited', 256], ['snap', 128]]);
    const labels = JSON.parse((await svirt('labels', 'edited', '--json')).stdout) as { path: string; class: string }[];
    expect(labels.filter((l) => l.class !== 'content').map((l) => [l.path, l.class])).toEqual([[extra, 'shared']]);
    expect((await svirt('edit', 'edited', '--remove-disk', '/nope.img')).stderr).toMatch(/--remove-disk \/nope\.img: edited has no such disk/);
    expect(await readLabel(extra)).toBe(ORIGINAL_LABEL);
  }, 900_000);
});
