import type {
  AuditReport,
  ConfinementDescription,
  HostStatus,
  McsLevel,
  RelabelRequest,
  SvirtCalls,
  VmDefinition,
  VmDetails,
  VmResource,
  VmSummary,
} from '../../../src/contracts/ipc-contract';
import { parseContext } from '../../../src/core/selinux/context';
import { describeSelinuxLabel, labelParts, levelMark, staticLabelForm } from '../../../src/core/selinux/label-parts';
import { packCells } from '../../../src/core/selinux/audit-report';
import type { FakeApi } from './fake-api';

/** Builders and a small believable host for component tests and renderer previews. */

/** A level's chip as the main process gives it (its pair when it is one VM's own). */
export function mcs(level: string, name: string | null = null): McsLevel {
  return { level, name, pair: levelMark(`system_u:object_r:svirt_image_t:${level}`)?.pair ?? null };
}

/** What the SELinux driver (running) or the user side (stopped) says of a VM with these labels. */
export function selinuxSecurity(processLabel: string | null, imageLabel: string | null, dynamic: boolean): ConfinementDescription {
  const described = describeSelinuxLabel({ process: processLabel, image: imageLabel, dynamic, distinct: levelMark(processLabel)?.pair ?? null });
  const summary = processLabel === null && dynamic ? 'a fresh MCS pair is drawn at each start: only this VM and its private files will carry it' : described.summary;
  return { model: 'selinux', ...described, summary };
}

/** What the AppArmor driver says of a VM running in its generated profile. */
export function apparmorSecurity(profile: string): ConfinementDescription {
  return {
    model: 'apparmor', modelName: 'AppArmor', processLabel: profile, imageLabel: null, distinct: profile,
    summary: `qemu runs in the AppArmor profile ${profile}, made at its start from this VM's own files: no other VM's disk and no file of yours is in it`,
    processParts: [{ name: 'profile', value: profile, meaning: 'written for this VM alone, removed when it stops' }], imageParts: [],
    layers: [{ model: 'dac', modelName: 'DAC (per-VM uid)', summary: 'qemu runs as uid 64012, which owns only this VM\'s files', parts: [{ name: 'uid', value: '64012' }] }],
  };
}

export function vmSummary(overrides: Partial<VmSummary> & { name: string }): VmSummary {
  // A builder told only `confined: false` means a VM without a label: seclabel none, or SELinux off.
  const unconfined = overrides.seclabel?.mode === 'none' ? 'unconfined-none' : 'unconfined-disabled';
  const processLabel = overrides.processLabel ?? null;
  const seclabelMode = overrides.seclabel?.mode ?? 'dynamic';
  const security = overrides.security ?? selinuxSecurity(seclabelMode === 'none' ? null : processLabel, overrides.imageLabel ?? null, seclabelMode === 'dynamic');
  return {
    security,
    state: 'stopped',
    confinement: overrides.confined === false ? unconfined : 'confined',
    confined: true,
    notConfinedReason: null,
    processLabel: null,
    imageLabel: null,
    processLevel: null,
    imageLevel: null,
    seclabel: { mode: 'dynamic', relabel: true },
    vcpus: 2,
    memoryMiB: 2048,
    pid: null,
    ...overrides,
  };
}

/** A VM running (or statically labeled) at `level`, its images at the same pair unless `imageLevel` says otherwise. */
export function confinedVm(name: string, level: string, overrides: Partial<VmSummary> = {}, imageLevel = level): VmSummary {
  return vmSummary({
    name,
    state: 'running',
    processLabel: `system_u:system_r:svirt_t:${level}`,
    imageLabel: `system_u:object_r:svirt_image_t:${imageLevel}`,
    processLevel: mcs(level),
    imageLevel: mcs(imageLevel),
    pid: 4000 + name.length,
    ...overrides,
  });
}

