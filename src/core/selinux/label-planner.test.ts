import { describe, expect, it } from 'vitest';
import { parseLevel } from './context';
import { buildPolicyProfile } from './policy-profile';
import { LabelPlanError, planStart, planStop, type LabelAction, type StartPlan } from './label-planner';
import type { VmSpec } from '../vm-spec';

// Debian's policy: no TCG line. Fedora's: svirt_tcg_t on line 2.
const debian = buildPolicyProfile({
  selinuxConfig: 'SELINUX=enforcing\nSELINUXTYPE=default\n',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});
const fedora = buildPolicyProfile({
  selinuxConfig: 'SELINUXTYPE=targeted\n',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\nsystem_u:system_r:svirt_tcg_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});

const PAIR = parseLevel('s0:c12,c345');
const IMAGE = 'system_u:object_r:svirt_image_t:s0:c12,c345';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const CONTENT = 'system_u:object_r:virt_content_t:s0';

function vm(overrides: Partial<VmSpec> = {}): VmSpec {
  return { name: 'guest', accel: 'kvm', seclabel: { mode: 'dynamic' }, disks: [], charDevices: [], ...overrides };
}

/** A VM that has one of everything the planner labels. */
const everything = vm({
  disks: [
    { path: '/var/lib/images/root.qcow2', class: 'private', target: 'vda' },
    { path: '/srv/cluster/shared.raw', class: 'shared', target: 'vdb' },
    { path: '/srv/iso/install.iso', class: 'readonly', target: 'sda', device: 'cdrom' },
  ],
  kernel: '/boot/guest/vmlinuz',
  initrd: '/boot/guest/initrd.gz',
  dtb: '/boot/guest/board.dtb',
  charDevices: [
    { kind: 'file', path: '/var/log/guest/serial.log', role: 'serial' },
    { kind: 'pipe', path: '/run/guest/pipe0', role: 'serial' },
    { kind: 'dev', path: '/dev/ttyS1', role: 'serial' },
    { kind: 'unix', path: '/run/guest/console.sock', role: 'console' },
  ],
});

function byPath(plan: StartPlan, path: string): LabelAction {
  const action = plan.actions.find((a) => a.path === path);
  if (!action) throw new Error(`no action for ${path}`);
  return action;
}

function planError(run: () => unknown): LabelPlanError {
  try {
    run();
  } catch (e) {
    if (e instanceof LabelPlanError) return e;
    throw e;
  }
  throw new Error('expected a LabelPlanError');
}

