import { access, mkdir, readdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { buildAuditMatrix, READ_PERMS, WRITE_PERMS, type AccessVerdict, type AuditedResource, type AuditedVm, type AuditMatrix } from '../core/selinux/audit-report';
import { SELINUXFS, type SelinuxMode } from '../security/selinux/host-selinux';
import { evaluatorOracle, kernelOracle } from '../security/selinux/access-oracles';
import { readLabels } from '../security/selinux/file-labels';
import { isUnder } from '../host/path-policy';
import { defaultCacheDir, readLiveBooleanStates } from '../security/selinux/policy-query';
import { parseProfile, profileIncludes } from '../core/apparmor/profile-access';
import { buildProfileAuditMatrix, type ProfiledVm } from '../core/apparmor/profile-audit';
import type { Result, VmProfileReport } from '../contracts/helper-protocol';
import type { VmService } from './vm-service';
import type { VmStore } from './vm-store';

/**
 * The live audit: which running VM may use which file, in the host's security model. With SELinux on,
 * the kernel's security server answers (the access vector from selinuxfs, one request per
 * subject/target/class: kernel-access.ts). Where SELinux is off and AppArmor confines the VMs, each VM's
 * profile as the helper loaded it answers (src/core/apparmor/profile-access.ts): under AppArmor no file
 * has a label, the profile's rules are the whole answer. Without either, the installed SELinux policy
 * is evaluated offline. compareWithOffline() puts kernel and evaluator side by side on an SELinux
 * kernel, per permission, and lists where they differ: the check that the evaluator is the kernel's equal.
 */
export interface AuditSource {
  /** kernel: SELinux's live checks; evaluator: the SELinux policy offline; profiles: the loaded AppArmor profiles. */
  kind: 'kernel' | 'evaluator' | 'profiles';
  /** The security model whose answer this is. */
  model: 'selinux' | 'apparmor';
  modelName: string;
  why: string;
}

export interface AuditOptions {
  /** Where selinuxfs is mounted (a test passes a directory of its own). */
  readonly selinuxfs?: string;
  /** Content trees no running VM uses (idleContent), as columns after the running VMs' files. */
  readonly idle?: readonly AuditedResource[];
}

/** Audit of running VMs: from the kernel when SELinux is on, else from the installed policy, offline. */
export async function auditRunningVms(mode: SelinuxMode, vms: readonly AuditedVm[], options: AuditOptions = {}): Promise<AuditMatrix & { source: AuditSource }> {
  if (mode !== 'disabled') {
    const source: AuditSource = { kind: 'kernel', model: 'selinux', modelName: 'SELinux', why: `SELinux is ${mode}: the kernel's security server answers each check (its access vectors do not depend on the mode)` };
    return { ...(await buildAuditMatrix(mode, vms, kernelOracle(options.selinuxfs), options.idle)), source };
  }
  const { oracle, policyPath } = await evaluatorOracle();
  const source: AuditSource = { kind: 'evaluator', model: 'selinux', modelName: 'SELinux', why: `SELinux is disabled in this kernel: the installed policy (${policyPath}) is evaluated offline, TE rules and constraints` };
  return { ...(await buildAuditMatrix(mode, vms, oracle, options.idle)), source };
}

/** Where apparmor_parser reads includes from (what the helper's profiles were compiled with). */
export const APPARMOR_INCLUDE_DIR = '/etc/apparmor.d';
const MAX_INCLUDES = 256;

/**
 * The texts of the includes the profiles name, and of the includes those name, read from the parser's
 * include directory: a directory include is its files in name order (the parser skips dot files and
 * editors' backups). What cannot be read is left out: a profile that needs it is then unreadable, and
 * says so, rather than read without it.
 */
export async function readProfileIncludes(texts: readonly string[], dir: string = APPARMOR_INCLUDE_DIR): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const tried = new Set<string>();
  const queue = texts.flatMap(profileIncludes);
  while (queue.length > 0 && tried.size < MAX_INCLUDES) {
    const name = queue.shift() as string;
    if (tried.has(name) || name.split('/').includes('..')) continue;
    tried.add(name);
    const file = join(dir, name);
    const info = await stat(file).catch(() => undefined);
    let text: string | undefined;
    if (info?.isFile()) {
      text = await readFile(file, 'utf8').catch(() => undefined);
    } else if (info?.isDirectory()) {
      const names = (await readdir(file).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && !/(~|\.dpkg-[a-z]+|\.rpm[a-z]+)$/.test(n)).sort();
      const parts = await Promise.all(names.map((n) => readFile(join(file, n), 'utf8').catch(() => '')));
      text = parts.join('\n');
    }
    if (text === undefined) continue;
    found.set(name, text);
    queue.push(...profileIncludes(text));
  }
  return found;
}

