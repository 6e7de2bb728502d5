/**
 * The label audit: which running VM can read or write which file, and what is wrong on this host.
 * Pure: the caller passes the VMs, the labels found on disk, and an access oracle (the kernel through
 * libselinux when SELinux is on, the offline policy evaluator otherwise), and renders the answer.
 */
import type { Confinement } from './confinement';
import { compareLevels, formatRange, parseContext } from './context';

/** `error`: the oracle could not answer (e.g. the kernel refused the question); never read as a denial. */
export type AccessLevel = 'read' | 'write' | 'none' | 'error';
export type AuditProblemKind = 'selinux-disabled' | 'selinux-permissive' | 'unconfined-vm' | 'duplicate-pair' | 'unintended-sharing' | 'label-drift';
export type Severity = 'critical' | 'warning' | 'info';

export interface AuditedResource {
  readonly path: string;
  /** private | shared | readonly | content | char */
  readonly class: string;
  readonly expectedLabel: string | null;
  /** The label on disk; null when unlabeled or unreadable. */
  readonly actualLabel: string | null;
  /** `blk_file` for block devices, `file` otherwise. */
  readonly tclass: string;
}

export interface AuditedVm {
  readonly name: string;
  /** The qemu process label (or the label it would have had, when SELinux is off). */
  readonly processLabel: string | null;
  readonly confined: boolean;
  /** How qemu is held, when known: a permissive VM runs in its label (the host-wide problem says it is not enforced). */
  readonly confinement?: Confinement;
  readonly notConfinedReason: string | null;
  readonly resources: readonly AuditedResource[];
}

export interface AccessVerdict {
  /** `error`: the question could not be asked or answered (a distinct result, not a denial). */
  readonly decision: 'allowed' | 'denied' | 'unknown' | 'error';
  readonly reason: string;
}

/** Answers whether `scontext` may use `perms` on `tcontext` of class `tclass`. */
export type AccessOracle = (scontext: string, tcontext: string, tclass: string, perms: readonly string[]) => Promise<AccessVerdict>;

export interface AuditCell {
  vm: string;
  path: string;
  access: AccessLevel;
  reason: string;
}

export interface AuditProblem {
  kind: AuditProblemKind;
  severity: Severity;
  message: string;
  vm?: string;
  path?: string;
}

export interface AuditMatrix {
  vms: { name: string; processLabel: string; confinement?: Confinement }[];
  resources: { path: string; label: string | null; usedBy: string[] }[];
  cells: AuditCell[];
  problems: AuditProblem[];
}

/**
 * An oracle that asks each distinct question once. A decision depends on the users, roles and types of
 * both contexts, the class and permissions, and (through the MLS/MCS constraints, which only compare
 * levels) on how the levels relate: l1/l2, l1/h2, h1/l2, h1/h2, l1/h1, l2/h2. The key is exactly those,
 * so 100 VMs on 100 pairs against 10,000 files with 100 pairs collapse to a handful of questions, and
 * an answer's reason (rules and constraint expressions, never the concrete levels) is right for each.
 * A label that does not parse is asked as it is, uncached.
 */
export function memoizeOracle(oracle: AccessOracle): AccessOracle & { questions: () => number } {
  const answers = new Map<string, Promise<AccessVerdict>>();
  const keyOf = (s: string, t: string, tclass: string, perms: readonly string[]): string | null => {
    try {
      const a = parseContext(s);
      const b = parseContext(t);
      const levels = a.range && b.range
        ? [compareLevels(a.range.low, b.range.low), compareLevels(a.range.low, b.range.high), compareLevels(a.range.high, b.range.low),
          compareLevels(a.range.high, b.range.high), compareLevels(a.range.low, a.range.high), compareLevels(b.range.low, b.range.high)].join(',')
        : `${a.range ? 'r' : '-'}${b.range ? 'r' : '-'}`;
      return [a.user, a.role, a.type, b.user, b.role, b.type, tclass, perms.join(' '), levels].join('|');
    } catch {
      return null;
    }
  };
  const memo = (async (s, t, tclass, perms) => {
    const key = keyOf(s, t, tclass, perms);
    if (key === null) return oracle(s, t, tclass, perms);
    let answer = answers.get(key);
    if (!answer) {
      answer = oracle(s, t, tclass, perms);
      answers.set(key, answer);
    }
    return answer;
  }) as AccessOracle & { questions: () => number };
  memo.questions = () => answers.size;
  return memo;
}

// What qemu needs to use an image, as libvirt's own checks: open and read; write adds write and append.
export const READ_PERMS = ['open', 'read'] as const;
export const WRITE_PERMS = ['open', 'read', 'write', 'append'] as const;

async function accessOf(oracle: AccessOracle, vm: AuditedVm & { processLabel: string }, resource: AuditedResource): Promise<AuditCell> {
  const cell = (access: AccessLevel, reason: string): AuditCell => ({ vm: vm.name, path: resource.path, access, reason });
  if (resource.actualLabel === null) return cell('none', 'the file has no SELinux label (or could not be read)');
  const write = await oracle(vm.processLabel, resource.actualLabel, resource.tclass, WRITE_PERMS);
  if (write.decision === 'allowed') return cell('write', write.reason);
  const read = await oracle(vm.processLabel, resource.actualLabel, resource.tclass, READ_PERMS);
  const failed = [read, write].find((v) => v.decision === 'error');
  if (failed) return cell('error', failed.reason);
  if (read.decision === 'allowed') return cell('read', `read only: ${write.reason}`);
  const unknown = [write, read].find((v) => v.decision === 'unknown');
  return cell('none', unknown ? `unknown: ${unknown.reason}` : read.reason);
}