describe('dynamic seclabel (the default)', () => {
  const plan = planStart(everything, debian, PAIR);

  it('confines the process as svirt_t with the pair, user and role from the profile', () => {
    expect(plan.process).toEqual({ context: 'system_u:system_r:svirt_t:s0:c12,c345', confined: true });
    expect(plan.range).toBe('s0:c12,c345');
    expect(plan.imageLabel).toBe(IMAGE);
    expect(plan.notes).toEqual([]);
  });

  it('plans one action per file in a stable order', () => {
    expect(plan.actions.map((a) => a.path)).toEqual([
      '/var/lib/images/root.qcow2', '/srv/cluster/shared.raw', '/srv/iso/install.iso',
      '/boot/guest/vmlinuz', '/boot/guest/initrd.gz', '/boot/guest/board.dtb',
      '/var/log/guest/serial.log', '/run/guest/pipe0', '/dev/ttyS1', '/run/guest/console.sock',
    ]);
  });

  it.each([
    ['/var/lib/images/root.qcow2', 'disk', 'private', IMAGE, true],
    ['/srv/cluster/shared.raw', 'disk', 'shared', SHARED, false],
    ['/srv/iso/install.iso', 'disk', 'readonly', CONTENT, true],
    ['/boot/guest/vmlinuz', 'kernel', 'content', CONTENT, true],
    ['/boot/guest/initrd.gz', 'initrd', 'content', CONTENT, true],
    ['/boot/guest/board.dtb', 'dtb', 'content', CONTENT, true],
    ['/var/log/guest/serial.log', 'serial', 'char', IMAGE, true],
    ['/run/guest/pipe0', 'serial', 'char', IMAGE, true],
    ['/dev/ttyS1', 'serial', 'char', IMAGE, true],
    ['/run/guest/console.sock', 'console', 'char', IMAGE, true],
  ])('%s: %s %s → %s (remember %s)', (path, resource, cls, label, remember) => {
    expect(byPath(plan, path)).toMatchObject({ resource, class: cls, label, remember });
    expect(byPath(plan, path).reason).not.toBe('');
  });

  it('names devices by their guest target', () => {
    expect(byPath(plan, '/var/lib/images/root.qcow2').device).toBe('disk vda');
    expect(byPath(plan, '/run/guest/console.sock').device).toBe('console 3');
  });

  it('leaves a disk with relabel=no alone', () => {
    const p = planStart(vm({ disks: [{ path: '/nfs/img.raw', class: 'private', relabel: false, target: 'vda' }] }), debian, PAIR);
    expect(p.actions).toEqual([expect.objectContaining({ path: '/nfs/img.raw', label: null, remember: false })]);
    expect(p.actions[0]?.reason).toMatch(/relabel=no/);
  });

  it('uses a per-disk custom label as given (canonicalized), restoring only private ones', () => {
    const p = planStart(vm({
      disks: [
        { path: '/a/private.img', class: 'private', label: 'system_u:object_r:my_image_t:s0:c9,c2' },
        { path: '/a/shared.img', class: 'shared', label: 'system_u:object_r:my_shared_t:s0' },
        { path: '/a/ro.img', class: 'readonly', label: 'system_u:object_r:my_ro_t:s0' },
      ],
    }), debian, PAIR);
    expect(p.actions.map((a) => [a.label, a.remember])).toEqual([
      ['system_u:object_r:my_image_t:s0:c2,c9', true],
      ['system_u:object_r:my_shared_t:s0', false],
      ['system_u:object_r:my_ro_t:s0', false],
    ]);
  });

  it('uses a per-device custom label and relabel=no on character devices', () => {
    const p = planStart(vm({
      charDevices: [
        { kind: 'file', path: '/log/a', label: 'system_u:object_r:virt_log_t:s0' },
        { kind: 'file', path: '/log/b', relabel: false },
      ],
    }), debian, PAIR);
    expect(p.actions.map((a) => [a.label, a.remember])).toEqual([['system_u:object_r:virt_log_t:s0', true], [null, false]]);
  });

  it('labels both ends of a pipe when path.in and path.out exist, as qemu opens those', () => {
    const spec = vm({ charDevices: [{ kind: 'pipe', path: '/run/p' }] });
    const split = planStart(spec, debian, PAIR, { pathExists: (p) => p === '/run/p.in' || p === '/run/p.out' });
    expect(split.actions.map((a) => [a.path, a.label])).toEqual([['/run/p.in', IMAGE], ['/run/p.out', IMAGE]]);
    const single = planStart(spec, debian, PAIR, { pathExists: (p) => p === '/run/p.in' });
    expect(single.actions.map((a) => a.path)).toEqual(['/run/p']);
  });

  it('keeps shared and content labels from the profile, not hard-coded', () => {
    const custom = buildPolicyProfile({
      selinuxConfig: 'SELINUXTYPE=mls\n',
      virtualDomainContext: 'sysadm_u:sysadm_r:vm_t:s0\n',
      virtualImageContext: 'obj_u:object_r:vm_image_t:s0\nobj_u:object_r:vm_ro_t:s0\n',
    });
    const p = planStart(everything, custom, PAIR);
    expect(p.process.context).toBe('sysadm_u:sysadm_r:vm_t:s0:c12,c345');
    // libvirt: the image label takes the user of its own (process) context and object_r from the image line.
    expect(byPath(p, '/var/lib/images/root.qcow2').label).toBe('sysadm_u:object_r:vm_image_t:s0:c12,c345');
    expect(byPath(p, '/srv/cluster/shared.raw').label).toBe('obj_u:object_r:vm_image_t:s0');
    expect(byPath(p, '/srv/iso/install.iso').label).toBe('obj_u:object_r:vm_ro_t:s0');
  });

  it('requires an allocated level unless the VM is running', () => {
    expect(planError(() => planStart(everything, debian)).code).toBe('missing-level');
  });

  it.each([
    ['s0', /no categories/],
    ['s1:c1,c2', /sensitivity s0/],
    ['s0:c1,c1024', /outside the range c0.c1023/],
  ])('refuses the allocated level %s', (level, message) => {
    const error = planError(() => planStart(everything, debian, parseLevel(level)));
    expect(error.code).toBe('bad-level');
    expect(error.message).toMatch(message);
  });
});

