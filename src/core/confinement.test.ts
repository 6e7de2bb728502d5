import { describe, expect, it } from 'vitest';
import { confinementOf, modeOfState, notConfinedReason, processLabelProblem } from './confinement';

const VM = 'system_u:system_r:svirt_t:s0:c12,c345';

describe('confinementOf', () => {
  it('calls a VM confined only when the kernel enforces and qemu runs in its label', () => {
    expect(confinementOf({ mode: 'enforcing', seclabelMode: 'dynamic', inLabel: true })).toBe('confined');
    expect(confinementOf({ mode: 'enforcing', seclabelMode: 'static', inLabel: true })).toBe('confined');
    expect(confinementOf({ mode: 'enforcing', seclabelMode: 'dynamic', inLabel: false })).not.toBe('confined');
  });

  it('gives a permissive kernel its own state, whatever the labels', () => {
    expect(confinementOf({ mode: 'permissive', seclabelMode: 'dynamic', inLabel: true })).toBe('permissive');
    expect(notConfinedReason('permissive', 'SELinux')).toBe('labels applied, not enforced: SELinux is permissive');
    expect(notConfinedReason('permissive', 'AppArmor')).toBe('labels applied, not enforced: AppArmor is permissive');
  });

  it('follows the mode now: a VM started permissive is confined once the host enforces', () => {
    const facts = { seclabelMode: 'dynamic', inLabel: true } as const;
    expect([confinementOf({ ...facts, mode: 'permissive' }), confinementOf({ ...facts, mode: 'enforcing' })]).toEqual(['permissive', 'confined']);
  });

  it('tells a VM without SELinux from one without a label by its own definition', () => {
    expect(confinementOf({ mode: 'disabled', seclabelMode: 'dynamic', inLabel: false })).toBe('unconfined-disabled');
    expect(confinementOf({ mode: 'enforcing', seclabelMode: 'none', inLabel: false })).toBe('unconfined-none');
    expect(confinementOf({ mode: 'disabled', seclabelMode: 'none', inLabel: false })).toBe('unconfined-none');
    expect(notConfinedReason('unconfined-disabled', 'SELinux')).toBe('not confined: SELinux disabled');
    expect(notConfinedReason('confined', 'AppArmor')).toBeNull();
    expect([modeOfState('enforcing'), modeOfState('permissive'), modeOfState('inactive'), modeOfState('absent')]).toEqual(['enforcing', 'permissive', 'disabled', 'disabled']);
  });
});

describe('processLabelProblem', () => {
  it('accepts the label the kernel reports, in the kernel\'s spelling of the categories', () => {
    expect(processLabelProblem(VM, VM)).toBeNull();
    expect(processLabelProblem('system_u:system_r:svirt_t:s0:c1,c2,c3', 'system_u:system_r:svirt_t:s0:c1.c3')).toBeNull();
  });

  it('refuses qemu left in its launcher\'s domain, another pair, or an unreadable label', () => {
    expect(processLabelProblem(VM, 'unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023')).toBe(
      `qemu runs as unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023, not in its label ${VM}`,
    );
    expect(processLabelProblem(VM, 'system_u:system_r:svirt_t:s0:c12,c346')).toMatch(/not in its label/);
    expect(processLabelProblem(VM, 'kernel')).toMatch(/not in its label/);
    expect(processLabelProblem(VM, null)).toMatch(/could not be read/);
  });
});
