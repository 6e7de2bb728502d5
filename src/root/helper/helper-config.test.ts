import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHelperConfig, RequesterError, resolveRequester } from './helper-config';

describe('whom the helper acts for', () => {
  it('takes PKEXEC_UID, else SUDO_UID, else root only when root started it with neither set', async () => {
    expect((await resolveRequester({ PKEXEC_UID: '4242', SUDO_UID: '4343' }, 0)).uid).toBe(4242);
    expect((await resolveRequester({ SUDO_UID: '4343' }, 0)).uid).toBe(4343);
    expect((await resolveRequester({ SUDO_UID: '0' }, 0)).uid).toBe(0);
    expect((await resolveRequester({}, 0)).uid).toBe(0);
  });

  it('fails closed on a PKEXEC_UID or SUDO_UID that is not a uid, and without either when not root', async () => {
    for (const bad of ['', 'root', '-1', '1e3', ' 4242', '0x10', '99999999999']) {
      await expect(resolveRequester({ PKEXEC_UID: bad }, 0)).rejects.toThrow(new RequesterError(`PKEXEC_UID is ${JSON.stringify(bad)}, not a uid: refusing to guess whom to act for`));
      await expect(resolveRequester({ SUDO_UID: bad }, 0)).rejects.toThrow(RequesterError);
    }
    // A malformed PKEXEC_UID is not rescued by a good SUDO_UID.
    await expect(resolveRequester({ PKEXEC_UID: 'x', SUDO_UID: '4242' }, 0)).rejects.toThrow(/PKEXEC_UID/);
    await expect(resolveRequester({}, 1000)).rejects.toThrow(/neither PKEXEC_UID nor SUDO_UID is set/);
  });
});

describe('helper.json', () => {
  it('keeps seclabel none off unless the administrator allows it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'svirt-config-'));
    try {
      const file = path.join(dir, 'helper.json');
      await writeFile(file, '{}');
      expect(await loadHelperConfig({ SVIRT_HELPER_CONFIG: file })).toMatchObject({ allowSeclabelNone: false, configPath: file });
      await writeFile(file, JSON.stringify({ allowSeclabelNone: true }));
      expect((await loadHelperConfig({ SVIRT_HELPER_CONFIG: file })).allowSeclabelNone).toBe(true);
      await writeFile(file, JSON.stringify({ allowSeclabelNone: 'yes' }));
      await expect(loadHelperConfig({ SVIRT_HELPER_CONFIG: file })).rejects.toThrow(/allowSeclabelNone must be boolean/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('allows no block device until the administrator lists one, by device or volume group, with who may use it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'svirt-config-'));
    try {
      const file = path.join(dir, 'helper.json');
      const load = async (value: unknown) => {
        await writeFile(file, JSON.stringify(value));
        return loadHelperConfig({ SVIRT_HELPER_CONFIG: file });
      };
      expect((await load({})).pathPolicy.devices).toEqual([]);
      expect((await load({ devices: [{ device: '/dev/vg0/lv1', users: ['alice'] }, { volumeGroup: 'vms', groups: ['svirt'] }] })).pathPolicy.devices).toEqual([
        { device: '/dev/vg0/lv1', users: ['alice'], groups: [] },
        { volumeGroup: 'vms', users: [], groups: ['svirt'] },
      ]);
      await expect(load({ devices: [{ device: '/dev/sdb', volumeGroup: 'vg0' }] })).rejects.toThrow('devices[0] names one "device" or one "volumeGroup"');
      await expect(load({ devices: [{ users: ['alice'] }] })).rejects.toThrow('devices[0] names one "device" or one "volumeGroup"');
      await expect(load({ devices: [{ device: '/etc/shadow' }] })).rejects.toThrow(/devices\/0\/device must match pattern/);
      await expect(load({ devices: [{ device: '/dev/../etc/shadow' }] })).rejects.toThrow(/devices\[0\]\.device: .*"\." or "\.\." segments/);
      await expect(load({ allowedBlockDevices: ['/dev/sdb'] })).rejects.toThrow(/allowedBlockDevices is replaced by devices/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