describe('process type', () => {
  it('uses the alternate TCG domain type when the policy has one', () => {
    expect(planStart(vm({ accel: 'tcg' }), fedora, PAIR).process.context).toBe('system_u:system_r:svirt_tcg_t:s0:c12,c345');
    expect(planStart(vm({ accel: 'kvm' }), fedora, PAIR).process.context).toBe('system_u:system_r:svirt_t:s0:c12,c345');
  });

  it('falls back to svirt_t for TCG without one, and says so', () => {
    const p = planStart(vm({ accel: 'tcg' }), debian, PAIR);
    expect(p.process.context).toBe('system_u:system_r:svirt_t:s0:c12,c345');
    expect(p.notes.join('\n')).toMatch(/execmem/);
  });

  it('takes only the type from a baselabel, which wins over the TCG type', () => {
    const p = planStart(vm({ accel: 'tcg', seclabel: { mode: 'dynamic', baseLabel: 'other_u:other_r:svirt_custom_t:s0:c1' } }), fedora, PAIR);
    expect(p.process.context).toBe('system_u:system_r:svirt_custom_t:s0:c12,c345');
    expect(p.imageLabel).toBe(IMAGE);
  });
});

describe('a running dynamic VM (live label)', () => {
  const live = { label: 'system_u:system_r:svirt_t:s0:c7,c9', imageLabel: 'system_u:object_r:svirt_image_t:s0:c7,c9' };

  it('keeps its pair and live labels; no allocation needed', () => {
    const p = planStart({ ...everything, live }, debian);
    expect(p.process.context).toBe(live.label);
    expect(p.range).toBe('s0:c7,c9');
    expect(byPath(p, '/var/lib/images/root.qcow2').label).toBe(live.imageLabel);
  });

  it('derives the image label from the live pair when the live XML has none', () => {
    const p = planStart({ ...everything, live: { label: live.label } }, debian);
    expect(p.imageLabel).toBe('system_u:object_r:svirt_image_t:s0:c7,c9');
  });

  it('accepts the same pair given again, refuses a different one', () => {
    expect(planStart({ ...everything, live }, debian, parseLevel('s0:c7,c9')).range).toBe('s0:c7,c9');
    expect(planError(() => planStart({ ...everything, live }, debian, PAIR)).code).toBe('bad-level');
  });

  it('refuses a live label without a range', () => {
    expect(planError(() => planStart({ ...everything, live: { label: 'system_u:system_r:svirt_t' } }, debian)).code).toBe('malformed-label');
  });
});

