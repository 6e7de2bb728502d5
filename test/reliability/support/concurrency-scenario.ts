import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { HelperClient } from '../../../src/user/helper-client';
import type { JournalData } from '../../../src/root/labels/label-journal';
import { HelperStateStore } from '../../../src/root/state/helper-state';
import { processStartTime, withStateLock } from '../../../src/host/state-lock';
import { GUEST_READY_MARKER } from '../../support/guest';
import { ConsoleTap, ORIGINAL_LABEL, type TestHost } from '../../support/helper-session';
import { checkInvariants, helperEnv, settledInvariants, snapshotFiles, vmDefinition, type PrivateImage } from './reliability';

/**
 * Concurrency and load: processes racing for the state lock, two helpers on one state dir starting VMs
 * at the same moment (never the same pair), many VMs started and stopped in parallel, and every console
 * printing at once with not one byte lost.
 */

// ---------------------------------------------------------------------------------------------------
// The lock, between processes

/**
 * `processes` processes each increment a counter `increments` times under the state lock (read, yield,
 * write), optionally while another keeps leaving stale locks behind. Returns the updates lost.
 */
export async function lockRace(processes: number, increments: number, staleInjector: boolean): Promise<number> {
  const dir = await mkdtemp(path.join(tmpdir(), 'svirt-lock-race-'));
  try {
    await writeFile(path.join(dir, 'counter'), '0');
    const worker = path.resolve('test/reliability/support/lock-worker.ts');
    const run = (...args: string[]) => new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', worker, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('close', resolve);
    });
    const workers = Array.from({ length: processes }, () => run('count', dir, String(increments)));
    const injector = staleInjector ? run('stale', dir, String(1000 + increments * 20)) : Promise.resolve(0);
    const codes = await Promise.all([...workers, injector]);
    if (codes.some((c) => c !== 0)) throw new Error(`lock workers exited with ${codes.join(', ')}`);
    return processes * increments - Number(await readFile(path.join(dir, 'counter'), 'utf8'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * How long a waiter under CPU load waited for a holder that keeps the lock `holdMs` (beating a heartbeat
 * every 200 ms); the waiter gives up after `stuckMs` without a heartbeat. Two busy loops load the CPUs.
 */
export async function waitBehindBusyHolder(holdMs: number, stuckMs: number): Promise<number> {
  const dir = await mkdtemp(path.join(tmpdir(), 'svirt-lock-wait-'));
  const hogs = Array.from({ length: 2 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  try {
    const worker = path.resolve('test/reliability/support/lock-worker.ts');
    const holder = spawn(process.execPath, ['--import', 'tsx', worker, 'hold', dir, String(holdMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => holder.on('close', resolve));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on('data', (d: Buffer) => { if (d.toString().includes('held')) resolve(); });
      holder.on('close', () => reject(new Error('the holder exited before taking the lock')));
    });
    const t0 = Date.now();
    await withStateLock(path.join(dir, 'lock'), async () => undefined, { stuckMs });
    const waited = Date.now() - t0;
    if ((await exited) !== 0) throw new Error('the lock holder failed');
    return waited;
  } finally {
    for (const hog of hogs) hog.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

/** Whether a waiter gives up on a live holder that shows no heartbeat (a lock left by a stuck process). */
export async function waitBehindStuckHolder(stuckMs: number): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'svirt-lock-stuck-'));
  const stuck = spawn('sleep', ['60'], { stdio: 'ignore' });
  try {
    const lockPath = path.join(dir, 'lock');
    await writeFile(lockPath, JSON.stringify({ pid: stuck.pid, startTime: processStartTime(stuck.pid as number) }));
    const old = new Date(Date.now() - 10 * stuckMs);
    await utimes(lockPath, old, old);
    return await withStateLock(lockPath, async () => 'acquired', { stuckMs }).catch((err: Error) => err.name);
  } finally {
    stuck.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// The journal, through two helpers

/**
 * Two helpers on one state dir relabel `files` files each, all requests at once, then restore them: the
 * journal must end up with every entry (a lost update would leave a label nobody can restore), and then
 * with none, every label original.
 */
export async function journalRace(host: TestHost, files: number): Promise<string[]> {
  const problems: string[] = [];
  const dir = path.join(host.dir, `journal-race-${Date.now()}`);
  await mkdir(dir);
  const paths = Array.from({ length: files * 2 }, (_, i) => path.join(dir, `f${i}.img`));
  for (const p of paths) await writeFile(p, 'x');
  await new Promise<void>((resolve, reject) => execFile('setfattr', ['-n', 'security.selinux', '-v', ORIGINAL_LABEL, ...paths], (e) => (e ? reject(e) : resolve())));
  const helpers: HelperClient[] = [host.startHelper(helperEnv(0)), host.startHelper(helperEnv(0))];
  const helper = (i: number) => helpers[i % 2] as HelperClient;
  try {
    await Promise.all(paths.map((p, i) => helper(i).request('relabel', { path: p, mode: i % 4 < 2 ? 'shared' : 'readonly' })));
    // Content is journaled as a tree record (whose log holds the originals), even a single file.
    const journaled = (journal: JournalData, p: string) => journal.entries[p] !== undefined || Object.values(journal.trees ?? {}).some((t) => t.root === p);
    const { journal } = await new HelperStateStore(host.stateDir).read();
    const missing = paths.filter((p) => !journaled(journal, p));
    if (missing.length > 0) problems.push(`journal lost ${missing.length} of ${paths.length} entries written by two helpers at once`);
    await Promise.all(paths.map((p, i) => helper(i + 1).request('relabel', { path: p, mode: 'restore' })));
    const after = await new HelperStateStore(host.stateDir).read();
    const left = paths.filter((p) => journaled(after.journal, p));
    if (left.length > 0) problems.push(`${left.length} journal entries left after restore`);
    const labels = await snapshotFiles(paths);
    const wrong = paths.filter((p) => labels.get(p)?.label !== ORIGINAL_LABEL);
    if (wrong.length > 0) problems.push(`${wrong.length} files not restored to their original label`);
  } finally {
    await Promise.all(helpers.map((h) => h.close()));
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// VMs

export interface LoadResult {
  readonly vms: number;
  /** Bytes of console lines that did not arrive in order exactly once. */
  readonly lostConsoleBytes: number;
  readonly violations: string[];
  /** Stops that needed force (ACPI not heard in time under load): reported, not a failure. */
  readonly forcedStops: number;
  readonly timings: Record<string, number>;
}

export const CONSOLE_LINES = 2000;

/** What a console printed for the loop: bytes of lines missing, duplicated or out of order. */
export function consoleLoss(output: string, lines: number): { lostBytes: number; detail: string | null } {
  const got = [...output.matchAll(/^line-(\d+)\r?$/gm)].map((m) => Number(m[1]));
  const size = (n: number) => Buffer.byteLength(`line-${n}\r\n`);
  let next = 0;
  let lostBytes = 0;
  let misordered = 0;
  let missing = 0;
  for (const n of got) {
    if (n === next) next++;
    else if (n > next && n < lines) {
      for (let k = next; k < n; k++) lostBytes += size(k);
      missing += n - next;
      next = n + 1;
    } else {
      lostBytes += size(n);
      misordered++;
    }
  }
  for (let k = next; k < lines; k++) lostBytes += size(k);
  missing += Math.max(0, lines - next);
  return { lostBytes, detail: lostBytes === 0 ? null : `${missing} lines missing, ${misordered} duplicated or out of order` };
}

/**
 * Two helpers start `perHelper` VMs each, all at the same time; then every console runs the line loop at
 * once; then all VMs stop in parallel. Invariants are checked after the starts and after the stops.
 */
export async function parallelVms(host: TestHost, perHelper: number, lines = CONSOLE_LINES, log: (line: string) => void = () => {}): Promise<LoadResult> {
  const violations: string[] = [];
  const timings: Record<string, number> = {};
  const t0 = Date.now();
  const helpers = [host.startHelper(helperEnv(0)), host.startHelper(helperEnv(0))];
  const names = helpers.map((_, h) => Array.from({ length: perHelper }, (_, i) => `load-${h}-${i}`));
  const disks = await Promise.all(names.flat().map((n) => host.disk(`${n}.img`)));
  const diskOf = new Map(names.flat().map((n, i) => [n, disks[i] as string]));
  const images = (ids: string[]): PrivateImage[] => ids.map((id) => ({ vmId: id, path: diskOf.get(id.slice(2)) as string, original: ORIGINAL_LABEL }));
  const ids = names.flat().map((n) => `0/${n}`);
  let forcedStops: number;
  let lostConsoleBytes = 0;
  try {
    // Both helpers probe their accelerator first, so their starts really overlap.
    await Promise.all(helpers.map((h) => h.request('status')));
    const started = await Promise.all(helpers.map((h, hi) => Promise.all((names[hi] as string[]).map((name) =>
      h.request('start', { definition: vmDefinition(host, name, [{ path: diskOf.get(name) as string, class: 'private' }]), allowUnconfined: true })))));
    timings.startMs = Date.now() - t0;
    const all = started.flat();
    const levels = all.map((vm) => vm.level);
    if (new Set(levels).size !== levels.length) violations.push(`two helpers handed out the same pair: ${levels.join(' ')}`);
    violations.push(...(await checkInvariants(host, images(ids))).map((v) => `after the starts: ${v}`));
    log(`load: ${all.length} VMs started in ${timings.startMs} ms`);

    // Every console: wait for the shell, quiet the kernel's console messages, then the loop, all at once.
    const taps = await Promise.all(all.map((vm) => ConsoleTap.attach(helpers[Number(vm.name.split('-')[1])] as HelperClient, vm.name)));
    await Promise.all(taps.map((t) => t.waitFor(new RegExp(GUEST_READY_MARKER), 600_000)));
    timings.bootMs = Date.now() - t0;
    log(`load: all consoles ready after ${timings.bootMs} ms`);
    await Promise.all(taps.map((t) => t.run('dmesg -n 1; echo QUIET""OK', /QUIETOK/, 120_000)));
    const marks = taps.map((t) => t.output.length);
    const loop = `i=0; while [ $i -lt ${lines} ]; do echo line-$i; i=$((i+1)); done; echo LOOP""END`;
    await Promise.all(taps.map((t) => t.client.request('consoleInput', { session: t.session, data: `${loop}\n` })));
    await Promise.all(taps.map((t, i) => t.waitFor(/LOOPEND/, 600_000, marks[i]).catch((e: Error) => violations.push(`console of ${all[i]?.name}: ${e.message.slice(0, 200)}`))));
    timings.consoleMs = Date.now() - t0;
    taps.forEach((t, i) => {
      const { lostBytes, detail } = consoleLoss(t.output.slice(marks[i]), lines);
      lostConsoleBytes += lostBytes;
      if (detail) violations.push(`console of ${all[i]?.name}: ${detail}`);
    });
    log(`load: consoles done after ${timings.consoleMs} ms, ${lostConsoleBytes} bytes lost`);

    const stops = await Promise.all(all.map((vm) => (helpers[Number(vm.name.split('-')[1])] as HelperClient)
      .request('stop', { vm: vm.name, timeoutMs: 120_000 })));
    forcedStops = stops.filter((s) => s.forced).length;
    timings.stopMs = Date.now() - t0;
    log(`load: all stopped after ${timings.stopMs} ms (${forcedStops} forced)`);
    violations.push(...(await settledInvariants(host, images(ids))).map((v) => `after the stops: ${v}`));
  } finally {
    for (const h of helpers) {
      const running = await h.request('list').catch(() => []);
      await Promise.all(running.map((vm) => h.request('forceOff', { vm: vm.id }).catch(() => undefined)));
    }
    await Promise.all(helpers.map((h) => h.close()));
  }
  return { vms: perHelper * helpers.length, lostConsoleBytes, violations, forcedStops, timings };
}