export function vmDefinition(name: string, overrides: Partial<VmDefinition> = {}): VmDefinition {
  return {
    version: 1,
    name,
    memoryMiB: 2048,
    vcpus: 2,
    boot: { kind: 'disk' },
    disks: [{ path: `/var/lib/svirt/images/${name}.qcow2`, format: 'qcow2', class: 'private', relabel: true }],
    seclabel: { mode: 'dynamic' },
    createdAt: '2025-01-15T09:30:00.000Z',
    ...overrides,
  };
}

export function diskResource(path: string, overrides: Partial<VmResource> = {}): VmResource {
  const expected = overrides.expectedLabel ?? null;
  const actual = overrides.actualLabel ?? null;
  const chip = (label: string | null) => {
    const mark = levelMark(label);
    return mark ? { ...mark, name: null } : null;
  };
  return {
    expectedParts: labelParts(expected),
    expectedLevel: chip(expected),
    actualParts: labelParts(actual),
    actualLevel: chip(actual),
    path,
    kind: 'disk',
    class: 'private',
    target: 'vda',
    relabel: true,
    isTree: false,
    expectedLabel: null,
    actualLabel: null,
    match: true,
    problem: null,
    ...overrides,
  };
}

export const sampleHost: HostStatus = {
  security: { model: 'selinux', modelName: 'SELinux', state: 'enforcing', layers: ['selinux', 'dac'] },
  selinux: { mode: 'enforcing', policyType: 'targeted' },
  profile: { processType: 'svirt_t', tcgProcessType: 'svirt_tcg_t', imageType: 'svirt_image_t', contentType: 'virt_content_t', fallback: false, notes: [] },
  accel: { kind: 'kvm', reason: '/dev/kvm is usable and a probe guest ran in 180 ms' },
  helper: { connected: true, version: '0.1.0', launchedVia: 'pkexec', error: null },
};

const image = (level: string) => `system_u:object_r:svirt_image_t:${level}`;
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const CONTENT = 'system_u:object_r:virt_content_t:s0';

const web = confinedVm('web', 's0:c23,c611', { processLevel: mcs('s0:c23,c611', 'Web frontend'), imageLevel: mcs('s0:c23,c611', 'Web frontend'), memoryMiB: 4096, vcpus: 4 });
const db = confinedVm('db', 's0:c88,c901', { memoryMiB: 8192, vcpus: 4 });
// A static label that collides with db's pair: exactly what the list must make obvious.
const reports = confinedVm('reports', 's0:c88,c901', { seclabel: { mode: 'static', relabel: false } });
const build = vmSummary({
  name: 'build',
  processLabel: 'system_u:system_r:svirt_t:s0:c5,c6',
  imageLabel: image('s0:c5,c7'),
  processLevel: mcs('s0:c5,c6'),
  imageLevel: mcs('s0:c5,c7'),
  seclabel: { mode: 'static', relabel: true },
  vcpus: 8,
  memoryMiB: 16384,
});
const legacy = vmSummary({ name: 'legacy-xp', state: 'running', confined: false, notConfinedReason: 'seclabel is none', processLabel: 'unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023', pid: 5123, seclabel: { mode: 'none', relabel: false }, memoryMiB: 1024, vcpus: 1 });
const installer = vmSummary({ name: 'debian-install', memoryMiB: 2048 });
// A VM the AppArmor driver confined (a helper on an AppArmor host): its profile, not a context, sets it apart.
const KIOSK_PROFILE = 'svirt-1000-kiosk';
const kiosk = vmSummary({
  name: 'kiosk', state: 'running', pid: 4710, processLabel: KIOSK_PROFILE, processLevel: { level: KIOSK_PROFILE, name: null, pair: KIOSK_PROFILE },
  security: apparmorSecurity(KIOSK_PROFILE),
});

export const sampleVms: VmSummary[] = [web, db, reports, build, legacy, installer, kiosk];