describe('static seclabel', () => {
  const label = 'system_u:system_r:svirt_t:s0:c100,c200';

  it('with relabel yes: images get the image type at the static range', () => {
    const p = planStart({ ...everything, seclabel: { mode: 'static', label, relabel: true } }, debian);
    expect(p.process).toEqual({ context: label, confined: true });
    expect(p.imageLabel).toBe('system_u:object_r:svirt_image_t:s0:c100,c200');
    expect(byPath(p, '/var/lib/images/root.qcow2')).toMatchObject({ label: 'system_u:object_r:svirt_image_t:s0:c100,c200', remember: true });
    expect(byPath(p, '/srv/cluster/shared.raw').label).toBe(SHARED);
    expect(byPath(p, '/srv/iso/install.iso').label).toBe(CONTENT);
    expect(byPath(p, '/boot/guest/vmlinuz').label).toBe(CONTENT);
    expect(byPath(p, '/var/log/guest/serial.log').label).toBe('system_u:object_r:svirt_image_t:s0:c100,c200');
  });

  it('keeps a full static range (low-high) on the image label, as libvirt copies the range', () => {
    const p = planStart(vm({ seclabel: { mode: 'static', label: 'system_u:system_r:svirt_t:s0-s0:c0.c1023', relabel: true } }), debian);
    expect(p.imageLabel).toBe('system_u:object_r:svirt_image_t:s0-s0:c0.c1023');
  });

  it('with relabel yes: an explicit image label wins', () => {
    const imageLabel = 'system_u:object_r:svirt_image_t:s0:c5,c8';
    const p = planStart({ ...everything, seclabel: { mode: 'static', label, relabel: true, imageLabel } }, debian);
    expect(byPath(p, '/var/lib/images/root.qcow2').label).toBe(imageLabel);
  });

  it('ignores TCG and the allocated level: the label is the label', () => {
    const p = planStart(vm({ accel: 'tcg', seclabel: { mode: 'static', label, relabel: true } }), fedora, PAIR);
    expect(p.process.context).toBe(label);
  });

  it('with relabel no: nothing is relabeled, not even custom-labeled disks', () => {
    const spec: VmSpec = {
      ...everything,
      seclabel: { mode: 'static', label, relabel: false },
      disks: [...everything.disks, { path: '/a/custom.img', class: 'private', label: 'system_u:object_r:x_t:s0' }],
    };
    const p = planStart(spec, debian);
    expect(p.process).toEqual({ context: label, confined: true });
    expect(p.imageLabel).toBeNull();
    expect(p.actions).toHaveLength(11);
    for (const a of p.actions) {
      expect(a).toMatchObject({ label: null, remember: false });
      expect(a.reason).toMatch(/relabel=no/);
    }
  });

  it('refuses a static label without a range when images need one', () => {
    const error = planError(() => planStart(vm({ seclabel: { mode: 'static', label: 'system_u:system_r:svirt_t', relabel: true } }), debian));
    expect(error.code).toBe('malformed-label');
    expect(error.message).toMatch(/no MLS range/);
  });
});

describe('seclabel none', () => {
  it('runs unconfined and relabels nothing', () => {
    const p = planStart({ ...everything, seclabel: { mode: 'none' } }, debian, PAIR);
    expect(p.process).toEqual({ context: null, confined: false });
    expect(p.range).toBeNull();
    expect(p.imageLabel).toBeNull();
    expect(p.actions).toHaveLength(10);
    expect(p.actions.every((a) => a.label === null && !a.remember && /unconfined/.test(a.reason))).toBe(true);
  });
});

describe('one path used twice', () => {
  it('refuses conflicting classes, naming both devices (libvirt: already in use)', () => {
    const spec = vm({
      disks: [
        { path: '/img/a.raw', class: 'private', target: 'vda' },
        { path: '/img/a.raw', class: 'shared', target: 'vdb' },
      ],
    });
    const error = planError(() => planStart(spec, debian, PAIR));
    expect(error.code).toBe('path-conflict');
    expect(error.message).toMatch(/\/img\/a\.raw is already in use by disk vda .* disk vdb/);
  });

  it.each([
    ['private', 'readonly'],
    ['shared', 'readonly'],
  ] as const)('refuses %s + %s', (a, b) => {
    const spec = vm({ disks: [{ path: '/img/x', class: a }, { path: '/img/x', class: b }] });
    expect(planError(() => planStart(spec, debian, PAIR)).code).toBe('path-conflict');
  });

  it('refuses one use left alone and another relabeled', () => {
    const spec = vm({ disks: [{ path: '/img/x', class: 'private', relabel: false }, { path: '/img/x', class: 'private' }] });
    expect(planError(() => planStart(spec, debian, PAIR)).code).toBe('path-conflict');
  });

  it('refuses a kernel that is also a read-only disk: one would be restored, the other not', () => {
    const spec = vm({ kernel: '/boot/k', disks: [{ path: '/boot/k', class: 'readonly' }] });
    expect(planError(() => planStart(spec, debian, PAIR)).code).toBe('path-conflict');
  });

  it('plans the same file once when both uses agree, spelling paths one way', () => {
    const spec = vm({ disks: [{ path: '/iso//a.iso', class: 'readonly' }, { path: '/iso/./a.iso', class: 'readonly' }] });
    expect(planStart(spec, debian, PAIR).actions.map((a) => a.path)).toEqual(['/iso/a.iso']);
  });

  it('does not call anything a conflict when nothing is relabeled', () => {
    const spec = vm({ seclabel: { mode: 'none' }, disks: [{ path: '/img/x', class: 'private' }, { path: '/img/x', class: 'shared' }] });
    expect(planStart(spec, debian).actions).toHaveLength(1);
  });
});

