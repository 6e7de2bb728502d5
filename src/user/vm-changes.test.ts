import { describe, expect, it } from 'vitest';
import { applyVmChanges, CLI_CHANGE_FIELDS, FORM_CHANGE_FIELDS, parsePortForward, type VmChanges } from './vm-changes';
import type { VmDefinition } from '../core/vm-definition';

const base: VmDefinition = {
  version: 1, name: 'web', memoryMiB: 512, vcpus: 1, createdAt: '2026-01-01T00:00:00.000Z',
  boot: { kind: 'iso', iso: '/home/u/debian.iso' },
  disks: [{ path: '/home/u/web.qcow2', format: 'qcow2', class: 'private', relabel: true }],
  seclabel: { mode: 'dynamic' },
  network: { mode: 'user', portForwards: [{ hostPort: 2222, guestPort: 22 }] },
  display: 'vnc',
};
const cli = (changes: VmChanges, current: VmDefinition = base) => applyVmChanges(current, changes, CLI_CHANGE_FIELDS);

describe('changes to a stopped VM', () => {
  it('parses HOST:GUEST and 127.0.0.1:HOST:GUEST, refusing other host addresses, privileged host ports and port 0, naming the flag', () => {
    expect(parsePortForward('8080:80', '--forward')).toEqual({ hostPort: 8080, guestPort: 80 });
    expect(parsePortForward('127.0.0.1:2222:22', '--forward')).toEqual({ hostPort: 2222, guestPort: 22 });
    expect(() => parsePortForward('0.0.0.0:8080:80', '--forward')).toThrow("--forward 0.0.0.0:8080:80: forwards listen on the host's loopback (127.0.0.1) only, not on 0.0.0.0");
    expect(() => parsePortForward('80:80', '--forward')).toThrow('--forward 80:80: the host port must be a number from 1024 to 65535 (qemu runs unprivileged, so it cannot listen below 1024), not "80"');
    expect(() => parsePortForward('8080:0', 'Port forwards')).toThrow('Port forwards 8080:0: the guest port must be a number from 1 to 65535, not "0"');
    expect(() => parsePortForward('8080:70000', '--forward')).toThrow(/guest port must be a number from 1 to 65535, not "70000"/);
    expect(() => parsePortForward('8080', '--forward')).toThrow('--forward 8080: say HOST:GUEST, a host loopback port and a guest port, e.g. 2222:22');
  });

  it('refuses a host port forwarded twice, naming the field the user typed', () => {
    expect(() => cli({ portForwards: [{ hostPort: 2222, guestPort: 22 }, { hostPort: 2222, guestPort: 80 }] }))
      .toThrow('--forward 2222:80: host port 2222 is already forwarded (to guest port 22)');
    expect(() => applyVmChanges(base, { portForwards: [{ hostPort: 80, guestPort: 80 }] }, FORM_CHANGE_FIELDS)).toThrow(/^Port forwards 80:80: the host port/);
  });

  it('detaches the ISO to boot the first disk, and refuses to when there is no ISO or no disk', () => {
    expect(cli({ iso: null }).boot).toEqual({ kind: 'disk' });
    expect(() => cli({ iso: null }, { ...base, boot: { kind: 'disk' } })).toThrow('--no-iso: web has no ISO attached');
    expect(() => cli({ iso: null, removeDisks: ['/home/u/web.qcow2'] })).toThrow('--no-iso: web has no disk to boot from once the ISO is gone; attach one first');
    expect(() => cli({ removeDisks: ['/home/u/web.qcow2'] }, { ...base, boot: { kind: 'disk' } })).toThrow(/^--remove-disk: web boots from its first disk/);
  });

  it('attaches an ISO to a disk-booted VM but not to a kernel-booted one, nor one of its disks', () => {
    expect(cli({ iso: '/home/u/new.iso' }, { ...base, boot: { kind: 'disk' } }).boot).toEqual({ kind: 'iso', iso: '/home/u/new.iso' });
    expect(() => cli({ iso: '/home/u/x.iso' }, { ...base, boot: { kind: 'kernel', kernel: '/boot/vmlinuz' } })).toThrow(/^--iso \/home\/u\/x\.iso: web boots a kernel directly/);
    expect(() => cli({ iso: '/home/u/web.qcow2' })).toThrow("--iso /home/u/web.qcow2: this file is already one of web's disks");
  });

  it('turns the network off only without forwards, and keeps the forwards when only the mode is said', () => {
    expect(cli({ network: 'none' }).network).toEqual({ mode: 'none' });
    expect(() => cli({ network: 'none', portForwards: [{ hostPort: 8080, guestPort: 80 }] })).toThrow(/^--forward: web would have no network; forwards need user-mode networking \(--network user\)/);
    expect(cli({ network: 'user' }).network).toEqual(base.network);
    expect(cli({ portForwards: [] }).network).toEqual({ mode: 'user' });
  });

  it('asks for a new variable store on a switch to UEFI, keeps the one it has, and drops it for BIOS', () => {
    expect(cli({ firmware: 'uefi' }).firmware).toEqual({ kind: 'uefi', nvram: '' });
    const uefi: VmDefinition = { ...base, firmware: { kind: 'uefi', nvram: '/home/u/web.nvram.fd' } };
    expect(cli({ display: false }, uefi)).toMatchObject({ firmware: uefi.firmware, display: 'none' });
    expect(cli({ firmware: 'bios' }, uefi).firmware).toEqual({ kind: 'bios' });
  });
});