const sampleDetails: Record<string, VmDetails> = {
  web: {
    summary: web,
    definition: vmDefinition('web', {
      memoryMiB: 4096,
      vcpus: 4,
      disks: [
        { path: '/var/lib/svirt/images/web.qcow2', format: 'qcow2', class: 'private', relabel: true },
        { path: '/srv/shared/assets.img', format: 'raw', class: 'shared', relabel: true },
      ],
      serialLog: '/var/log/svirt/web-serial.log',
    }),
    resources: [
      diskResource('/var/lib/svirt/images/web.qcow2', { expectedLabel: image('s0:c23,c611'), actualLabel: image('s0:c23,c611') }),
      diskResource('/srv/shared/assets.img', { class: 'shared', target: 'vdb', expectedLabel: SHARED, actualLabel: SHARED }),
      diskResource('/srv/site-content', { target: 'vdc', class: 'readonly', isTree: true, expectedLabel: CONTENT, actualLabel: 'unconfined_u:object_r:user_home_t:s0', match: false }),
      { ...diskResource('/var/log/svirt/web-serial.log', { expectedLabel: image('s0:c23,c611'), actualLabel: image('s0:c23,c611') }), kind: 'serial', class: 'char', target: null },
    ],
  },
  build: {
    summary: build,
    definition: vmDefinition('build', {
      vcpus: 8,
      memoryMiB: 16384,
      boot: { kind: 'kernel', kernel: '/var/lib/svirt/boot/vmlinuz-6.1', initrd: '/var/lib/svirt/boot/initrd-6.1.img', cmdline: 'console=ttyS0' },
      seclabel: { mode: 'static', label: 'system_u:system_r:svirt_t:s0:c5,c6', relabel: true, imageLabel: image('s0:c5,c7') },
    }),
    resources: [
      diskResource('/var/lib/svirt/images/build.qcow2', { expectedLabel: image('s0:c5,c7'), actualLabel: image('s0:c5,c7') }),
      diskResource('/srv/build-cache', { target: 'vdb', isTree: true, class: 'private', expectedLabel: image('s0:c5,c7'), actualLabel: 'unconfined_u:object_r:user_home_t:s0', match: false }),
      { ...diskResource('/var/lib/svirt/boot/vmlinuz-6.1', { expectedLabel: CONTENT, actualLabel: CONTENT }), kind: 'kernel', class: 'content', target: null },
      { ...diskResource('/var/lib/svirt/boot/initrd-6.1.img', { expectedLabel: CONTENT, actualLabel: CONTENT }), kind: 'initrd', class: 'content', target: null },
    ],
  },
};

function detailsFor(name: string): VmDetails {
  const known = sampleDetails[name];
  if (known) return known;
  const summary = sampleVms.find((vm) => vm.name === name);
  if (!summary) throw new Error(`no VM named ${name}`);
  const path = `/var/lib/svirt/images/${name}.qcow2`;
  const level = summary.imageLevel?.level;
  return {
    summary,
    definition: vmDefinition(name, { memoryMiB: summary.memoryMiB, vcpus: summary.vcpus }),
    resources: [diskResource(path, { expectedLabel: level ? image(level) : null, actualLabel: level ? image(level) : 'system_u:object_r:virt_image_t:s0', match: true })],
  };
}

// Rows: the running VMs, the unconfined one too; columns: their files and the content tree web reads.
const sampleAuditVms: AuditReport['vms'] = [
  { name: 'web', processLabel: web.processLabel ?? '', processLevel: web.processLevel },
  { name: 'db', processLabel: db.processLabel ?? '', processLevel: db.processLevel },
  { name: 'reports', processLabel: reports.processLabel ?? '', processLevel: reports.processLevel },
  { name: 'legacy-xp', processLabel: null, processLevel: null },
];
const sampleAuditResources: AuditReport['resources'] = [
  { path: '/var/lib/svirt/images/web.qcow2', label: image('s0:c23,c611'), usedBy: ['web'] },
  { path: '/var/lib/svirt/images/db.qcow2', label: image('s0:c88,c901'), usedBy: ['db'] },
  { path: '/var/lib/svirt/images/reports.qcow2', label: image('s0:c88,c901'), usedBy: ['reports'] },
  { path: '/srv/shared/assets.img', label: SHARED, usedBy: ['web'] },
  { path: '/srv/site-content', label: CONTENT, usedBy: ['web'] },
];