describe('malformed input', () => {
  it.each([
    ['static label', vm({ seclabel: { mode: 'static', label: 'system_u:system_r', relabel: true } }), /static label: invalid context/],
    ['static image label', vm({ seclabel: { mode: 'static', label: 'u:r:t:s0:c1', relabel: true, imageLabel: 'u:r:1bad:s0' } }), /image label: invalid type/],
    ['baselabel', vm({ seclabel: { mode: 'dynamic', baseLabel: 'u:r:t:s0:c5.c2' } }), /baselabel: invalid categories/],
    ['live label', vm({ live: { label: 'nonsense' } }), /live label: invalid context/],
    ['live image label', vm({ live: { label: 'u:r:t:s0:c1,c2', imageLabel: 'u:r:t:x0' } }), /live image label: invalid sensitivity/],
    ['disk label', vm({ disks: [{ path: '/d', class: 'private', target: 'vdc', label: 'u:r:t:s0:' }] }), /disk vdc label: invalid categories/],
    ['char label', vm({ charDevices: [{ kind: 'file', path: '/l', label: ' u:r:t:s0' }] }), /serial 0 label: invalid context/],
  ])('%s', (_what, spec, message) => {
    const error = planError(() => planStart(spec, debian, spec.live ? undefined : PAIR));
    expect(error.code).toBe('malformed-label');
    expect(error.message).toMatch(message);
  });

  it('refuses a custom label together with relabel=no', () => {
    const disk = vm({ disks: [{ path: '/d', class: 'private', relabel: false, label: 'u:r:t:s0' }] });
    expect(planError(() => planStart(disk, debian, PAIR)).message).toMatch(/contradicts/);
    const chr = vm({ charDevices: [{ kind: 'dev', path: '/dev/ttyS0', relabel: false, label: 'u:r:t:s0' }] });
    expect(planError(() => planStart(chr, debian, PAIR)).message).toMatch(/contradicts/);
  });

  it.each([
    ['', /empty/],
    ['images/a.raw', /not an absolute path/],
    ['/images/../etc/shadow', /contains "\.\."/],
    ['/images/a\0b', /NUL/],
  ])('refuses the path %j', (path, message) => {
    const error = planError(() => planStart(vm({ disks: [{ path, class: 'private' }] }), debian, PAIR));
    expect(error.code).toBe('bad-path');
    expect(error.message).toMatch(message);
  });
});

describe('qcow2 backing chains', () => {
  const overlay = vm({
    disks: [{
      path: '/home/u/vm/top.qcow2', class: 'private', target: 'vda', format: 'qcow2',
      backingStore: [{ path: '/home/u/vm/mid.qcow2', format: 'qcow2' }, { path: '/home/u/base.raw', format: 'raw' }],
    }],
  });

  it('labels the top image with the pair and every backing layer as read-only content, restored at stop', () => {
    const plan = planStart(overlay, debian, PAIR);
    expect(plan.actions.map((a) => [a.path, a.device, a.class, a.label, a.remember])).toEqual([
      ['/home/u/vm/top.qcow2', 'disk vda', 'private', IMAGE, true],
      ['/home/u/vm/mid.qcow2', 'disk vda backing 1', 'readonly', CONTENT, true],
      ['/home/u/base.raw', 'disk vda backing 2', 'readonly', CONTENT, true],
    ]);
    expect(planStop(overlay, plan).restores.map((r) => r.path)).toEqual(['/home/u/base.raw', '/home/u/vm/mid.qcow2', '/home/u/vm/top.qcow2']);
  });

  it('leaves backing layers alone when the disk is not relabeled', () => {
    const disk = overlay.disks[0] as NonNullable<VmSpec['disks'][number]>;
    const spec = vm({ disks: [{ ...disk, relabel: false }] });
    expect(planStart(spec, debian, PAIR).actions.map((a) => a.label)).toEqual([null, null, null]);
  });

  it("refuses a backing layer that is another disk's private image of the same VM", () => {
    const spec = vm({ disks: [...overlay.disks, { path: '/home/u/vm/mid.qcow2', class: 'private', target: 'vdb' }] });
    expect(planError(() => planStart(spec, debian, PAIR)).code).toBe('path-conflict');
  });
});

