import { access, mkdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { evaluateAccess } from '../core/selinux/access/evaluate-access';
import { buildAuditMatrix, READ_PERMS, WRITE_PERMS, type AccessOracle, type AccessVerdict, type AuditedResource, type AuditedVm, type AuditMatrix } from '../core/selinux/audit-report';
import { parseContext } from '../core/selinux/context';
import { SELINUXFS, type SelinuxMode } from '../security/selinux/host-selinux';
import { KernelAccess } from '../security/selinux/kernel-access';
import { readLabels } from '../security/selinux/file-labels';
import { isUnder } from '../host/path-policy';
import { defaultCacheDir, loadAccessPolicy, readLiveBooleanStates } from '../security/selinux/policy-query';
import type { VmService } from './vm-service';
import type { VmStore } from './vm-store';

/**
 * The live audit: which running VM may use which file. With SELinux on, the kernel's security server
 * answers (the access vector from selinuxfs, one request per subject/target/class: kernel-access.ts);
 * without it, the installed policy is evaluated offline. compareWithOffline() puts both side by side on
 * a running kernel, per permission, and lists where they differ: the check that the evaluator is the
 * kernel's equal.
 */
export interface AuditSource {
  kind: 'kernel' | 'evaluator';
  why: string;
}

export interface AuditOptions {
  /** Where selinuxfs is mounted (a test passes a directory of its own). */
  readonly selinuxfs?: string;
  /** Content trees no running VM uses (idleContent), as columns after the running VMs' files. */
  readonly idle?: readonly AuditedResource[];
}

/** The kernel as an access oracle (errors are 'error' verdicts, never denials). */
export function kernelOracle(selinuxfs: string = SELINUXFS): AccessOracle {
  const kernel = new KernelAccess(selinuxfs);
  return (scontext, tcontext, tclass, perms) => kernel.check(scontext, tcontext, tclass, perms);
}

/** The offline evaluator on a policy file as an access oracle. */
export async function evaluatorOracle(options: { policyPath?: string; booleanStates?: ReadonlyMap<string, boolean> } = {}): Promise<{ oracle: AccessOracle; policyPath: string }> {
  const loaded = await loadAccessPolicy(options.policyPath === undefined ? {} : { policyPath: options.policyPath });
  const booleanStates = options.booleanStates ?? loaded.booleanStates;
  const oracle: AccessOracle = async (s, t, tclass, perms) =>
    evaluateAccess(loaded.policy, { scontext: parseContext(s), tcontext: parseContext(t), tclass, perms }, booleanStates ? { booleanStates } : {});
  return { oracle, policyPath: loaded.policyPath };
}

/** Audit of running VMs: from the kernel when SELinux is on, else from the installed policy, offline. */
export async function auditRunningVms(mode: SelinuxMode, vms: readonly AuditedVm[], options: AuditOptions = {}): Promise<AuditMatrix & { source: AuditSource }> {
  if (mode !== 'disabled') {
    const source: AuditSource = { kind: 'kernel', why: `SELinux is ${mode}: the kernel's security server answers each check (its access vectors do not depend on the mode)` };
    return { ...(await buildAuditMatrix(mode, vms, kernelOracle(options.selinuxfs), options.idle)), source };
  }
  const { oracle, policyPath } = await evaluatorOracle();
  const source: AuditSource = { kind: 'evaluator', why: `SELinux is disabled in this kernel: the installed policy (${policyPath}) is evaluated offline, TE rules and constraints` };
  return { ...(await buildAuditMatrix(mode, vms, oracle, options.idle)), source };
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
