import { copyFile, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/user/helper-client';
import { readLabel, writeLabel } from '../src/security/selinux/file-labels';
import { OVMF_VARS_TEMPLATE } from '../src/host/firmware';
import { loadPolicyProfile } from '../src/security/selinux/selinux-files';
import { CLI_CHANGE_FIELDS, FORM_CHANGE_FIELDS } from '../src/user/vm-changes';
import type { VmDefinitionInput } from '../src/core/vm-definition';
import { VmService } from '../src/user/vm-service';
import { VmStore } from '../src/user/vm-store';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from './support/helper-session';
import { testIso } from './support/test-iso';
import { freePort } from './support/free-port';

// Changing a stopped VM's boot media, network, display and firmware through the service the CLI and the app
// share, then running it under the real helper: every file the change brought in carries its planned label
// while qemu runs and its original one after stop (real qemu under TCG, real xattrs read with getfattr).
let host: TestHost;
let helper: HelperClient;
let service: VmService;
let iso: string;

const CONTENT_LABEL = 'system_u:object_r:virt_content_t:s0';

/** Local addresses of the TCP sockets listening on `port` (from /proc/net/tcp, in the host's notation). */
async function listenersOn(port: number): Promise<string[]> {
  const table = await readFile('/proc/net/tcp', 'utf8');
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return table.split('\n').slice(1).map((line) => line.trim().split(/\s+/))
    .filter((f) => f[3] === '0A' && f[1]?.endsWith(`:${hexPort}`))
    .map((f) => (f[1] as string).split(':')[0] as string)
    .map((hex) => hex.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.'));
}

const diskVm = (name: string, disk: string): VmDefinitionInput => ({
  name, memoryMiB: 256, vcpus: 1, boot: { kind: 'disk' }, disks: [{ path: disk, format: 'raw', class: 'private', relabel: true }],
  seclabel: { mode: 'dynamic' }, network: { mode: 'none' },
});

beforeAll(async () => {
  host = await createTestHost();
  helper = host.startHelper();
  service = new VmService(new VmStore(path.join(host.dir, 'vms')), () => helper, () => loadPolicyProfile());
  iso = path.join(host.dir, 'install.iso');
  await copyFile(await testIso(), iso);
  await writeLabel(iso, ORIGINAL_LABEL);
}, 300_000);

afterAll(async () => {
  const running = await helper.request('list').catch(() => []);
  for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  await host.dispose();
});

describe('editing boot media, network, display and firmware', () => {
  it('turns a BIOS disk VM into a UEFI installer with a display and a loopback forward, labels each new file while it runs and restores it after, and back', async () => {
    const disk = await host.disk('edit-disk.img');
    await service.define(diskVm('changing', disk));
    const hostPort = await freePort();
    const edited = await service.edit('changing', {
      iso, firmware: 'uefi', display: true, network: 'user', portForwards: [{ hostPort, guestPort: 8080 }],
    }, CLI_CHANGE_FIELDS);
    const nvram = path.join(host.dir, 'vms', 'changing.nvram.fd');
    expect(edited).toMatchObject({
      boot: { kind: 'iso', iso }, firmware: { kind: 'uefi', nvram }, display: 'vnc',
      network: { mode: 'user', portForwards: [{ hostPort, guestPort: 8080 }] },
    });
    // The user's own copy of the template, made by the user's process.
    expect((await stat(nvram)).size).toBe((await stat(OVMF_VARS_TEMPLATE)).size);
    await writeLabel(nvram, ORIGINAL_LABEL);

    const run = await service.start('changing', { allowUnconfined: true });
    const image = `system_u:object_r:svirt_image_t:${run.level}`;
    expect([await readLabel(nvram), await readLabel(iso), await readLabel(disk)]).toEqual([image, CONTENT_LABEL, image]);
    // The files-and-labels table shows the new resources with what they should carry, and it matches.
    const table = await service.labels('changing');
    expect(table.map((r) => [r.path, r.resource, r.expectedLabel, r.match])).toEqual(expect.arrayContaining([
      [nvram, 'nvram', image, true], [iso, 'disk', CONTENT_LABEL, true], [disk, 'disk', image, true],
    ]));
    // qemu listens for the forward on the host's loopback only.
    expect(await listenersOn(hostPort)).toEqual(['127.0.0.1']);
    expect((await stat(path.join(`${host.stateDir}-display`, '0-changing', 'vnc.sock'))).isSocket()).toBe(true);
    await expect(service.edit('changing', { firmware: 'bios' }, CLI_CHANGE_FIELDS)).rejects.toThrow('VM changing is running: stop it to edit it');

    await service.stop('changing', { force: true });
    expect([await readLabel(nvram), await readLabel(iso), await readLabel(disk)]).toEqual([ORIGINAL_LABEL, ORIGINAL_LABEL, ORIGINAL_LABEL]);
    expect(await listenersOn(hostPort)).toEqual([]);

    // Back to BIOS without the ISO, display or network: the variable store goes with UEFI, the ISO stays the user's.
    const back = await service.edit('changing', { firmware: 'bios', iso: null, display: false, network: 'none' }, CLI_CHANGE_FIELDS);
    expect(back).toMatchObject({ boot: { kind: 'disk' }, firmware: { kind: 'bios' }, display: 'none', network: { mode: 'none' } });
    await expect(stat(nvram)).rejects.toThrow(/ENOENT/);
    expect((await stat(iso)).isFile()).toBe(true);
  }, 300_000);

  it('moves the variable store with a rename and deletes it with the VM', async () => {
    await service.define({ ...diskVm('uefi-one', await host.disk('uefi-one.img')), firmware: { kind: 'uefi', nvram: '' } });
    const first = path.join(host.dir, 'vms', 'uefi-one.nvram.fd');
    const renamed = path.join(host.dir, 'vms', 'uefi-two.nvram.fd');
    expect((await stat(first)).isFile()).toBe(true);
    expect((await service.edit('uefi-one', { name: 'uefi-two' }, FORM_CHANGE_FIELDS)).firmware).toEqual({ kind: 'uefi', nvram: renamed });
    await expect(stat(first)).rejects.toThrow(/ENOENT/);
    await service.undefine('uefi-two');
    await expect(stat(renamed)).rejects.toThrow(/ENOENT/);
    expect((await service.store.list()).definitions.map((d) => d.name)).not.toContain('uefi-two');
  });

  it('changes nothing on bad input: the definition stays byte for byte and no variable store is made', async () => {
    await service.define(diskVm('steady', await host.disk('steady.img')));
    const file = path.join(host.dir, 'vms', 'steady.json');
    const before = await readFile(file, 'utf8');
    const nvram = path.join(host.dir, 'vms', 'steady.nvram.fd');
    const attempts: [Parameters<VmService['edit']>[1], string][] = [
      [{ firmware: 'uefi', network: 'user', portForwards: [{ hostPort: 8080, guestPort: 80 }, { hostPort: 8080, guestPort: 81 }] },
        'Port forwards 8080:81: host port 8080 is already forwarded (to guest port 80)'],
      [{ firmware: 'uefi', portForwards: [{ hostPort: 8080, guestPort: 80 }] }, 'Port forwards: steady would have no network; forwards need user-mode networking (Network user)'],
      [{ firmware: 'uefi', iso: null }, 'ISO image: steady has no ISO attached'],
      [{ firmware: 'uefi', name: 'bad name' }, 'name must start with a letter or digit'],
    ];
    for (const [changes, message] of attempts) {
      await expect(service.edit('steady', changes, FORM_CHANGE_FIELDS)).rejects.toThrow(message);
      expect(await readFile(file, 'utf8')).toBe(before);
      await expect(stat(nvram)).rejects.toThrow(/ENOENT/);
    }
  });
});