describe('planStop', () => {
  it('restores what was remembered, in reverse order, and releases a dynamic pair', () => {
    const start = planStart(everything, debian, PAIR);
    const stop = planStop(everything, start);
    expect(stop.vm).toBe('guest');
    expect(stop.releaseRange).toBe('s0:c12,c345');
    expect(stop.restores.map((r) => r.path)).toEqual([
      '/run/guest/console.sock', '/dev/ttyS1', '/run/guest/pipe0', '/var/log/guest/serial.log',
      '/boot/guest/board.dtb', '/boot/guest/initrd.gz', '/boot/guest/vmlinuz',
      '/srv/iso/install.iso', '/var/lib/images/root.qcow2',
    ]);
    expect(stop.restores.every((r) => r.op === 'restore-remembered')).toBe(true);
    // A shared disk stays as it is: other VMs may still use it.
    expect(stop.restores.some((r) => r.path === '/srv/cluster/shared.raw')).toBe(false);
  });

  it('restores an installer ISO on a CD-ROM, and leaves a read-only data disk as it is', () => {
    const spec = vm({ disks: [{ path: '/srv/iso/install.iso', class: 'readonly', device: 'cdrom' }, { path: '/srv/data.img', class: 'readonly' }] });
    const start = planStart(spec, debian, PAIR);
    expect(byPath(start, '/srv/iso/install.iso')).toMatchObject({ label: CONTENT, remember: true });
    expect(byPath(start, '/srv/data.img')).toMatchObject({ label: CONTENT, remember: false });
    expect(planStop(spec, start).restores.map((r) => r.path)).toEqual(['/srv/iso/install.iso']);
  });

  it('releases nothing for static labels, and restores nothing when nothing was relabeled', () => {
    const label = 'system_u:system_r:svirt_t:s0:c100,c200';
    const relabeled = { ...everything, seclabel: { mode: 'static', label, relabel: true } } as const;
    expect(planStop(relabeled, planStart(relabeled, debian))).toMatchObject({ releaseRange: null });
    expect(planStop(relabeled, planStart(relabeled, debian)).restores).toHaveLength(9);
    const fixed = { ...everything, seclabel: { mode: 'static', label, relabel: false } } as const;
    expect(planStop(fixed, planStart(fixed, debian))).toEqual({ vm: 'guest', restores: [], releaseRange: null });
    const none = { ...everything, seclabel: { mode: 'none' } } as const;
    expect(planStop(none, planStart(none, debian))).toEqual({ vm: 'guest', restores: [], releaseRange: null });
  });

  it('does not restore disks left alone with relabel=no', () => {
    const spec = vm({ disks: [{ path: '/a', class: 'private', relabel: false }, { path: '/b', class: 'private' }] });
    expect(planStop(spec, planStart(spec, debian, PAIR)).restores.map((r) => r.path)).toEqual(['/b']);
  });

  it('releases a running VM\'s live pair', () => {
    const spec = { ...everything, live: { label: 'system_u:system_r:svirt_t:s0:c7,c9' } };
    expect(planStop(spec, planStart(spec, debian)).releaseRange).toBe('s0:c7,c9');
  });

  it('refuses a start plan of another VM', () => {
    const start = planStart(everything, debian, PAIR);
    expect(planError(() => planStop({ ...everything, name: 'other' }, start)).code).toBe('plan-mismatch');
  });
});