const rangeOf = (label: string | null): string | null => {
  if (label === null) return null;
  try {
    const range = parseContext(label).range;
    return range ? formatRange(range) : null;
  } catch {
    return null;
  }
};

/** The MCS pair of a label (`s0:c1,c2`), or null for a range, plain s0, or no label. */
const pairOfLabel = (label: string | null): string | null => {
  const range = rangeOf(label);
  return range !== null && !range.includes('-') && range.includes(':') ? range : null;
};

/** Builds the matrix (running VMs × their resources) and the problem list. */
export async function buildAuditMatrix(mode: 'enforcing' | 'permissive' | 'disabled', running: readonly AuditedVm[], oracle: AccessOracle): Promise<AuditMatrix> {
  const problems: AuditProblem[] = [];
  if (mode === 'disabled') problems.push({ kind: 'selinux-disabled', severity: 'critical', message: 'SELinux is disabled: no VM is confined, labels are only prepared' });
  if (mode === 'permissive') problems.push({ kind: 'selinux-permissive', severity: 'critical', message: 'SELinux is permissive: denials are logged but not enforced' });

  const resources = new Map<string, { path: string; label: string | null; usedBy: string[]; resource: AuditedResource }>();
  for (const vm of running) {
    // With SELinux off every VM is unconfined and the selinux-disabled problem says so once; a VM is
    // listed on its own only when it would run unconfined anyway (no pair: seclabel none). On a
    // permissive host the selinux-permissive problem covers the VMs that run in their labels.
    const coveredByHost = mode === 'disabled' && pairOfLabel(vm.processLabel) !== null;
    const unconfined = vm.confinement === undefined ? !vm.confined : vm.confinement === 'unconfined-disabled' || vm.confinement === 'unconfined-none';
    if (unconfined && !coveredByHost) problems.push({ kind: 'unconfined-vm', severity: 'critical', vm: vm.name, message: `${vm.name}: ${vm.notConfinedReason ?? 'not confined'}` });
    for (const r of vm.resources) {
      const entry = resources.get(r.path) ?? { path: r.path, label: r.actualLabel, usedBy: [], resource: r };
      entry.usedBy.push(vm.name);
      resources.set(r.path, entry);
      if (r.class === 'private' && r.expectedLabel !== null && r.actualLabel !== r.expectedLabel) {
        problems.push({ kind: 'label-drift', severity: 'warning', vm: vm.name, path: r.path,
          message: `${r.path} of ${vm.name} is labeled ${r.actualLabel ?? '(none)'} on disk, not ${r.expectedLabel}` });
      }
    }
  }

  const byPair = new Map<string, string[]>();
  for (const vm of running) {
    const pair = pairOfLabel(vm.processLabel);
    if (pair) byPair.set(pair, [...(byPair.get(pair) ?? []), vm.name]);
  }
  const duplicates = [...byPair].filter(([, names]) => names.length > 1);
  const samePair = (a: string, b: string) => duplicates.some(([, names]) => names.includes(a) && names.includes(b));

  const rows = running.filter((vm): vm is AuditedVm & { processLabel: string } => vm.processLabel !== null);
  const ask = memoizeOracle(oracle);
  const cells: AuditCell[] = [];
  for (const vm of rows) {
    for (const entry of resources.values()) cells.push(await accessOf(ask, vm, entry.resource));
  }

  // A private file reachable by a VM that does not own it is exactly what sVirt is there to prevent.
  const reachedByPair: { owner: string; intruder: string; path: string }[] = [];
  for (const entry of resources.values()) {
    const owners = running.filter((vm) => vm.resources.some((r) => r.path === entry.path && r.class === 'private')).map((vm) => vm.name);
    if (owners.length === 0) continue;
    const reaching = cells.filter((c) => c.path === entry.path && (c.access === 'read' || c.access === 'write')).map((c) => c.vm);
    const intruders = reaching.filter((name) => name !== owners[0]);
    // A VM that holds the owner's pair reaches its images by that pair: the duplicate-pair problem
    // names those images, rather than a second critical item restating it.
    const sharedByPair = intruders.filter((name) => samePair(name, owners[0] as string));
    for (const name of sharedByPair) reachedByPair.push({ owner: owners[0] as string, intruder: name, path: entry.path });
    if (intruders.length > sharedByPair.length) {
      problems.push({ kind: 'unintended-sharing', severity: 'critical', path: entry.path,
        message: `${entry.path} is private to ${owners[0]} but ${intruders.filter((n) => !sharedByPair.includes(n)).join(', ')} can reach it too` });
    }
  }
  for (const [pair, names] of duplicates) {
    const images = [...new Set(reachedByPair.filter((r) => names.includes(r.owner)).map((r) => r.path))];
    problems.push({ kind: 'duplicate-pair', severity: 'critical', vm: names[names.length - 1],
      message: `${names.join(' and ')} run with the same MCS pair ${pair}: each can use the other's images${images.length > 0 ? ` (reachable now: ${images.join(', ')})` : ''}` });
  }

  return {
    vms: rows.map((vm) => ({ name: vm.name, processLabel: vm.processLabel, ...(vm.confinement ? { confinement: vm.confinement } : {}) })),
    resources: [...resources.values()].map(({ path, label, usedBy }) => ({ path, label, usedBy })),
    cells,
    problems,
  };
}
