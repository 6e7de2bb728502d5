import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestHost, type TestHost } from './support/helper-session';

// What a new user reads when something is wrong: the built bin, a real helper, real files. Messages are
// asserted whole where the wording is the point, so a leaked internal name or errno fails the test.
const execFileP = promisify(execFile);
let host: TestHost;

interface Run { code: number; stdout: string; stderr: string }

async function svirtAs(options: { uid?: number; cwd?: string; config?: string }, ...args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [path.resolve('bin/svirt.js'), ...args], {
      env: { ...host.env, XDG_CONFIG_HOME: options.config ?? path.join(host.dir, 'config'), XDG_DATA_HOME: path.join(host.dir, 'data') },
      timeout: 120_000,
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
      cwd: options.cwd ?? host.dir,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
const svirt = (...args: string[]) => svirtAs({}, ...args);

const definedNames = async () => (JSON.parse((await svirt('list', '--json')).stdout) as { name: string }[]).map((v) => v.name);

// Internal names no message may show: definition fields, the helper's option and VM ids, errno dumps.
// Each test runs a dozen svirt invocations, each starting a helper: slow on a loaded TCG host, never a hang.
const CLI_TEST_TIMEOUT_MS = 600_000;

const INTERNALS = /memoryMiB|allowUnconfined|disks\[|boot\.|\bVM \d+\/|ENOENT|EACCES|realpath/;

beforeAll(async () => {
  host = await createTestHost();
});
afterAll(async () => {
  await host.dispose();
});

describe('svirt error messages', () => {
  it('names the flag, says what is wrong and what to do, in one wording per condition', async () => {
    await host.disk('msg.img');
    expect(await svirt('define', '--name', 'msg', '--kernel', 'vmlinuz', '--disk', 'msg.img', '--memory', '128')).toMatchObject({ code: 0 });

    const outcomes: [string[], string][] = [
      [['define', '--name', 'a', '--kernel', 'vmlinuz', '--disk', '/tmp/nope.img'], 'svirt: --disk: /tmp/nope.img does not exist\n'],
      [['define', '--name', 'a', '--kernel', 'vmlinuz', '--memory', '99999999'], 'svirt: --memory must be at most 1048576 (found 99999999)\n'],
      [['edit', 'msg', '--vcpus', '600'], 'svirt: --vcpus must be at most 512 (found 600)\n'],
      [['stop', 'nope'], 'svirt: no VM named "nope"\n'],
      [['console', 'nope', '--expect', 'x'], 'svirt: no VM named "nope"\n'],
      [['pause', 'nope'], 'svirt: no VM named "nope"\n'],
      [['start', 'nope'], 'svirt: no VM named "nope"\n'],
      [['stop', 'msg'], 'svirt: VM "msg" is not running; start it with `svirt start msg`\n'],
      [['console', 'msg', '--expect', 'x'], 'svirt: VM "msg" is not running; start it with `svirt start msg`\n'],
      [['reboot', 'msg'], 'svirt: VM "msg" is not running; start it with `svirt start msg`\n'],
    ];
    for (const [args, stderr] of outcomes) expect(await svirt(...args), args.join(' ')).toMatchObject({ code: 2, stderr });

    // SELinux is off here: the helper refuses, and the way out is the flag the user can type.
    const unconfined = await svirt('start', 'msg');
    expect(unconfined.code).toBe(2);
    expect(unconfined.stderr).toMatch(/^svirt: not confined: SELinux is disabled on this host and AppArmor is not enabled, .*start with --allow-unconfined to run it anyway/);
    expect(unconfined.stderr).not.toMatch(INTERNALS);
    expect(await definedNames()).toEqual(['msg']);
    expect((await svirt('undefine', 'msg')).code).toBe(0);
  }, CLI_TEST_TIMEOUT_MS);

  it('checks the kernel, the initrd, the --disk suffix and private disks at define, and defines nothing', async () => {
    const disk = await host.disk('held.img');
    expect((await svirt('define', '--name', 'holder', '--kernel', 'vmlinuz', '--disk', 'held.img')).code).toBe(0);

    expect(await svirt('define', '--name', 'k', '--kernel', 'no-such-kernel')).toMatchObject({ code: 2, stderr: `svirt: --kernel ${host.dir}/no-such-kernel does not exist\n` });
    expect(await svirt('define', '--name', 'k', '--kernel', 'vmlinuz', '--initrd', host.dir)).toMatchObject({ code: 2, stderr: `svirt: --initrd ${host.dir} is not a regular file\n` });
    const suffix = await svirt('define', '--name', 'k', '--kernel', 'vmlinuz', '--disk', 'held.img:rw');
    expect(suffix).toMatchObject({ code: 2, stderr: 'svirt: --disk held.img:rw: ":rw" is not a disk suffix: use :private (the default), :shared or :readonly (for a file name with a colon, add :private)\n' });
    const taken = await svirt('define', '--name', 'k', '--kernel', 'vmlinuz', '--disk', 'held.img:shared');
    expect(taken.code).toBe(2);
    expect(taken.stderr).toBe(`svirt: --disk #1 ${disk} is already the private disk of VM "holder": a private disk belongs to one VM (copy it with svirt clone, or use a qcow2 overlay over it)\n`);
    // A new disk is not created for a definition that fails on its kernel.
    expect((await svirt('define', '--name', 'k', '--kernel', 'gone', '--disk-size', '16M')).code).toBe(2);
    await expect(readFile(path.join(host.dir, 'data', 'svirt-manager', 'images', 'k.qcow2'))).rejects.toThrow(/ENOENT/);

    // An initrd the user cannot read (root's, mode 0600) is said at define, as that user.
    const secret = path.join(host.dir, 'secret-initrd.gz');
    await copyFile(host.initrd, secret);
    await chmod(secret, 0o600);
    const config = path.join(host.dir, 'user-1000');
    await mkdir(config);
    await chown(config, 1000, 1000);
    const unreadable = await svirtAs({ uid: 1000, config }, 'define', '--name', 'k', '--kernel', host.kernel, '--initrd', secret);
    expect(unreadable).toMatchObject({ code: 2, stderr: `svirt: --initrd ${secret} cannot be read by you (permission denied)\n` });

    // Edit goes through the same checks.
    expect((await svirt('define', '--name', 'other', '--kernel', 'vmlinuz')).code).toBe(0);
    expect((await svirt('edit', 'other', '--add-disk', 'held.img:ro')).stderr).toMatch(/^svirt: --add-disk held\.img:ro: ":ro" is not a disk suffix/);
    expect((await svirt('edit', 'other', '--add-disk', 'held.img')).stderr).toMatch(/is already the private disk of VM "holder"/);
    expect(await definedNames()).toEqual(['holder', 'other']);
    for (const vm of ['holder', 'other']) expect((await svirt('undefine', vm)).code).toBe(0);
  }, CLI_TEST_TIMEOUT_MS);

  it('shows "a fresh pair at start" before the first start, never a made-up level', async () => {
    const disk = await host.disk('fresh.img');
    expect((await svirt('define', '--name', 'fresh', '--kernel', 'vmlinuz', '--disk', 'fresh.img')).code).toBe(0);
    const table = await svirt('labels', 'fresh');
    expect(table.stdout).toMatch(new RegExp(`^${disk}\\s+private\\s+\\(none yet; system_u:object_r:svirt_image_t with a fresh pair at start\\)`, 'm'));
    expect(table.stdout).not.toMatch(/svirt_image_t:s0:c/);
    const rows = JSON.parse((await svirt('labels', 'fresh', '--json')).stdout) as { path: string; plannedLabel: string; freshPair: boolean }[];
    expect(rows.find((r) => r.path === disk)).toMatchObject({ plannedLabel: 'system_u:object_r:svirt_image_t', freshPair: true });
    expect(rows.find((r) => r.path === host.kernel)).toMatchObject({ plannedLabel: 'system_u:object_r:virt_content_t:s0', freshPair: false });
    expect((await svirt('undefine', 'fresh')).code).toBe(0);
  }, CLI_TEST_TIMEOUT_MS);

  it('import-xml carries user networking, a SPICE display and a CD-ROM over, and lists every device it dropped', async () => {
    const root = await host.disk('imp-root.img');
    const iso = await host.disk('imp.iso');
    const xml = path.join(host.dir, 'imp.xml');
    await writeFile(xml, `<domain type='kvm'>
  <name>imp</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'><driver type='raw'/><source file='${root}'/><target dev='vda'/></disk>
    <disk type='file' device='cdrom'><source file='${iso}'/><target dev='sda'/></disk>
    <interface type='user'><model type='virtio'/></interface>
    <interface type='bridge'><source bridge='br0'/></interface>
    <graphics type='spice' autoport='yes'/>
    <graphics type='sdl'/>
    <sound model='ich9'/>
  </devices>
</domain>`);
    const imported = await svirt('import-xml', 'imp.xml', '--json');
    expect(imported.code).toBe(0);
    const report = JSON.parse(imported.stdout) as { defined: string; dropped: { device: string; reason: string }[] };
    expect(report.defined).toBe('imp');
    expect(report.dropped.map((d) => d.device)).toEqual([
      "interface type='bridge' (br0) at domain/devices/interface[2]",
      "graphics type='sdl' at domain/devices/graphics[2]",
      "sound model='ich9' at domain/devices/sound",
    ]);
    for (const d of report.dropped) expect(imported.stderr).toContain(`dropped: ${d.device}: ${d.reason}\n`);
    expect(imported.stderr).toContain("note: graphics type='spice' becomes a VNC display");

    const saved = JSON.parse(await readFile(path.join(host.dir, 'config', 'svirt-manager', 'vms', 'imp.json'), 'utf8')) as Record<string, unknown>;
    expect(saved).toMatchObject({
      boot: { kind: 'iso', iso }, disks: [{ path: root, class: 'private' }], network: { mode: 'user' }, display: 'vnc',
    });
    expect((await svirt('undefine', 'imp')).code).toBe(0);
  }, CLI_TEST_TIMEOUT_MS);

  it('define --help says what each kind of VM needs, and a VM without --kernel boots its first disk', async () => {
    const help = await svirt('define', '--help');
    expect(help.stdout).toMatch(/--name <name>\s+\(required\) VM name/);
    expect(help.stdout).toMatch(/^ {2}kernel boot\s+--kernel FILE\s+required;/m);
    expect(help.stdout).toMatch(/^ {2}ISO install\s+--iso FILE\s+required; add --disk FILE or --disk-size SIZE/m);
    expect(help.stdout).toMatch(/^ {2}disk boot\s+--disk FILE\s+required \(no --kernel, no --iso\)/m);

    await host.disk('boot.img');
    expect(await svirt('define', '--name', 'diskboot', '--disk', 'boot.img')).toMatchObject({ code: 0, stdout: 'defined diskboot\n' });
    const saved = JSON.parse(await readFile(path.join(host.dir, 'config', 'svirt-manager', 'vms', 'diskboot.json'), 'utf8')) as { boot: unknown };
    expect(saved.boot).toEqual({ kind: 'disk' });
    expect(await svirt('define', '--name', 'nothing')).toMatchObject({
      code: 2, stderr: 'svirt: nothing to boot: give --kernel FILE, --iso FILE or --disk FILE\n',
    });
    expect((await svirt('undefine', 'diskboot')).code).toBe(0);
  }, CLI_TEST_TIMEOUT_MS);
});