/** A running VM with its loaded profile, ready for the AppArmor audit. */
function profiledVm(vm: AuditedVm, report: VmProfileReport | undefined, includes: ReadonlyMap<string, string>): ProfiledVm {
  const base = {
    name: vm.name, notConfinedReason: vm.notConfinedReason, ...(vm.confinement ? { confinement: vm.confinement } : {}),
    resources: vm.resources.map((r) => ({ path: r.path, class: r.class })),
  };
  if (report === undefined || report.profile === null || report.text === null) {
    return { ...base, profile: null, mode: null, notConfinedReason: vm.notConfinedReason ?? 'qemu runs in no loaded AppArmor profile' };
  }
  // The kernel's word on qemu wins over the profile on file: a qemu outside its profile is not held by it.
  if (report.qemu !== null && !report.qemu.startsWith(`${report.profile} (`)) {
    return { ...base, profile: null, mode: null, notConfinedReason: `qemu runs as ${report.qemu}, not in its profile ${report.profile}` };
  }
  try {
    return { ...base, profile: report.profile, mode: report.mode, parsed: parseProfile(report.text, includes, report.profile) };
  } catch (err) {
    return { ...base, profile: report.profile, mode: report.mode, problem: (err as Error).message };
  }
}

/**
 * The audit under AppArmor: each running VM's cells from the profile the helper loaded for it (its
 * `vmProfiles` answer), with its includes from the parser's directory.
 */
export async function auditAppArmorVms(
  profiles: Result<'vmProfiles'>, vms: readonly AuditedVm[], options: AuditOptions & { includeDir?: string; uid?: number } = {},
): Promise<AuditMatrix & { source: AuditSource }> {
  const uid = options.uid ?? process.getuid?.();
  // By name: the requester's own VM first (root's answer lists every user's).
  const reportOf = (name: string) => profiles.vms.find((p) => p.name === name && p.ownerUid === uid) ?? profiles.vms.find((p) => p.name === name);
  const includes = await readProfileIncludes(profiles.vms.flatMap((p) => (p.text === null ? [] : [p.text])), options.includeDir);
  const running = vms.map((vm) => profiledVm(vm, reportOf(vm.name), includes));
  const idle = options.idle ?? [];
  const paths = [...new Set([...vms.flatMap((vm) => vm.resources.map((r) => r.path)), ...idle.map((r) => r.path)])];
  const canonical = new Map(await Promise.all(paths.map(async (p) => [p, await realpath(p).catch(() => p)] as const)));
  const unconfirmed = profiles.vms.some((p) => p.profile !== null && p.loaded === null);
  const source: AuditSource = {
    kind: 'profiles', model: 'apparmor', modelName: 'AppArmor',
    why: `AppArmor confines the VMs: each cell is read from the VM's profile as the helper loaded it${unconfirmed ? ' (the kernel\'s list of loaded profiles could not be read to confirm it)' : ', which the kernel holds now'}; a deny rule wins over an allow rule`,
  };
  return { ...buildProfileAuditMatrix(running, idle, canonical), source };
}

/**
 * The audit in the host's model: SELinux when the kernel runs it; else AppArmor when the helper says it
 * confines the VMs; else the SELinux policy offline (what would hold once SELinux is on).
 */
export async function auditHost(
  mode: SelinuxMode, vms: readonly AuditedVm[], profiles: () => Promise<Result<'vmProfiles'>>, options: AuditOptions & { includeDir?: string; uid?: number } = {},
): Promise<AuditMatrix & { source: AuditSource }> {
  if (mode === 'disabled') {
    // A helper without the verb (an older install) or none at all: the offline answer, as before.
    const answer = await profiles().catch(() => undefined);
    if (answer?.enabled) return auditAppArmorVms(answer, vms, options);
  }
  return auditRunningVms(mode, vms, options);
}

const tclassOf = (path: string) => (isUnder(path, '/dev') ? 'blk_file' : 'file');

/** The running VMs of the requester as the audit takes them: labels from the helper, files from disk. */
export async function auditedVms(service: VmService): Promise<AuditedVm[]> {
  const { vms } = await service.list();
  const running = vms.filter((vm) => vm.state !== 'stopped');
  return Promise.all(running.map(async (vm) => ({
    name: vm.name,
    processLabel: vm.processLabel,
    confined: vm.confined,
    ...(vm.confinement ? { confinement: vm.confinement } : {}),
    notConfinedReason: vm.notConfinedReason,
    resources: (await service.labels(vm.name)).map((l) => ({
      path: l.path, class: l.class, expectedLabel: l.expectedLabel, actualLabel: l.actualLabel, tclass: tclassOf(l.path),
    })),
  })));
}

