import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildPolicyProfile } from '../core/selinux/policy-profile';
import type { RunInfo } from '../contracts/helper-protocol';
import type { HelperClient } from './helper-client';
import { VmService } from './vm-service';
import { VmStore } from './vm-store';

// The service with a stand-in helper (its answer to `list` only): which labels a running VM's files expect.
let dir: string;
let store: VmStore;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-vm-service-'));
  store = new VmStore(path.join(dir, 'vms'));
  await store.define({
    name: 'web', memoryMiB: 128, vcpus: 1, boot: { kind: 'disk' }, seclabel: { mode: 'dynamic' },
    disks: [{ path: path.join(dir, 'web.img'), format: 'raw', class: 'private', relabel: true }],
  });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const profile = buildPolicyProfile({
  selinuxConfig: 'SELINUXTYPE=default\n',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});

function serviceWith(run: Partial<RunInfo>): VmService {
  const info = { name: 'web', ownerUid: process.getuid?.() ?? 0, state: 'running', accel: 'tcg', ...run } as RunInfo;
  const helper = { request: async (verb: string) => (verb === 'list' ? [info] : undefined) } as unknown as HelperClient;
  return new VmService(store, () => helper, async () => profile);
}

describe('the labels of a running VM\'s files', () => {
  it('expect the VM\'s SELinux image label when SELinux confines it', async () => {
    const labels = await serviceWith({ level: 's0:c1,c5', security: { model: 'selinux' } as RunInfo['security'] }).labels('web');
    expect(labels.find((l) => l.resource === 'disk')?.expectedLabel).toBe('system_u:object_r:svirt_image_t:s0:c1,c5');
  });

  it('expect no label under AppArmor, whose level is the profile\'s name and no SELinux level', async () => {
    const labels = await serviceWith({ level: 'svirt-vm-1000-web', security: { model: 'apparmor' } as RunInfo['security'] }).labels('web');
    expect(labels.find((l) => l.resource === 'disk')).toMatchObject({ expectedLabel: null, match: null });
  });
});
