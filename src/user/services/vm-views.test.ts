import { describe, expect, it } from 'vitest';
import { describeStopped } from './vm-views';

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
