/**
 * The label audit: which running VM can read or write which file, and what is wrong on this host.
 * Pure: the caller passes the VMs, the labels found on disk, and an access oracle (the kernel through
 * libselinux when SELinux is on, the offline policy evaluator otherwise), and renders the answer.
 */
import type { Confinement } from '../confinement';
import { compareLevels, formatRange, parseContext } from './context';

/** `error`: the oracle could not answer (e.g. the kernel refused the question); never read as a denial. */
export type AccessLevel = 'read' | 'write' | 'none' | 'error';
export type AuditProblemKind = 'selinux-disabled' | 'selinux-permissive' | 'apparmor-complain' | 'unconfined-vm' | 'duplicate-pair' | 'unintended-sharing' | 'label-drift';
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

export interface AuditVerdict {
  access: AccessLevel;
  reason: string;
}

/**
 * The matrix is dense (100 VMs × 10,000 files is a million cells) but has few distinct answers, in long
 * runs (a VM's own files side by side): each cell is an index into `verdicts`, and the cells, row-major,
 * travel run-length encoded. The report stays a few kilobytes on its way to the renderer instead of a
 * million objects repeating the same reasons. cellAt() reads one cell.
 */
export interface AuditMatrix {
  /** Every running VM; processLabel null: qemu runs unconfined (seclabel none), with a row of its own. */
  vms: { name: string; processLabel: string | null; confinement?: Confinement }[];
  /** Every running VM's files, then the content trees no running VM uses (usedBy empty). */
  resources: { path: string; label: string | null; usedBy: string[] }[];
  verdicts: AuditVerdict[];
  /** Row-major cells as runs: [verdict index, run length, verdict index, run length, …]. */
  runs: number[];
  problems: AuditProblem[];
}

type Cells = Pick<AuditMatrix, 'vms' | 'resources' | 'verdicts' | 'runs'>;

/** Run-length encodes verdict indexes. */
export function encodeRuns(indexes: ArrayLike<number>): number[] {
  const runs: number[] = [];
  for (let k = 0; k < indexes.length; k++) {
    const v = indexes[k] as number;
    if (runs.length > 0 && runs[runs.length - 2] === v) runs[runs.length - 1] = (runs[runs.length - 1] as number) + 1;
    else runs.push(v, 1);
  }
  return runs;
}

// Each report's runs are expanded once, on first read (a million cells are 4 MB as a typed array).
const expanded = new WeakMap<object, Uint32Array>();
function gridOf(matrix: Cells): Uint32Array {
  let grid = expanded.get(matrix.runs);
  if (!grid) {
    grid = new Uint32Array(matrix.vms.length * matrix.resources.length);
    let at = 0;
    for (let k = 0; k + 1 < matrix.runs.length; k += 2) {
      const count = Math.min(matrix.runs[k + 1] as number, grid.length - at);
      grid.fill(matrix.runs[k] as number, at, at + count);
      at += count;
    }
    // Cells the runs do not cover (a malformed report) read as not evaluated.
    if (at < grid.length) grid.fill(matrix.verdicts.length, at);
    expanded.set(matrix.runs, grid);
  }
  return grid;
}

/** The cell of VM row `i` and resource column `j`. */
export function cellAt(matrix: Cells, i: number, j: number): AuditCell {
  const verdict = matrix.verdicts[gridOf(matrix)[i * matrix.resources.length + j] ?? -1] ?? { access: 'error', reason: 'not evaluated' };
  return { vm: matrix.vms[i]?.name ?? '', path: matrix.resources[j]?.path ?? '', ...verdict };
}

/** Packs cells given one by one (any order; a missing one reads as an error) into verdicts and runs. */
export function packCells(vms: readonly string[], paths: readonly string[], cells: readonly AuditCell[]): Pick<AuditMatrix, 'verdicts' | 'runs'> {
  const verdicts: AuditVerdict[] = [{ access: 'error', reason: 'not evaluated' }];
  const index = new Map<string, number>();
  const grid = new Array<number>(vms.length * paths.length).fill(0);
  const row = new Map(vms.map((name, i) => [name, i]));
  const column = new Map(paths.map((p, j) => [p, j]));
  for (const cell of cells) {
    const key = `${cell.access}\0${cell.reason}`;
    let v = index.get(key);
    if (v === undefined) {
      index.set(key, (v = verdicts.length));
      verdicts.push({ access: cell.access, reason: cell.reason });
    }
    const i = row.get(cell.vm);
    const j = column.get(cell.path);
    if (i !== undefined && j !== undefined) grid[i * paths.length + j] = v;
  }
  return { verdicts, runs: encodeRuns(grid) };
}

