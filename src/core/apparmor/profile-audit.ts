/**
 * The audit under AppArmor: the same matrix as under SELinux (running VMs × the files they use, then
 * idle content), with each cell answered from the VM's loaded profile instead of from labels. "Who can
 * access what" means the same under both models: write when the VM's qemu may open the file for
 * writing, read when only for reading, none otherwise, and why (here: the profile rule that grants, the
 * deny rule that takes away, or that no rule names the file). A VM whose qemu runs in no profile, or in
 * one the kernel does not enforce, reaches whatever file permissions let it, and is a critical problem,
 * as an unconfined VM is under SELinux.
 */
import type { Confinement } from '../confinement';
import { encodeRuns, type AccessLevel, type AuditMatrix, type AuditProblem, type AuditVerdict } from '../selinux/audit-report';
import { profileGrants, type ParsedProfile } from './profile-access';
import type { AppArmorMode } from './vm-profile';

export interface ProfiledVm {
  readonly name: string;
  /** The profile qemu runs in; null when it runs in none. */
  readonly profile: string | null;
  /** The loaded profile's mode (the kernel's list); null when unknown. */
  readonly mode: AppArmorMode | null;
  /** The profile as loaded, ready to be asked; absent when it could not be read (see `problem`). */
  readonly parsed?: ParsedProfile;
  /** Why the profile could not be read (its cells are errors, never denials). */
  readonly problem?: string;
  readonly confinement?: Confinement;
  /** Why not confined, when the helper says so. */
  readonly notConfinedReason: string | null;
  /** The files this VM uses, with how (private files are the ones another VM must not reach). */
  readonly resources: readonly { path: string; class: string }[];
}

const UNCONFINED: AuditVerdict = { access: 'write', reason: 'qemu runs in no AppArmor profile: AppArmor does not restrict it, only file permissions do' };

/** One cell: write (read and write granted), read, none, or error when the profile could not be read. */
export function profileVerdict(vm: Pick<ProfiledVm, 'profile' | 'parsed' | 'problem'>, path: string): AuditVerdict {
  if (vm.profile === null) return UNCONFINED;
  if (vm.parsed === undefined) return { access: 'error', reason: `${vm.profile} could not be read: ${vm.problem ?? 'no text'}` };
  const write = profileGrants(vm.parsed, { path, mode: 'rw' });
  if (write.granted) return { access: 'write', reason: write.reason };
  const read = profileGrants(vm.parsed, { path, mode: 'r' });
  const access: AccessLevel = read.granted ? 'read' : 'none';
  return { access, reason: read.granted ? `read only: ${read.reason}; ${write.reason}` : read.reason };
}

/**
 * Builds the matrix and the problems from the running VMs' profiles; `idle`: content no running VM uses;
 * `canonical`: a path's canonical form where it differs (what the profile is asked about).
 */
export function buildProfileAuditMatrix(
  running: readonly ProfiledVm[], idle: readonly { path: string; class: string }[] = [], canonical: ReadonlyMap<string, string> = new Map(),
): AuditMatrix {
  const problems: AuditProblem[] = [];
  const resources = new Map<string, { path: string; label: null; usedBy: string[]; owners: string[] }>();
  for (const vm of running) {
    if (vm.profile === null) {
      problems.push({ kind: 'unconfined-vm', severity: 'critical', vm: vm.name, message: `${vm.name}: ${vm.notConfinedReason ?? 'qemu runs in no AppArmor profile'}` });
    } else if (vm.mode !== null && vm.mode !== 'enforce') {
      problems.push({ kind: 'apparmor-complain', severity: 'critical', vm: vm.name,
        message: `${vm.name}: its profile ${vm.profile} is in ${vm.mode} mode: what it does not grant is logged, not refused` });
    }
    for (const r of vm.resources) {
      let entry = resources.get(r.path);
      if (!entry) resources.set(r.path, (entry = { path: r.path, label: null, usedBy: [], owners: [] }));
      entry.usedBy.push(vm.name);
      if (r.class === 'private') entry.owners.push(vm.name);
    }
  }
  for (const r of idle) if (!resources.has(r.path)) resources.set(r.path, { path: r.path, label: null, usedBy: [], owners: [] });

  const entries = [...resources.values()];
  const verdicts: AuditVerdict[] = [];
  const index = new Map<string, number>();
  const grid = new Uint32Array(running.length * entries.length);
  running.forEach((vm, i) => entries.forEach((entry, j) => {
    // A profile names the path the kernel sees (a device's node, not the link the definition names).
    const v = profileVerdict(vm, canonical.get(entry.path) ?? entry.path);
    const key = `${v.access}\0${v.reason}`;
    let k = index.get(key);
    if (k === undefined) {
      index.set(key, (k = verdicts.length));
      verdicts.push(v);
    }
    grid[i * entries.length + j] = k;
  }));

  // A private file another VM's profile reaches is what per-VM profiles are there to prevent. An
  // unconfined VM reaches everything: its own critical item says so, rather than one per file.
  entries.forEach((entry, j) => {
    const owner = entry.owners[0];
    if (owner === undefined) return;
    const intruders = running.filter((vm, i) => {
      const access = verdicts[grid[i * entries.length + j] as number]?.access;
      return vm.profile !== null && vm.name !== owner && (access === 'read' || access === 'write');
    }).map((vm) => vm.name);
    if (intruders.length > 0) {
      problems.push({ kind: 'unintended-sharing', severity: 'critical', path: entry.path, message: `${entry.path} is private to ${owner} but ${intruders.join(', ')} can reach it too` });
    }
  });

  return {
    vms: running.map((vm) => ({ name: vm.name, processLabel: vm.profile, ...(vm.confinement ? { confinement: vm.confinement } : {}) })),
    resources: entries.map(({ path, label, usedBy }) => ({ path, label, usedBy })),
    verdicts,
    runs: encodeRuns(grid),
    problems,
  };
}
