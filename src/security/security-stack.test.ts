import { describe, expect, it } from 'vitest';
import { buildPolicyProfile, FALLBACK_PROFILE_FILES } from '../core/selinux/policy-profile';
import { vmTypeSets } from '../core/selinux/seclabel-rules';
import { parseVmDefinition } from '../core/vm-definition';
import { toVmSpec } from '../core/vm-definition';
import { dacLabel } from './dac/dac-driver';
import { pickMacDriver } from './drivers';
import { NoneDriver } from './none/none-driver';
import type { FileHold, FileHolds, ModelState, SecuredVm, SecurityModelId, VmLabel } from './security-driver';
import { SecurityStack, type StackBook } from './security-stack';
import { SelinuxDriver } from './selinux/selinux-driver';

function securedVm(overrides: Record<string, unknown> = {}): SecuredVm {
  const definition = parseVmDefinition({
    version: 1, createdAt: '2026-01-01T00:00:00.000Z', name: 'guest', memoryMiB: 512, vcpus: 1, boot: { kind: 'disk' },
    disks: [
      { path: '/images/guest.qcow2', format: 'qcow2', class: 'private', relabel: true },
      { path: '/images/shared.img', format: 'raw', class: 'shared', relabel: true },
    ],
    seclabel: { mode: 'dynamic' },
    ...overrides,
  });
  return { id: '1000/guest', name: 'guest', ownerUid: 1000, definition, spec: toVmSpec(definition, 'kvm') };
}

/** A driver that records each verb it is asked, with a model, state and file changes the test chooses. */
class FakeDriver extends NoneDriver {
  readonly calls: string[] = [];
  constructor(model: SecurityModelId, private readonly fakeState: ModelState, private readonly holds: FileHold[] = [], private readonly fail = false) {
    super();
    (this as { model: SecurityModelId }).model = model;
  }
  override async probe() {
    return { model: this.model, state: this.fakeState };
  }
  override async generate(): Promise<VmLabel> {
    this.calls.push('generate');
    if (this.fail) throw new Error(`${this.model} refuses`);
    return { model: this.model, dynamic: true, process: `${this.model}-process`, image: null, distinct: this.model };
  }
  override release(): void {
    this.calls.push('release');
  }
  override async setAll(_vm: SecuredVm, _label: VmLabel, files: FileHolds): Promise<void> {
    for (const h of this.holds) await files.hold(h);
  }
  override confineProcess() {
    return { execPrefix: [`${this.model}-exec`] };
  }
  override async verifyProcess(): Promise<string | null> {
    this.calls.push('verify');
    return null;
  }
}

const emptyBook = (): StackBook => ({ others: [], reserved: [], states: {} });

describe('the security stack', () => {
  it('merges the MAC label and the DAC owner of one file into one change, in the order the layers asked', async () => {
    const mac = new FakeDriver('selinux', 'enforcing', [
      { path: '/images/guest.qcow2', kind: 'private', label: 'L1' },
      { path: '/images/shared.img', kind: 'shared', label: 'L2' },
    ]);
    const dac = new FakeDriver('dac', 'enforcing', [{ path: '/images/guest.qcow2', kind: 'private', owner: { uid: 61184, gid: 61184 } }]);
    const applied: FileHold[] = [];
    await new SecurityStack(mac, dac).setAll(securedVm(), [await mac.generate(), await dac.generate()], async (h) => {
      applied.push(h);
    });
    expect(applied).toEqual([
      { path: '/images/guest.qcow2', kind: 'private', label: 'L1', owner: { uid: 61184, gid: 61184 } },
      { path: '/images/shared.img', kind: 'shared', label: 'L2' },
    ]);
  });

  it('gives back what the MAC layer drew when the DAC layer refuses', async () => {
    const mac = new FakeDriver('selinux', 'enforcing');
    const dac = new FakeDriver('dac', 'enforcing', [], true);
    await expect(new SecurityStack(mac, dac).generate(securedVm(), emptyBook())).rejects.toThrow('dac refuses');
    expect(mac.calls).toEqual(['generate', 'release']);
  });

  it('execs qemu into the MAC label only while the kernel runs the model, and checks it only then', async () => {
    const mac = new FakeDriver('selinux', 'enforcing');
    const dac = new DacLike();
    const stack = new SecurityStack(mac, dac);
    const labels = [await mac.generate(), dacLabel(61190)];
    expect(stack.confineProcess(securedVm(), labels, 'permissive')).toEqual({ execPrefix: ['selinux-exec'], uid: 61190, gid: 61190 });
    expect(stack.confineProcess(securedVm(), labels, 'inactive')).toEqual({ uid: 61190, gid: 61190 });
    expect(stack.runsInLabel(labels, 'inactive')).toBe(false);
    await stack.verifyProcess(process.pid, labels, 'inactive');
    expect(mac.calls).not.toContain('verify');
  });

  it('describes a VM by its MAC label with the DAC uid as a layer beneath', async () => {
    const stack = new SecurityStack(selinuxDriver(), new DacLike());
    const labels: VmLabel[] = [
      { model: 'selinux', dynamic: true, process: 'system_u:system_r:svirt_t:s0:c1,c5', image: 'system_u:object_r:svirt_image_t:s0:c1,c5', distinct: 's0:c1,c5' },
      dacLabel(61190),
    ];
    const d = stack.describe(labels);
    expect(d.model).toBe('selinux');
    expect(d.processParts.map((p) => [p.name, p.value])).toEqual([['user', 'system_u'], ['role', 'system_r'], ['type', 'svirt_t'], ['level', 's0:c1,c5']]);
    expect(d.imageParts.find((p) => p.name === 'type')?.value).toBe('svirt_image_t');
    expect(d.layers).toEqual([expect.objectContaining({ model: 'dac', parts: expect.arrayContaining([expect.objectContaining({ name: 'uid', value: '61190' })]) })]);
  });
});

