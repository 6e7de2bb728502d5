import { copyFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { HelperClient } from '../../../src/user/helper-client';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../../support/helper-session';
import { seededUnit } from '../../support/seeded-random';
import {
  findProcesses, helperEnv, killAllVmProcesses, settledInvariants, snapshotFiles, vmDefinition, waitUntil, type PrivateImage,
} from './reliability';

/**
 * Crash at every step of start and stop: the helper SIGKILLs itself at a fault point (SVIRT_FAULT_AT), or
 * is killed from outside at a random moment, or qemu is killed at a random moment while it starts or
 * stops, or the power goes (every VM process gone, half-written temp files left). After each, a new
 * helper starts, reconciles, and the invariants of `checkInvariants` must hold; then the VM (if it
 * survived) is stopped and they must hold again.
 */
export const FAULT_KINDS = ['after-allocation', 'mid-relabel', 'after-exec', 'after-keeper', 'before-stop-cleanup', 'mid-restore'] as const;
export const CRASH_KINDS = [...FAULT_KINDS, 'kill-qemu-in-start', 'kill-qemu-in-stop', 'kill-helper-in-start', 'power-loss'] as const;
export type CrashKind = (typeof CRASH_KINDS)[number];
const CONTENT_LABEL = 'system_u:object_r:virt_content_t:s0';

export interface CrashRig {
  readonly host: TestHost;
  /** Three private images (a multi-disk VM, so mid-relabel and mid-restore fall between files). */
  readonly privateDisks: string[];
  readonly sharedDisk: string;
  /** Labels the kernel and initrd had before any VM: they are remembered and restored like private images. */
  readonly bootOriginals: Map<string, string | null>;
}

export async function createCrashRig(): Promise<CrashRig> {
  const host = await createTestHost();
  const privateDisks = await Promise.all(['crash-a.img', 'crash-b.img', 'crash-c.img'].map((n) => host.disk(n)));
  const sharedDisk = await host.disk('crash-shared.img');
  const snap = await snapshotFiles([host.kernel, host.initrd]);
  return { host, privateDisks, sharedDisk, bootOriginals: new Map([...snap].map(([p, s]) => [p, s.label])) };
}

function images(rig: CrashRig, vmId: string): PrivateImage[] {
  return [
    ...rig.privateDisks.map((p) => ({ vmId, path: p, original: ORIGINAL_LABEL })),
    ...[...rig.bootOriginals].map(([p, original]) => ({ vmId, path: p, original, whileRunning: CONTENT_LABEL })),
  ];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a helper; with `probed`, waits until its accelerator probe (seconds, once per helper) is done, so
 * that random timings fall in the start itself.
 */
async function newHelper(rig: CrashRig, faultAt?: string, probed = false): Promise<HelperClient> {
  const helper = rig.host.startHelper(helperEnv(0, faultAt));
  if (probed) await helper.request('status');
  return helper;
}

async function expectHelperDeath(helper: HelperClient, work: Promise<unknown>, what: string): Promise<string[]> {
  const outcome = await work.then(() => 'answered', (err: { code?: string }) => err.code ?? 'error');
  await Promise.race([helper.exited, sleep(10_000)]);
  return outcome === 'helper-exited' ? [] : [`${what}: the helper did not die at the fault point (${outcome})`];
}

/** Stops whatever still runs and waits for its processes, so the next iteration starts clean. */
async function stopEverything(rig: CrashRig): Promise<void> {
  const helper = rig.host.startHelper(helperEnv(0));
  try {
    const running = await helper.request('list');
    await Promise.all(running.map((vm) => helper.request('forceOff', { vm: vm.id }).catch(() => undefined)));
  } finally {
    await helper.close();
  }
}

export interface IterationResult {
  readonly kind: CrashKind;
  /** Whether something was actually killed (a fault point reached, a process shot). */
  readonly killed: boolean;
  readonly violations: string[];
}

/**
 * One crash: `kind` at VM `name`. Invariants are checked after the new helper reconciled, and again after
 * the survivors were stopped.
 */
export async function crashIteration(rig: CrashRig, kind: CrashKind, name: string, random: () => number): Promise<IterationResult> {
  const { host } = rig;
  const vmId = `0/${name}`;
  const definition = vmDefinition(host, name, [
    ...rig.privateDisks.map((p) => ({ path: p, class: 'private' as const })),
    { path: rig.sharedDisk, class: 'shared' as const },
  ]);
  const start = (helper: HelperClient) => helper.request('start', { definition, allowUnconfined: true });
  const violations: string[] = [];
  let killed = false;

  if (kind === 'after-allocation' || kind === 'mid-relabel' || kind === 'after-exec' || kind === 'after-keeper') {
    const helper = await newHelper(rig, kind);
    const problems = await expectHelperDeath(helper, start(helper), kind);
    violations.push(...problems);
    killed = problems.length === 0;
  } else if (kind === 'before-stop-cleanup' || kind === 'mid-restore') {
    const first = await newHelper(rig);
    await start(first);
    // The first helper leaves (its periodic reconcile would otherwise clean up for the dying one).
    await first.close();
    await sleep(random() * 1000);
    const helper = await newHelper(rig, kind);
    const problems = await expectHelperDeath(helper, helper.request('stop', { vm: name, force: true }), kind);
    violations.push(...problems);
    killed = problems.length === 0;
  } else if (kind === 'kill-qemu-in-start') {
    const helper = await newHelper(rig);
    const starting = start(helper).catch(() => undefined);
    // A random moment between qemu's exec and a while after the start returned.
    if (await waitUntil(() => findProcesses(host.dir, 'qemu').length > 0, 20_000, 5)) {
      await sleep(random() * 800);
      killed = (await killAllVmProcesses(host.dir)) > 0;
    }
    await starting;
    await helper.close();
  } else if (kind === 'kill-qemu-in-stop') {
    const helper = await newHelper(rig);
    await start(helper);
    await sleep(random() * 3000);
    const stopping = helper.request('stop', { vm: name, timeoutMs: 1500 }).catch(() => undefined);
    await sleep(random() * 1500);
    killed = (await killAllVmProcesses(host.dir)) > 0;
    await stopping;
    await helper.close();
  } else if (kind === 'kill-helper-in-start') {
    const helper = await newHelper(rig, undefined, true);
    const starting = start(helper).catch(() => undefined);
    await sleep(random() * 1500);
    helper.kill('SIGKILL');
    killed = true;
    await starting;
    await helper.exited;
  } else {
    // Power loss: a helper dies mid-start, every VM process dies with the machine, and a write in flight
    // leaves its temp file half-written beside the state files (the rename never happened).
    const point = (['mid-relabel', 'after-exec', 'after-keeper'] as const)[Math.floor(random() * 3)] as string;
    const helper = await newHelper(rig, point);
    violations.push(...(await expectHelperDeath(helper, start(helper), `power loss at ${point}`)));
    await killAllVmProcesses(host.dir);
    await leaveTornTempFiles(host.stateDir, random);
    killed = true;
  }

  // A new helper reconciles (at its start, and for `list`).
  const fresh = rig.host.startHelper(helperEnv(0));
  try {
    await fresh.request('list');
  } catch (err) {
    violations.push(`a new helper could not reconcile after ${kind}: ${(err as Error).message}`);
  }
  await fresh.close();
  violations.push(...(await settledInvariants(host, images(rig, vmId))).map((v) => `after ${kind}, reconciled: ${v}`));
  await stopEverything(rig);
  violations.push(...(await settledInvariants(host, images(rig, vmId))).map((v) => `after ${kind}, stopped: ${v}`));
  if (kind === 'power-loss') {
    const left = (await readdir(host.stateDir)).filter((f) => f.endsWith('.tmp'));
    if (left.length === 0) violations.push('power loss: the torn temp files vanished before the check');
  }
  return { kind, killed, violations };
}

/** Half-written temp files as `writeFileAtomic` names them, holding a truncated copy of the real state. */
export async function leaveTornTempFiles(stateDir: string, random: () => number): Promise<string[]> {
  const made: string[] = [];
  for (const name of ['registry.json', 'journal.json']) {
    const source = path.join(stateDir, name);
    const temp = path.join(stateDir, `.${name}.${99_000 + Math.floor(random() * 900)}.${Math.floor(random() * 0xffffffff).toString(16).padStart(8, '0')}.tmp`);
    await copyFile(source, temp).catch(() => writeFile(temp, '{"version":1,'));
    await truncate(temp, Math.floor((await stat(temp)).size * random()));
    made.push(temp);
  }
  return made;
}

export interface CrashTotals {
  killIterations: number;
  invariantViolations: number;
  details: string[];
}

/** The soak: `iterations` crashes cycling through every kind, with random timings from `seed`. */
export async function runCrashSoak(iterations: number, seed: number, log: (line: string) => void = () => {}): Promise<CrashTotals> {
  const rig = await createCrashRig();
  const random = seededUnit(seed);
  const totals: CrashTotals = { killIterations: 0, invariantViolations: 0, details: [] };
  try {
    for (let i = 0; i < iterations; i++) {
      const kind = CRASH_KINDS[i % CRASH_KINDS.length] as CrashKind;
      const result = await crashIteration(rig, kind, `crash${i}`, random);
      if (result.killed) totals.killIterations++;
      totals.invariantViolations += result.violations.length;
      if (result.violations.length > 0 && totals.details.length < 50) totals.details.push(`#${i} ${kind}: ${result.violations.join('; ')}`);
      log(`crash #${i} ${kind}: ${result.killed ? 'killed' : 'not killed'}, ${result.violations.length} violations`);
    }
  } finally {
    await stopEverything(rig).catch(() => undefined);
    await rig.host.dispose();
  }
  return totals;
}