/**
 * The content trees of the requester's VMs that no running VM uses: the shared and read-only disks and the
 * installer ISOs their definitions name, with the label on disk. Such content keeps its label between
 * runs, so it stays within every running VM's reach; the audit shows it beside the running VMs' files.
 * Taken from the user's own definitions: the helper's journal knows only trees it relabeled, other
 * users' among them, and not content left at its own label.
 */
export async function idleContent(store: VmStore, running: readonly AuditedVm[]): Promise<AuditedResource[]> {
  const used = new Set(running.flatMap((vm) => vm.resources.map((r) => r.path)));
  const content = new Map<string, string>();
  for (const d of (await store.list()).definitions) {
    if (d.boot.kind === 'iso' && !used.has(d.boot.iso)) content.set(d.boot.iso, 'readonly');
    for (const disk of d.disks) if (disk.class !== 'private' && !used.has(disk.path)) content.set(disk.path, disk.class);
  }
  const paths = [...content.keys()];
  // A device's label is on its node: /dev/VG/LV is a link to it.
  const nodes = await Promise.all(paths.map((p) => (isUnder(p, '/dev') ? realpath(p).catch(() => p) : p)));
  const labels = await readLabels(nodes);
  return paths.map((p, k) => ({
    path: p, class: content.get(p) as string, expectedLabel: null, actualLabel: labels.get(nodes[k] as string) ?? null, tclass: tclassOf(p),
  }));
}

export interface OracleDisagreement {
  vm: string;
  path: string;
  scontext: string;
  tcontext: string;
  tclass: string;
  perm: string;
  kernel: AccessVerdict;
  evaluator: AccessVerdict;
}

export interface OfflineComparison {
  /** The policy the evaluator read (the kernel's loaded policy, copied from selinuxfs, when readable). */
  policyPath: string;
  /** Permission checks made on both sides. */
  checks: number;
  disagreements: OracleDisagreement[];
}

/**
 * The policy the kernel runs: selinuxfs `policy`, copied once per content into the cache directory (the
 * policy tools read a plain file, and a stable path keeps their cached output). Undefined when unreadable.
 */
async function loadedPolicyCopy(selinuxfs: string, cacheDir: string): Promise<string | undefined> {
  let content: Buffer;
  try {
    content = await readFile(join(selinuxfs, 'policy'));
  } catch {
    return undefined;
  }
  const file = join(cacheDir, `loaded-policy-${createHash('sha256').update(content).digest('hex').slice(0, 32)}`);
  if (await access(file).then(() => true, () => false)) {
    if ((await stat(file)).size === content.length) return file;
  }
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  await writeFile(`${file}.${process.pid}.tmp`, content, { mode: 0o600 });
  await rename(`${file}.${process.pid}.tmp`, file);
  return file;
}

/**
 * Every permission the audit asks about (read: open read; write adds write append), for every running VM
 * against every resource label, asked of the kernel and of the offline evaluator on the kernel's loaded
 * policy with its live booleans. Lists each check where the two differ (an error on either side is a
 * difference). Works alike on an enforcing and a permissive kernel.
 */
export async function compareWithOffline(vms: readonly AuditedVm[], options: AuditOptions & { policyPath?: string; cacheDir?: string } = {}): Promise<OfflineComparison> {
  const selinuxfs = options.selinuxfs ?? SELINUXFS;
  const policyPath = options.policyPath ?? (await loadedPolicyCopy(selinuxfs, options.cacheDir ?? defaultCacheDir()));
  const booleanStates = await readLiveBooleanStates(selinuxfs);
  const offline = await evaluatorOracle({ ...(policyPath ? { policyPath } : {}), ...(booleanStates ? { booleanStates } : {}) });
  const kernel = kernelOracle(selinuxfs);
  const perms = [...new Set([...READ_PERMS, ...WRITE_PERMS])];
  const targets = new Map<string, { path: string; label: string; tclass: string }>();
  for (const vm of vms) for (const r of vm.resources) if (r.actualLabel !== null) targets.set(r.path, { path: r.path, label: r.actualLabel, tclass: r.tclass });
  const disagreements: OracleDisagreement[] = [];
  let checks = 0;
  for (const vm of vms) {
    if (vm.processLabel === null) continue;
    for (const target of targets.values()) {
      for (const perm of perms) {
        checks++;
        const [k, e] = await Promise.all([
          kernel(vm.processLabel, target.label, target.tclass, [perm]),
          offline.oracle(vm.processLabel, target.label, target.tclass, [perm]).catch((err: Error): AccessVerdict => ({ decision: 'error', reason: err.message })),
        ]);
        if (k.decision !== e.decision || k.decision === 'error') {
          disagreements.push({ vm: vm.name, path: target.path, scontext: vm.processLabel, tcontext: target.label, tclass: target.tclass, perm, kernel: k, evaluator: e });
        }
      }
    }
  }
  return { policyPath: offline.policyPath, checks, disagreements };
}