export const sampleAudit: AuditReport = {
  source: { kind: 'kernel', model: 'selinux', modelName: 'SELinux', why: 'SELinux is enforcing: the kernel answered each access check for the running qemu processes' },
  vms: sampleAuditVms,
  resources: sampleAuditResources,
  resourceLevels: sampleAuditResources.map((r) => {
    const mark = levelMark(r.label);
    return mark ? { ...mark, name: null } : null;
  }),
  ...packCells(
    sampleAuditVms.map((v) => v.name),
    sampleAuditResources.map((r) => r.path),
    [
      ...['web', 'db', 'reports'].flatMap((vm) => [
        { vm, path: '/var/lib/svirt/images/web.qcow2', access: vm === 'web' ? ('write' as const) : ('none' as const), reason: vm === 'web' ? 'same pair: allow svirt_t svirt_image_t:file write' : 'MCS constraint: s0:c88,c901 does not dominate s0:c23,c611' },
        { vm, path: '/var/lib/svirt/images/db.qcow2', access: vm === 'web' ? ('none' as const) : ('write' as const), reason: vm === 'web' ? 'MCS constraint: s0:c23,c611 does not dominate s0:c88,c901' : 'same pair s0:c88,c901' },
        { vm, path: '/var/lib/svirt/images/reports.qcow2', access: vm === 'web' ? ('none' as const) : ('write' as const), reason: vm === 'web' ? 'MCS constraint' : 'same pair s0:c88,c901' },
        { vm, path: '/srv/shared/assets.img', access: 'write' as const, reason: 's0 is dominated by every pair' },
        { vm, path: '/srv/site-content', access: 'read' as const, reason: 'read only: allow svirt_t virt_content_t:file read' },
      ]),
      ...sampleAuditResources.map((r) => ({ vm: 'legacy-xp', path: r.path, access: 'write' as const, reason: 'qemu runs unconfined (no SELinux label): SELinux does not restrict it, only file permissions do' })),
    ],
  ),
  problems: [
    { kind: 'duplicate-pair', severity: 'critical', message: "db and reports run with the same MCS pair s0:c88,c901: each can use the other's images (reachable now: /var/lib/svirt/images/db.qcow2, /var/lib/svirt/images/reports.qcow2)", vm: 'reports' },
    { kind: 'unconfined-vm', severity: 'warning', message: 'legacy-xp runs unconfined (seclabel none)', vm: 'legacy-xp' },
    { kind: 'label-drift', severity: 'info', message: '/srv/site-content is labeled user_home_t; web expects virt_content_t', vm: 'web', path: '/srv/site-content' },
  ],
};

/** A naive stand-in for the label checks the main process does, enough to show the editor's states. */
function checkStaticLabel(label: string, relabel: boolean, vm?: string) {
  const errors: string[] = [];
  const warnings: string[] = [];
  let imageLabel: string | null = null;
  try {
    const context = parseContext(label);
    const level = label.split(':').slice(3).join(':');
    if (!context.range) errors.push('the label has no MCS level: the VM would not be separated from others');
    const holder = sampleVms.find((other) => other.name !== vm && other.processLevel?.level === level);
    if (holder) warnings.push(`${holder.name} already uses ${level}: the two VMs could open each other's images`);
    if (!relabel) warnings.push("relabel is off: label the VM's files yourself, or it will not be able to open them");
    if (errors.length === 0 && relabel) imageLabel = image(level);
  } catch (e) {
    errors.push((e as Error).message);
  }
  const shown = errors.length === 0 ? label : null;
  const chip = (l: string | null) => {
    const mark = levelMark(l);
    return mark ? { ...mark, name: null } : null;
  };
  return { errors, warnings, imageLabel, processParts: labelParts(shown), processLevel: chip(shown), imageParts: labelParts(imageLabel), imageLevel: chip(imageLabel) };
}

