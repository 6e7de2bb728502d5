import { describe, expect, it } from 'vitest';
import type { ActiveModel } from '../../contracts/ipc-contract';
import type { SelinuxMode } from '../../security/selinux/host-selinux';
import type { VmService, VmStatus } from '../vm-service';
import type { VmStore } from '../vm-store';
import { createVmViews, describeStopped } from './vm-views';

const SELINUX = { model: 'selinux', modelName: 'SELinux' } as const;
const APPARMOR = { model: 'apparmor', modelName: 'AppArmor' } as const;

describe("a stopped VM's confinement, as the host's model would start it", () => {
  it("describes a static SELinux label from the model's parts, its level the definition's", () => {
    const security = describeStopped(SELINUX, { mode: 'static', label: 'system_u:system_r:svirt_t:s0:c7,c9', relabel: true });
    expect(security).toMatchObject({ model: 'selinux', processLabel: 'system_u:system_r:svirt_t:s0:c7,c9', distinct: 's0:c7,c9' });
    expect(security.processParts.map((p) => p.name)).toEqual(['user', 'role', 'type', 'level']);
  });

  it('says a dynamic VM gets its pair (SELinux) or its profile (AppArmor) at start, with no label yet', () => {
    expect(describeStopped(SELINUX, { mode: 'dynamic' })).toMatchObject({ model: 'selinux', processLabel: null, processParts: [], summary: expect.stringMatching(/fresh MCS pair/) });
    expect(describeStopped(APPARMOR, { mode: 'dynamic' })).toMatchObject({ model: 'apparmor', modelName: 'AppArmor', processParts: [], summary: expect.stringMatching(/profile is generated/) });
  });

  it('names the model that will not hold a VM with seclabel none', () => {
    expect(describeStopped(APPARMOR, { mode: 'none' }).summary).toBe('seclabel none: qemu will run unconfined, AppArmor keeps it from nothing');
  });
});

describe("a stopped VM's summary on the host's model", () => {
  const stopped: VmStatus = {
    name: 'kiosk', state: 'stopped', pid: null, processLabel: null, imageLabel: null, level: null, confined: false, notConfinedReason: null,
    confinement: null, vcpus: 1, memoryMiB: 256, seclabel: { mode: 'dynamic' }, accel: null, security: null,
  };
  const views = (selinux: SelinuxMode, active: ActiveModel) =>
    createVmViews({} as VmStore, { list: async () => ({ vms: [stopped] }) } as unknown as VmService, async () => selinux, async () => active);

  it('is confined on an AppArmor host whose SELinux is disabled, not "not confined: SELinux disabled"', async () => {
    const summary = await views('disabled', { model: 'apparmor', modelName: 'AppArmor', state: 'enforcing', layers: ['apparmor', 'dac'] }).summaryOf('kiosk');
    expect(summary).toMatchObject({ confinement: 'confined', confined: true, notConfinedReason: null });
  });

  it('names the model that does not run when a start would be unconfined', async () => {
    const summary = await views('disabled', { model: 'selinux', modelName: 'SELinux', state: 'inactive', layers: ['selinux', 'dac'] }).summaryOf('kiosk');
    expect(summary).toMatchObject({ confinement: 'unconfined-disabled', notConfinedReason: 'not confined: SELinux disabled' });
    const complain = await views('disabled', { model: 'apparmor', modelName: 'AppArmor', state: 'permissive', layers: ['apparmor', 'dac'] }).summaryOf('kiosk');
    expect(complain).toMatchObject({ confinement: 'permissive', notConfinedReason: 'labels applied, not enforced: AppArmor is permissive' });
  });
});
