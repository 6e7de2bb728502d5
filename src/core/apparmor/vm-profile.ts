/**
 * A VM's own AppArmor profile, written at its start from its own files, as libvirt's virt-aa-helper
 * does: the VM's qemu may use what the VM definition names and nothing else. Under AppArmor there are
 * no labels on files: what isolates VM A from VM B's disk is that B's disk is not in A's profile. So
 * the profile is made per VM and per start, from the files the helper checked and opened for that
 * start, and it goes away at stop (a profile left behind would keep granting a file the VM no longer
 * uses to whatever runs under its name next).
 *
 *   - private disks and the UEFI variable store: read, write, lock (`rwk`);
 *   - shared read-write disks: the same (other VMs have their own rule for them);
 *   - read-only content (CD-ROMs, backing layers, read-only disks) and the kernel, initrd and firmware:
 *     read and lock (`rk`: qemu takes a shared lock on what it reads);
 *   - the VM's run and display directories, which hold only this VM's sockets, FIFOs and log;
 *   - what every qemu needs (its binary, data, libraries, /proc and /sys reads): one abstraction the
 *     product ships (assets/apparmor/abstractions/svirt-qemu), so that nothing depends on libvirt's
 *     abstractions being installed.
 *
 * Every path is written by profile-path.ts, which quotes and escapes it so that the rule matches that
 * file alone, and refuses a name it cannot write so. The audit reads the loaded profile back
 * (profile-access.ts) to answer "may this VM's qemu open that file?" from the profile itself.
 */
import { ProfilePathError, quoteProfilePath, quoteProfileTree } from './profile-path';

/** How a VM uses a file, which decides its rule. */
export type ProfileFileUse = 'private' | 'shared' | 'readonly' | 'boot';

export interface ProfileFile {
  /** The canonical absolute path the kernel sees for the opened file (a block device's node, not a link to it). */
  readonly path: string;
  readonly use: ProfileFileUse;
}

export interface VmProfileInput {
  /** The profile's name (vmProfileName). */
  readonly name: string;
  /** Who the VM is, for the header comment (`1000/web`). */
  readonly vm: string;
  readonly files: readonly ProfileFile[];
  /** Directories that hold only this VM's things (its run and display directories): everything below is its own. */
  readonly dirs: readonly string[];
  /** The abstraction every VM's profile includes, as an include name (`abstractions/svirt-qemu`). */
  readonly base: string;
}

/** What a rule grants: read, or read and write (both with locking). */
export type ProfileAccess = 'read' | 'write';

/** Every profile of this product starts with this, and no other profile may (reconcile removes the ones it finds without a VM). */
export const VM_PROFILE_PREFIX = 'svirt-vm-';

// A VM name is already letters, digits, ".", "_" and "-"; a profile name must also not be a path
// (a leading "/"), a hat ("^") or a namespace (":"), so it is checked again here.
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** The profile name of a user's VM: one per owner and VM name, so a restart replaces it. */
export function vmProfileName(ownerUid: number, vmName: string): string {
  if (!Number.isInteger(ownerUid) || ownerUid < 0) throw new RangeError(`owner uid ${ownerUid} is not a uid`);
  if (!SAFE_NAME.test(vmName)) throw new ProfilePathError(vmName, 'a VM name in a profile name may hold only letters, digits, ".", "_" and "-"');
  return `${VM_PROFILE_PREFIX}${ownerUid}-${vmName}`;
}

/** Whether a loaded profile's name is one this product makes. */
export function isVmProfileName(name: string): boolean {
  return name.startsWith(VM_PROFILE_PREFIX) && SAFE_NAME.test(name);
}

const ACCESS_OF: Record<ProfileFileUse, ProfileAccess> = { private: 'write', shared: 'write', readonly: 'read', boot: 'read' };
const PERMS: Record<ProfileAccess, string> = { read: 'rk', write: 'rwk' };
const HEADINGS: Record<ProfileFileUse, string> = {
  private: 'private disks and the variable store',
  shared: 'shared read-write disks',
  readonly: 'read-only content',
  boot: 'kernel, initrd and firmware',
};

const USES: readonly ProfileFileUse[] = ['private', 'shared', 'readonly', 'boot'];

/** Each use's paths, in rule order; a file used two ways is listed once, under its widest use. */
function filesByUse(files: readonly ProfileFile[]): Map<ProfileFileUse, string[]> {
  const written = new Set<string>();
  const out = new Map<ProfileFileUse, string[]>();
  // Write uses come first, so a file also used read-only keeps its write rule.
  for (const use of USES) {
    const paths = files.filter((f) => f.use === use && !written.has(f.path)).map((f) => f.path);
    const unique = [...new Set(paths)];
    unique.forEach((p) => written.add(p));
    if (unique.length > 0) out.set(use, unique);
  }
  return out;
}

/** The profile's text, for apparmor_parser. Throws ProfilePathError for a path no rule can name exactly. */
export function renderVmProfile(input: VmProfileInput): string {
  if (!isVmProfileName(input.name)) throw new ProfilePathError(input.name, `a VM profile's name starts with ${VM_PROFILE_PREFIX} and holds only letters, digits, ".", "_" and "-"`);
  if (!/^[A-Za-z0-9][A-Za-z0-9/_.-]*$/.test(input.base) || input.base.includes('..')) throw new ProfilePathError(input.base, 'not an include name');
  const lines: string[] = [
    // eslint-disable-next-line no-control-regex
    `# sVirt Manager: the profile of VM ${JSON.stringify(input.vm).replace(/[\x00-\x1f\x7f]/g, '?')}, written at its start from its own files.`,
    '# It is replaced at each start and removed at stop: do not edit it.',
    'abi <abi/3.0>,',
    'include <tunables/global>',
    '',
    `profile ${input.name} {`,
    `  include <${input.base}>`,
  ];
  for (const [use, paths] of filesByUse(input.files)) {
    lines.push('', `  # ${HEADINGS[use]}`);
    for (const p of paths) lines.push(`  ${quoteProfilePath(p)} ${PERMS[ACCESS_OF[use]]},`);
  }
  const dirs = [...new Set(input.dirs)];
  if (dirs.length > 0) lines.push('', '  # its run and display directories (its sockets, serial line and log)');
  for (const d of dirs) {
    const q = quoteProfileTree(d);
    lines.push(`  ${q.dir} r,`, `  ${q.below} ${PERMS.write},`);
  }
  lines.push('}', '');
  return lines.join('\n');
}

export type AppArmorMode = 'enforce' | 'complain' | 'kill' | 'unconfined' | 'mixed';

/**
 * A confinement as the kernel writes it, in /proc/PID/attr/current and in each line of
 * /sys/kernel/security/apparmor/profiles: `NAME (MODE)`, or `unconfined`. Undefined for anything else.
 */
export function parseAppArmorLabel(text: string): { profile: string; mode: AppArmorMode } | undefined {
  const label = text.replace(/\0+$/, '').trim();
  if (label === 'unconfined') return { profile: 'unconfined', mode: 'unconfined' };
  const m = /^(\S(?:.*\S)?) \((enforce|complain|kill|unconfined|mixed)\)$/.exec(label);
  return m ? { profile: m[1] as string, mode: m[2] as AppArmorMode } : undefined;
}
