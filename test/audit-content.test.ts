import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cellAt } from '../src/core/selinux/audit-report';
import { createServices, type Services } from '../src/user/app-services';
import { writeLabel } from '../src/security/selinux/file-labels';
import { VmStore } from '../src/user/vm-store';

// The app's audit through its services: the running VMs come from a record (qemu is not what this test is
// about), everything after is the app's own path: the user's VM definitions, the labels on disk (real
// xattrs), the offline policy evaluator on the installed policy.
const CONTENT = 'system_u:object_r:virt_content_t:s0';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const PAIR = 's0:c7,c9';

let dir: string;
let services: Services;
const file = (name: string) => path.join(dir, name);

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-audit-content-'));
  await mkdir(file('media/albums'), { recursive: true });
  await writeFile(file('media/albums/one.flac'), '');
  for (const name of ['web.img', 'scratch.img', 'archive.img', 'installer.iso']) await writeFile(file(name), '');
  await writeLabel(file('media'), CONTENT);
  await writeLabel(file('scratch.img'), SHARED);
  await writeLabel(file('installer.iso'), CONTENT);
  await writeLabel(file('web.img'), `system_u:object_r:svirt_image_t:${PAIR}`);
  await writeLabel(file('archive.img'), 'unconfined_u:object_r:user_home_t:s0');

  const store = new VmStore(file('vms'));
  const base = { memoryMiB: 128, vcpus: 1, seclabel: { mode: 'dynamic' as const } };
  await store.define({ ...base, name: 'web', boot: { kind: 'disk' }, disks: [{ path: file('web.img'), format: 'raw', class: 'private', relabel: true }] });
  // Stopped: its read-only tree and shared disk keep their labels; its private disk has its own back.
  await store.define({
    ...base, name: 'library', boot: { kind: 'disk' },
    disks: [
      { path: file('archive.img'), format: 'raw', class: 'private', relabel: true },
      { path: file('media'), format: 'raw', class: 'readonly', relabel: true },
      { path: file('scratch.img'), format: 'raw', class: 'shared', relabel: true },
    ],
  });
  await store.define({ ...base, name: 'installing', boot: { kind: 'iso', iso: file('installer.iso') }, disks: [] });
  services = createServices({
    vmDirectory: file('vms'),
    auditedVms: async () => [{
      name: 'web', processLabel: `system_u:system_r:svirt_t:${PAIR}`, confined: true, notConfinedReason: null,
      resources: [{ path: file('web.img'), class: 'private', expectedLabel: `system_u:object_r:svirt_image_t:${PAIR}`, actualLabel: `system_u:object_r:svirt_image_t:${PAIR}`, tclass: 'file' }],
    }],
  });
}, 60_000);

afterAll(async () => {
  await services?.dispose?.();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the audit of content no running VM uses', () => {
  it('shows the shared and read-only trees and installer ISOs of stopped VMs as columns, with the running VM\'s access to each, and not their private disks', async () => {
    const report = await services.audit();
    // The running VM's files first, then the content of the stopped VMs (whichever order the store lists them).
    expect(report.resources[0]).toEqual({ path: file('web.img'), label: `system_u:object_r:svirt_image_t:${PAIR}`, usedBy: ['web'] });
    expect(report.resources.slice(1).map((r) => [r.path, r.label, r.usedBy]).sort()).toEqual([
      [file('installer.iso'), CONTENT, []],
      [file('media'), CONTENT, []],
      [file('scratch.img'), SHARED, []],
    ]);
    const access = (p: string) => cellAt(report, 0, report.resources.findIndex((r) => r.path === p)).access;
    expect(access(file('media'))).toBe('read');
    expect(access(file('installer.iso'))).toBe('read');
    expect(access(file('scratch.img'))).toBe('write');
    expect(report.problems.map((p) => p.kind)).toEqual(['selinux-disabled']);
  }, 60_000);
});