/** Handlers that answer from the sample host; applyRelabel reports progress through the fake's events. */
export function sampleHandlers(events: () => FakeApi): Partial<SvirtCalls> {
  const previewFor = (request: RelabelRequest) => {
    const to = request.to === 'shared' ? SHARED : request.to === 'readonly' ? CONTENT : image('s0:c23,c611');
    const isTree = detailsFor(request.vm).resources.some((r) => r.path === request.path && r.isTree);
    const files = isTree ? ['index.html', 'style.css', 'logo.svg', 'docs/guide.html', 'docs/faq.html', 'release-notes/svirt-manager-2026-12-release-candidate-notes.html'].map((f) => `${request.path}/${f}`) : [request.path];
    return { ...request, changes: files.map((path) => ({ path, from: 'unconfined_u:object_r:user_home_t:s0', to })), count: files.length, warnings: [] };
  };
  return {
    appInfo: async () => ({ name: 'sVirt Manager', version: '0.1.0' }),
    hostStatus: async () => sampleHost,
    listVms: async () => sampleVms,
    getVm: async ({ name }) => detailsFor(name),
    audit: async () => sampleAudit,
    listDevices: async () => [
      { path: '/dev/vg0/build-scratch', node: '/dev/dm-3', majMin: '253:3', sizeBytes: 20 * 1024 ** 3, type: 'lvm', content: null, label: 'system_u:object_r:fixed_disk_device_t:s0', inUse: [] },
      { path: '/dev/sdb1', node: '/dev/sdb1', majMin: '8:17', sizeBytes: 500 * 1024 ** 3, type: 'part', content: 'ext4', label: 'system_u:object_r:fixed_disk_device_t:s0', inUse: ['mounted on /srv/backup'] },
    ],
    validateStaticLabel: async ({ label, relabel, vm }) => checkStaticLabel(label, relabel, vm),
    staticLabelForm: async ({ label }) => staticLabelForm(label, parseContext('system_u:system_r:svirt_t:s0')),
    previewRelabel: async (request) => previewFor(request),
    applyRelabel: async (request) => {
      const preview = previewFor(request);
      for (let done = 1; done <= preview.count; done++) {
        await new Promise((resolve) => setTimeout(resolve, 120));
        events().emit('relabelProgress', { vm: request.vm, path: request.path, done, total: preview.count });
      }
      return { ...request, changed: preview.count, failed: [], resource: detailsFor(request.vm).resources[0] as VmResource };
    },
    consoleAttach: async () => {
      setTimeout(() => {
        const text = 'Debian GNU/Linux 12 web ttyS0\r\n\r\nweb login: root\r\nPassword: \r\nroot@web:~# id -Z\r\nsystem_u:system_r:svirt_t:s0:c23,c611\r\nroot@web:~# ';
        events().emit('consoleData', { session: 'web-1', data: btoa(text) });
      }, 50);
      return { session: 'web-1', replayedBytes: 1843 };
    },
    snapshot: async ({ vm }) => ({
      vm, via: detailsFor(vm).summary.state === 'running' ? 'qmp' : 'qemu-img',
      disks: detailsFor(vm).definition.disks.filter((d) => d.format === 'qcow2').map((d) => ({ disk: d.path, snapshots: [{ name: 'before-upgrade', date: '2026-12-01T10:00:00Z' }] })),
    }),
    consoleInput: async () => undefined,
    consoleResize: async () => undefined,
    consoleDetach: async () => undefined,
  };
}