/** Every cell, row by row (for the CLI's table and for tests; the renderer reads cells one by one). */
export function cellsOf(matrix: Cells): AuditCell[] {
  const cells: AuditCell[] = [];
  for (let i = 0; i < matrix.vms.length; i++) for (let j = 0; j < matrix.resources.length; j++) cells.push(cellAt(matrix, i, j));
  return cells;
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

async function accessOf(oracle: AccessOracle, processLabel: string, resource: AuditedResource): Promise<AuditVerdict> {
  const verdict = (access: AccessLevel, reason: string): AuditVerdict => ({ access, reason });
  if (resource.actualLabel === null) return verdict('none', 'the file has no SELinux label (or could not be read)');
  const write = await oracle(processLabel, resource.actualLabel, resource.tclass, WRITE_PERMS);
  if (write.decision === 'allowed') return verdict('write', write.reason);
  const read = await oracle(processLabel, resource.actualLabel, resource.tclass, READ_PERMS);
  const failed = [read, write].find((v) => v.decision === 'error');
  if (failed) return verdict('error', failed.reason);
  if (read.decision === 'allowed') return verdict('read', `read only: ${write.reason}`);
  const unknown = [write, read].find((v) => v.decision === 'unknown');
  return verdict('none', unknown ? `unknown: ${unknown.reason}` : read.reason);
}

// No SELinux label on qemu: the policy has nothing to say, and only file permissions stand in the way.
const UNCONFINED_VERDICT: AuditVerdict = {
  access: 'write',
  reason: 'qemu runs unconfined (no SELinux label): SELinux does not restrict it, only file permissions do',
};

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

/**
 * Builds the matrix (running VMs × their resources, then `idle`: content trees no running VM uses, which
 * keep their label between runs and so stay within every VM's reach) and the problem list.
 */
export async function buildAuditMatrix(
  mode: 'enforcing' | 'permissive' | 'disabled', running: readonly AuditedVm[], oracle: AccessOracle, idle: readonly AuditedResource[] = [],
): Promise<AuditMatrix> {
  const problems: AuditProblem[] = [];
  if (mode === 'disabled') problems.push({ kind: 'selinux-disabled', severity: 'critical', message: 'SELinux is disabled: no VM is confined, labels are only prepared' });
  if (mode === 'permissive') problems.push({ kind: 'selinux-permissive', severity: 'critical', message: 'SELinux is permissive: denials are logged but not enforced' });

  const resources = new Map<string, { path: string; label: string | null; usedBy: string[]; resource: AuditedResource; owners: string[] }>();
  for (const vm of running) {
    // With SELinux off every VM is unconfined and the selinux-disabled problem says so once; a VM is
    // listed on its own only when it would run unconfined anyway (no pair: seclabel none). On a
    // permissive host the selinux-permissive problem covers the VMs that run in their labels.
    const coveredByHost = mode === 'disabled' && pairOfLabel(vm.processLabel) !== null;
    const unconfined = vm.confinement === undefined ? !vm.confined : vm.confinement === 'unconfined-disabled' || vm.confinement === 'unconfined-none';
    if (unconfined && !coveredByHost) problems.push({ kind: 'unconfined-vm', severity: 'critical', vm: vm.name, message: `${vm.name}: ${vm.notConfinedReason ?? 'not confined'}` });
    for (const r of vm.resources) {
      let entry = resources.get(r.path);
      if (!entry) resources.set(r.path, (entry = { path: r.path, label: r.actualLabel, usedBy: [], resource: r, owners: [] }));
      entry.usedBy.push(vm.name);
      if (r.class === 'private') entry.owners.push(vm.name);
      if (r.class === 'private' && r.expectedLabel !== null && r.actualLabel !== r.expectedLabel) {
        problems.push({ kind: 'label-drift', severity: 'warning', vm: vm.name, path: r.path,
          message: `${r.path} of ${vm.name} is labeled ${r.actualLabel ?? '(none)'} on disk, not ${r.expectedLabel}` });
      }
    }
  }
  for (const r of idle) if (!resources.has(r.path)) resources.set(r.path, { path: r.path, label: r.actualLabel, usedBy: [], resource: r, owners: [] });

  const byPair = new Map<string, string[]>();
  for (const vm of running) {
    const pair = pairOfLabel(vm.processLabel);
    if (pair) byPair.set(pair, [...(byPair.get(pair) ?? []), vm.name]);
  }
  const duplicates = [...byPair].filter(([, names]) => names.length > 1);
  const pairOfVm = new Map(running.map((vm) => [vm.name, pairOfLabel(vm.processLabel)]));
  const samePair = (a: string, b: string) => pairOfVm.get(a) !== null && pairOfVm.get(a) === pairOfVm.get(b) && (byPair.get(pairOfVm.get(a) as string)?.length ?? 0) > 1;

  // Files with one label (and class) get one answer per VM: 10,000 files on 100 pairs are 100 columns
  // of questions, and the memoized oracle reduces those to a handful more.
  const entries = [...resources.values()];
  const groupOf = new Map<string, number>();
  const groupKey = (r: AuditedResource) => `${r.actualLabel ?? ''}\0${r.tclass}`;
  const groupFirst: AuditedResource[] = [];
  const columnGroup = entries.map((e) => {
    const key = groupKey(e.resource);
    let g = groupOf.get(key);
    if (g === undefined) {
      groupOf.set(key, (g = groupFirst.length));
      groupFirst.push(e.resource);
    }
    return g;
  });
  const verdicts: AuditVerdict[] = [];
  const verdictIndex = new Map<string, number>();
  const intern = (v: AuditVerdict): number => {
    const key = `${v.access}\0${v.reason}`;
    let index = verdictIndex.get(key);
    if (index === undefined) {
      verdictIndex.set(key, (index = verdicts.length));
      verdicts.push(v);
    }
    return index;
  };
  const ask = memoizeOracle(oracle);
  const grid = new Uint32Array(running.length * entries.length);
  for (let i = 0; i < running.length; i++) {
    const vm = running[i] as AuditedVm;
    const perGroup: number[] = [];
    for (const r of groupFirst) perGroup.push(vm.processLabel === null ? intern(UNCONFINED_VERDICT) : intern(await accessOf(ask, vm.processLabel, r)));
    const base = i * entries.length;
    for (let j = 0; j < entries.length; j++) grid[base + j] = perGroup[columnGroup[j] as number] as number;
  }

  // A private file reachable by a VM that does not own it is exactly what sVirt is there to prevent.
  // An unconfined VM reaches everything; its own critical item says so, rather than one per file.
  const reachedByPair: { owner: string; intruder: string; path: string }[] = [];
  const reaches = (i: number, j: number) => {
    const access = verdicts[grid[i * entries.length + j] as number]?.access;
    return access === 'read' || access === 'write';
  };
  entries.forEach((entry, j) => {
    const owner = entry.owners[0];
    if (owner === undefined) return;
    const intruders: string[] = [];
    running.forEach((vm, i) => {
      if (vm.processLabel !== null && vm.name !== owner && reaches(i, j)) intruders.push(vm.name);
    });
    // A VM that holds the owner's pair reaches its images by that pair: the duplicate-pair problem
    // names those images, rather than a second critical item restating it.
    const sharedByPair = intruders.filter((name) => samePair(name, owner));
    for (const name of sharedByPair) reachedByPair.push({ owner, intruder: name, path: entry.path });
    if (intruders.length > sharedByPair.length) {
      problems.push({ kind: 'unintended-sharing', severity: 'critical', path: entry.path,
        message: `${entry.path} is private to ${owner} but ${intruders.filter((n) => !sharedByPair.includes(n)).join(', ')} can reach it too` });
    }
  });
  for (const [pair, names] of duplicates) {
    const images = [...new Set(reachedByPair.filter((r) => names.includes(r.owner)).map((r) => r.path))];
    problems.push({ kind: 'duplicate-pair', severity: 'critical', vm: names[names.length - 1],
      message: `${names.join(' and ')} run with the same MCS pair ${pair}: each can use the other's images${images.length > 0 ? ` (reachable now: ${images.join(', ')})` : ''}` });
  }

  return {
    vms: running.map((vm) => ({ name: vm.name, processLabel: vm.processLabel, ...(vm.confinement ? { confinement: vm.confinement } : {}) })),
    resources: entries.map(({ path, label, usedBy }) => ({ path, label, usedBy })),
    verdicts,
    runs: encodeRuns(grid),
    problems,
  };
}
