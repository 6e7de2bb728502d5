import { execFile } from 'node:child_process';
import { copyFile, readdir, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestHost, type TestHost } from './support/helper-session';
import { testIso } from './support/test-iso';

// `svirt define` and `svirt edit` for installer ISOs, networks, displays and firmware, as a user types them:
// the built bin and a real helper; every refusal names the flag and leaves the VM store as it was.
const execFileP = promisify(execFile);
let host: TestHost;
let vms: string;

interface Run { code: number; stdout: string; stderr: string }

async function svirt(...args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [path.resolve('bin/svirt.js'), ...args], {
      env: { ...host.env, XDG_CONFIG_HOME: path.join(host.dir, 'config'), XDG_DATA_HOME: path.join(host.dir, 'data') },
      cwd: host.dir, timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const stored = async (name: string) => JSON.parse(await readFile(path.join(vms, `${name}.json`), 'utf8')) as Record<string, unknown>;
const storeFiles = async () => (await readdir(vms).catch(() => [])).filter((f) => !f.startsWith('.')).sort();

beforeAll(async () => {
  host = await createTestHost();
  vms = path.join(host.dir, 'config', 'svirt-manager', 'vms');
  await copyFile(await testIso(), path.join(host.dir, 'install.iso'));
}, 300_000);
afterAll(async () => {
  await host.dispose();
});

describe('svirt define and edit: ISO, network, display, firmware', () => {
  it('marks the required option in define --help and says how to boot', async () => {
    const help = await svirt('define', '--help');
    expect(help.stdout).toMatch(/--name <name>\s+\(required\) VM name/);
    expect(help.stdout).toMatch(/--kernel <path>\s+boot this kernel directly \(one of --kernel,\s+--iso or --disk is required\)/);
  });

  it('defines a UEFI installer VM from a relative ISO path with a display and a loopback forward by default', async () => {
    const defined = await svirt('define', '--name', 'installer', '--iso', 'install.iso', '--firmware', 'uefi', '--forward', '2222:22', '--forward', '127.0.0.1:8080:80');
    expect(defined).toMatchObject({ code: 0, stdout: 'defined installer\n' });
    const nvram = path.join(vms, 'installer.nvram.fd');
    expect(await stored('installer')).toMatchObject({
      boot: { kind: 'iso', iso: path.join(host.dir, 'install.iso') }, disks: [], firmware: { kind: 'uefi', nvram }, display: 'vnc',
      network: { mode: 'user', portForwards: [{ hostPort: 2222, guestPort: 22 }, { hostPort: 8080, guestPort: 80 }] },
    });
    expect((await stat(nvram)).mode & 0o777).toBe(0o600);
    const plain = await svirt('define', '--name', 'plain', '--kernel', host.kernel, '--network', 'none');
    expect(plain.code).toBe(0);
    expect(await stored('plain')).toMatchObject({ network: { mode: 'none' }, firmware: { kind: 'bios' }, display: 'none' });
  });

  it.each([
    [['--iso', 'install.iso', '--forward', '80:22'], 'svirt: --forward 80:22: the host port must be a number from 1024 to 65535 (qemu runs unprivileged, so it cannot listen below 1024), not "80"\n'],
    [['--iso', 'install.iso', '--forward', '2222:0'], 'svirt: --forward 2222:0: the guest port must be a number from 1 to 65535, not "0"\n'],
    [['--iso', 'install.iso', '--forward', '0.0.0.0:2222:22'], "svirt: --forward 0.0.0.0:2222:22: forwards listen on the host's loopback (127.0.0.1) only, not on 0.0.0.0\n"],
    [['--iso', 'install.iso', '--forward', '2222:22', '--forward', '2222:80'], 'svirt: --forward 2222:80: host port 2222 is already forwarded (to guest port 22)\n'],
    [['--iso', 'install.iso', '--network', 'none', '--forward', '2222:22'], 'svirt: --forward needs user-mode networking, not --network none\n'],
    [['--iso', 'missing.iso'], `svirt: --iso ${'HOST'}/missing.iso does not exist\n`],
    [['--iso', 'install.iso', '--firmware', 'efi'], /option '--firmware <kind>' argument 'efi' is invalid\. Allowed choices are bios, uefi/],
    [['--iso', 'install.iso', '--kernel', 'vmlinuz'], /option '--iso <file>' cannot be used with option '--kernel <path>'/],
    [[], 'svirt: nothing to boot: give --kernel FILE, --iso FILE or --disk FILE\n'],
    [['--iso', 'install.iso', '--initrd', 'initrd.gz'], 'svirt: --initrd and --append go with --kernel\n'],
  ])('define %j is refused with a message naming the flag, defining nothing', async (args, message) => {
    const before = await storeFiles();
    const refused = await svirt('define', '--name', 'refused', ...(args as string[]));
    expect(refused.code).toBe(2);
    if (typeof message === 'string') expect(refused.stderr).toBe(message.replace('HOST', host.dir));
    else expect(refused.stderr).toMatch(message);
    expect(await storeFiles()).toEqual(before);
  });

  it('edits the ISO, network, forwards, display and firmware, refusing bad input by flag and changing nothing then', async () => {
    expect((await svirt('define', '--name', 'box', '--disk', await host.disk('box.img'), '--forward', '2222:22')).code).toBe(0);
    const file = path.join(vms, 'box.json');
    const nvram = path.join(vms, 'box.nvram.fd');
    const refusals: [string[], string][] = [
      [['--no-iso'], 'svirt: --no-iso: box has no ISO attached\n'],
      [['--forward', '2222:80'], 'svirt: --forward 2222:80: host port 2222 is already forwarded (to guest port 22)\n'],
      [['--forward', '22:22'], 'svirt: --forward 22:22: the host port must be a number from 1024 to 65535 (qemu runs unprivileged, so it cannot listen below 1024), not "22"\n'],
      [['--firmware', 'uefi', '--network', 'none', '--forward', '3333:22'], 'svirt: --forward: box would have no network; forwards need user-mode networking (--network user)\n'],
      [['--firmware', 'uefi', '--iso', 'missing.iso'], `svirt: --iso ${host.dir}/missing.iso does not exist\n`],
    ];
    for (const [args, message] of refusals) {
      const before = await readFile(file, 'utf8');
      expect(await svirt('edit', 'box', ...args)).toMatchObject({ code: 2, stderr: message });
      expect(await readFile(file, 'utf8')).toBe(before);
      await expect(stat(nvram)).rejects.toThrow(/ENOENT/);
    }

    const wifi = await svirt('edit', 'box', '--network', 'wifi');
    expect(wifi.code).toBe(2);
    expect(wifi.stderr).toMatch(/^error: option '--network <mode>' argument 'wifi' is invalid\. Allowed choices are user, none\./);

    expect(await svirt('edit', 'box', '--iso', 'install.iso', '--firmware', 'uefi', '--display', '--forward', '8080:80')).toMatchObject({ code: 0, stdout: 'edited box\n' });
    expect(await stored('box')).toMatchObject({
      boot: { kind: 'iso', iso: path.join(host.dir, 'install.iso') }, firmware: { kind: 'uefi', nvram }, display: 'vnc',
      network: { mode: 'user', portForwards: [{ hostPort: 2222, guestPort: 22 }, { hostPort: 8080, guestPort: 80 }] },
    });
    expect((await stat(nvram)).isFile()).toBe(true);

    expect((await svirt('edit', 'box', '--no-forwards', '--forward', '9090:90', '--no-display')).code).toBe(0);
    expect(await stored('box')).toMatchObject({ display: 'none', network: { mode: 'user', portForwards: [{ hostPort: 9090, guestPort: 90 }] } });

    // Back to BIOS: the variable store is deleted; detaching the ISO boots the disk.
    expect((await svirt('edit', 'box', '--firmware', 'bios', '--no-iso', '--network', 'none')).code).toBe(0);
    expect(await stored('box')).toMatchObject({ boot: { kind: 'disk' }, firmware: { kind: 'bios' }, network: { mode: 'none' } });
    await expect(stat(nvram)).rejects.toThrow(/ENOENT/);

    // Undefine takes the variable store with the definition.
    const installerNvram = path.join(vms, 'installer.nvram.fd');
    expect((await stat(installerNvram)).isFile()).toBe(true);
    expect(await svirt('undefine', 'installer')).toMatchObject({ code: 0, stdout: 'undefined installer\n' });
    await expect(stat(installerNvram)).rejects.toThrow(/ENOENT/);
  });
});