/** The real DAC driver's shape without its uid draw (which reads /proc and /etc/passwd). */
class DacLike extends NoneDriver {
  constructor() {
    super();
    (this as { model: SecurityModelId }).model = 'dac';
  }
  override confineProcess(_vm: SecuredVm, label: VmLabel) {
    return { uid: Number(label.distinct), gid: Number(label.distinct) };
  }
  override describe(label: VmLabel) {
    return { ...super.describe(label), model: 'dac' as const, processParts: [{ name: 'uid', value: String(label.distinct) }] };
  }
}

function selinuxDriver(state: 'enforcing' | 'disabled' = 'enforcing', fallback = false): SelinuxDriver {
  const profile = { ...buildPolicyProfile(FALLBACK_PROFILE_FILES), fallback };
  return new SelinuxDriver({
    profile, vmTypes: async () => vmTypeSets(profile, undefined), categoryRange: profile.categoryRange,
    allowSeclabelNone: false, configPath: '/etc/svirt-manager/helper.json', mode: async () => state, live: async () => [],
  });
}

describe('the SELinux driver', () => {
  it('draws a fresh pair for a dynamic VM, labels its private disk with it and the shared disk at s0', async () => {
    const driver = selinuxDriver();
    const book = { others: [], reserved: [], state: undefined as unknown };
    const label = await driver.generate(securedVm(), book);
    expect(label.process).toMatch(/^system_u:system_r:svirt_t:s0:c\d+,c\d+$/);
    expect(label.image).toBe(label.process?.replace('system_r:svirt_t', 'object_r:svirt_image_t'));
    expect(label.distinct).toBe(label.process?.split(':').slice(3).join(':'));
    const holds: FileHold[] = [];
    await driver.setAll(securedVm(), label, { hold: async (h) => void holds.push(h) });
    expect(holds).toEqual([
      { path: '/images/guest.qcow2', kind: 'private', label: label.image },
      { path: '/images/shared.img', kind: 'shared', label: 'system_u:object_r:svirt_image_t:s0' },
    ]);
    driver.release('1000/guest', label, book);
    const again = await driver.generate(securedVm(), book);
    expect(again.distinct).not.toBeNull();
  });

  it('refuses a static label that another user\'s VM holds, naming that VM', async () => {
    const driver = selinuxDriver();
    const other = { id: '2000/web', name: 'web', ownerUid: 2000, label: { model: 'selinux' as const, dynamic: true, process: 'system_u:system_r:svirt_t:s0:c1,c2', image: null, distinct: 's0:c1,c2' } };
    const vm = securedVm({ seclabel: { mode: 'static', label: 'system_u:system_r:svirt_t:s0:c1,c2', relabel: true } });
    await expect(driver.generate(vm, { others: [other], reserved: [], state: undefined })).rejects.toThrow(/VM web of uid 2000/);
  });

  it('execs qemu through runcon with its sockets at its context and its run files at its image label', () => {
    const label = { model: 'selinux' as const, dynamic: false, process: 'system_u:system_r:svirt_t:s0:c3,c9', image: null, distinct: 's0:c3,c9' };
    expect(selinuxDriver().confineProcess(securedVm(), label)).toEqual({
      execPrefix: ['runcon', label.process], socketLabel: label.process, runFileLabel: 'system_u:object_r:svirt_image_t:s0:c3,c9',
    });
  });
});

describe('picking the host\'s MAC driver', () => {
  it('takes the first model the kernel runs, else one installed but inactive, else none', async () => {
    const none = new NoneDriver();
    expect((await pickMacDriver([selinuxDriver('enforcing'), new FakeDriver('apparmor', 'enforcing'), none])).model).toBe('selinux');
    expect((await pickMacDriver([selinuxDriver('disabled'), new FakeDriver('apparmor', 'enforcing'), none])).model).toBe('apparmor');
    expect((await pickMacDriver([selinuxDriver('disabled'), new FakeDriver('apparmor', 'absent'), none])).model).toBe('selinux');
    expect((await pickMacDriver([selinuxDriver('disabled', true), new FakeDriver('apparmor', 'absent'), none])).model).toBe('none');
  });
});
