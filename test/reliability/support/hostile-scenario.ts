import { execFile } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { HelperClient } from '../../../src/user/helper-client';
import type { RunInfo } from '../../../src/root/helper/vm-lifecycle';
import { QmpClient } from '../../../src/root/qemu/qmp';
import { HelperStateStore } from '../../../src/root/state/helper-state';
import { processStartTime } from '../../../src/host/state-lock';
import { createTestHost, ORIGINAL_LABEL } from '../../support/helper-session';
import { ownedFile, userHome } from './two-users';
import { seededUnit } from '../../support/seeded-random';
import { diffSnapshots, helperEnv, OTHER_UID, REQUESTER_UID, snapshotFiles, vmDefinition, type FileSnapshot } from './reliability';

/**
 * The hostile-user phase: a user (mallory) sends random mixes of the request shapes issue 12 found (bad
 * process and file labels, the other user's static pair, huge static ranges, FIFO disks, paths into the
 * other user's files, /proc/PID/fd paths, restores of missing paths, relabel/restore sequences, list)
 * against a real helper while another user (alice) runs a VM. After every step the invariants are read
 * from disk and from alice's side: alice's files keep their labels, owners, modes and inodes; the journal
 * parses and holds nothing of alice's that alice did not ask for; alice's VM still runs and her helper
 * answers; mallory never holds a VM with a label outside the VM domains or at alice's pair; mallory's
 * `list` does not show alice's VM. Each broken invariant is one boundary violation, counted by kind.
 * A few cases are legitimate starts of mallory's own VM, so that the checks of her running VMs see real
 * ones (and another VM's labels come and go beside alice's).
 *
 * A case costs what its requests cost, not what its checks cost: both helpers stay up for the whole phase;
 * alice's VM is checked through its pid and its QMP socket; and her files' labels are read again (one
 * getfattr for all of them) whenever an inode's ctime moved, which every label, owner or mode change does
 * (setxattr, chown and chmod all set it), and at every FULL_CHECK_EVERY-th case regardless.
 */
const execFileP = promisify(execFile);
const REQUEST_TIMEOUT_MS = 30_000;
const FULL_CHECK_EVERY = 50;
/** The share of cases that start a real VM of mallory's own (each costs a qemu start and stop). */
const LEGIT_START_SHARE = 0.01;

export interface HostileResult {
  hostileCases: number;
  boundaryViolations: number;
  /** Mallory's legitimate starts that failed: not a boundary violation, but the checks of her VMs then saw none. */
  legitimateStartsFailed: number;
  byKind: Record<string, number>;
  shapes: Record<string, number>;
  details: string[];
}

function withTimeout<T>(work: Promise<T>): Promise<T | 'timeout'> {
  return Promise.race([work, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), REQUEST_TIMEOUT_MS).unref())]);
}

type Outcome = { ok: true; value: unknown } | { ok: false; code: string; message: string } | 'timeout';

/** Inode and ctime of each path ('gone' if missing): any change of label, owner, mode or content moves it. */
async function inodeStamps(paths: readonly string[]): Promise<Map<string, string>> {
  const stamps = new Map<string, string>();
  for (const p of paths) {
    const st = await lstat(p, { bigint: true }).catch(() => undefined);
    stamps.set(p, st ? `${st.ino}:${st.ctimeNs}` : 'gone');
  }
  return stamps;
}

/** Whether a VM answers on its QMP socket and says it runs. */
async function qmpRunning(socket: string): Promise<string | true> {
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(socket, { timeoutMs: REQUEST_TIMEOUT_MS });
    const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
    return status.running ? true : `status ${status.status}`;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await qmp?.close().catch(() => undefined);
  }
}

export async function runHostile(cases: number, seed: number, log: (line: string) => void = () => {}): Promise<HostileResult> {
  const random = seededUnit(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const host = await createTestHost();
  const result: HostileResult = { hostileCases: 0, boundaryViolations: 0, legitimateStartsFailed: 0, byKind: {}, shapes: {}, details: [] };
  const violation = (kind: string, detail: string) => {
    result.boundaryViolations++;
    result.byKind[kind] = (result.byKind[kind] ?? 0) + 1;
    if (result.details.length < 50) result.details.push(`${kind}: ${detail}`);
  };
  try {
    const alice = host.startHelper(helperEnv(OTHER_UID));
    let mallory = host.startHelper(helperEnv(REQUESTER_UID));
    const a = await userHome(host, 'alice', OTHER_UID);
    const m = await userHome(host, 'mallory', REQUESTER_UID);
    const aliceDisk = await ownedFile(path.join(a.dir, 'disk.img'), OTHER_UID);
    const aliceSecret = await ownedFile(path.join(a.dir, 'secret.img'), OTHER_UID, 'system_u:object_r:svirt_image_t:s0');
    await chmod(aliceSecret, 0o666);
    const aliceVm = await alice.request('start', {
      definition: vmDefinition(a, 'alice-vm', [{ path: aliceDisk, class: 'private' }]), allowUnconfined: true,
    });
    const aliceLevel = aliceVm.level as string;
    const alicePid = aliceVm.pid as number;
    const alicePidStart = processStartTime(alicePid);
    const watched = [a.dir, a.kernel, a.initrd, aliceDisk, aliceSecret];
    const aliceFiles: FileSnapshot = await snapshotFiles(watched);
    let aliceStamps = await inodeStamps(watched);
    const aliceQmp = path.join(host.stateDir, 'run', `${OTHER_UID}-alice-vm`, 'qmp.sock');
    const aliceQmpState = await qmpRunning(aliceQmp);
    if (aliceQmpState !== true) throw new Error(`alice's VM does not answer on ${aliceQmp}: ${aliceQmpState}`);

    // Mallory's own material: files, a small tree, a FIFO, links to alice's file.
    const own = await ownedFile(path.join(m.dir, 'own.img'), REQUESTER_UID);
    const tree = path.join(m.dir, 'tree');
    await mkdir(path.join(tree, 'sub'), { recursive: true });
    for (const n of ['a', 'b', 'sub/c']) await ownedFile(path.join(tree, n), REQUESTER_UID, n === 'b' ? null : ORIGINAL_LABEL);
    await execFileP('chown', ['-R', `${REQUESTER_UID}:${REQUESTER_UID}`, tree]);
    const fifo = path.join(m.dir, 'disk.fifo');
    await execFileP('mkfifo', [fifo]);
    await chown(fifo, REQUESTER_UID, REQUESTER_UID);
    const hardToAlice = path.join(m.dir, 'alice-hard.img');
    await link(aliceSecret, hardToAlice);
    const procFd = `/proc/${alicePid}/fd/${pick([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])}`;
    const aliceJournalKeys = new Set(Object.keys((await new HelperStateStore(host.stateDir).read()).journal.entries).filter((k) => k.startsWith(a.dir)));

    const foreignPaths = [a.dir, aliceDisk, aliceSecret, a.kernel, hardToAlice, procFd, `/proc/${alicePid}/root${aliceDisk}`, `/proc/${alicePid}/cwd`];
    const staticVm = (name: string, label: string, extra: Record<string, unknown> = {}) =>
      vmDefinition(m, name, [{ path: own, class: 'private' }], { seclabel: { mode: 'static', label, relabel: true, ...extra } });
    const shapes: Record<string, () => [HelperClient, string, Record<string, unknown>]> = {
      'relabel foreign path': () => [mallory, 'relabel', { path: pick(foreignPaths), mode: pick(['shared', 'readonly', 'restore']) }],
      'relabel private into alice VM': () => [mallory, 'relabel', { path: pick([own, ...foreignPaths]), mode: 'private', vm: aliceVm.id }],
      'relabel FIFO': () => [mallory, 'relabel', { path: fifo, mode: pick(['shared', 'readonly']) }],
      'restore missing path': () => [mallory, 'relabel', { path: path.join(pick([m.dir, a.dir]), `gone-${Math.floor(random() * 1e6)}`), mode: 'restore' }],
      'relabel own tree or file': () => [mallory, 'relabel', { path: pick([own, tree, path.join(tree, 'a'), path.join(tree, 'sub')]), mode: pick(['shared', 'readonly', 'restore']) }],
      'start bad process label': () => [mallory, 'start', { definition: staticVm('bad-proc', `system_u:system_r:${pick(['unconfined_t', 'kernel_t', 'spc_t'])}:s0:c1,c2`), allowUnconfined: true }],
      'start with alice pair': () => [mallory, 'start', { definition: staticVm('alice-pair', `system_u:system_r:svirt_t:${aliceLevel}`), allowUnconfined: true }],
      'start huge static range': () => [mallory, 'start', { definition: staticVm('huge', 'system_u:system_r:svirt_t:s0-s0:c0.c1023'), allowUnconfined: true }],
      'start bad image label': () => [mallory, 'start', { definition: staticVm('bad-image', 'system_u:system_r:svirt_t:s0:c7,c8', { imageLabel: `system_u:object_r:${pick(['shadow_t', 'passwd_exec_t', 'etc_t'])}:s0:c7,c8` }), allowUnconfined: true }],
      'start FIFO disk': () => [mallory, 'start', { definition: vmDefinition(m, 'fifo', [{ path: fifo, class: pick(['private', 'shared'] as const) }]), allowUnconfined: true }],
      'start foreign disk': () => [mallory, 'start', { definition: vmDefinition(m, 'foreign', [{ path: pick(foreignPaths), class: pick(['private', 'shared', 'readonly'] as const), relabel: random() < 0.7 }]), allowUnconfined: true }],
      'start foreign kernel': () => [mallory, 'start', { definition: vmDefinition({ ...m, kernel: pick([a.kernel, procFd]) }, 'foreign-kernel', []), allowUnconfined: true }],
      list: () => [mallory, 'list', {}],
    };
    const names = Object.keys(shapes);
    // Drawn apart from the hostile shapes, so that their mix stays uniform.
    const legitStart = (): [HelperClient, string, Record<string, unknown>] =>
      [mallory, 'start', { definition: vmDefinition(m, 'own-vm', [{ path: own, class: 'private' }]), allowUnconfined: true }];

    for (let i = 0; i < cases; i++) {
      const shape = random() < LEGIT_START_SHARE ? 'start own VM' : pick(names);
      const [client, verb, args] = shape === 'start own VM' ? legitStart() : (shapes[shape] as () => [HelperClient, string, Record<string, unknown>])();
      result.shapes[shape] = (result.shapes[shape] ?? 0) + 1;
      const outcome: Outcome = await withTimeout(client.requestUnchecked(verb, args).then(
        (value) => ({ ok: true as const, value }),
        (err: Error & { code?: string }) => ({ ok: false as const, code: err.code ?? 'error', message: err.message }),
      ));
      result.hostileCases++;
      if (outcome === 'timeout') {
        violation('request hangs', `${shape}: ${verb} ${JSON.stringify(args).slice(0, 200)}`);
        // A helper stuck (e.g. in open() of a FIFO) is ended and replaced, so the phase goes on.
        mallory.kill('SIGKILL');
        mallory = host.startHelper(helperEnv(REQUESTER_UID));
      } else if (shape === 'start own VM') {
        if (!outcome.ok) {
          result.legitimateStartsFailed++;
          if (result.details.length < 50) result.details.push(`legitimate start failed: ${outcome.code}: ${outcome.message}`);
        }
      } else if (verb === 'start' && outcome.ok) {
        violation(`accepted: ${shape}`, JSON.stringify(args).slice(0, 200));
      } else if (verb === 'relabel' && outcome.ok && shape !== 'relabel own tree or file' && shape !== 'restore missing path') {
        violation(`accepted: ${shape}`, JSON.stringify(args).slice(0, 200));
      } else if (verb === 'list' && outcome.ok && (outcome.value as RunInfo[]).some((vm) => vm.ownerUid !== REQUESTER_UID)) {
        violation('list shows another user\'s VM', (outcome.value as RunInfo[]).map((vm) => vm.id).join(', '));
      }
      // Mallory's VMs from accepted starts: none may run outside the VM domains or at alice's pair.
      const mine = await withTimeout(mallory.request('list').catch(() => [] as RunInfo[]));
      for (const vm of mine === 'timeout' ? [] : mine.filter((v) => v.ownerUid === REQUESTER_UID)) {
        if (vm.processLabel && !/:svirt(_tcg)?_t:/.test(vm.processLabel)) violation('VM outside the VM domains', `${vm.id} ${vm.processLabel}`);
        if (vm.processLabel?.endsWith(`:${aliceLevel}`)) violation('VM at another user\'s pair', `${vm.id} ${vm.processLabel}`);
        await withTimeout(mallory.request('forceOff', { vm: vm.id }).catch(() => undefined));
      }
      // Alice's side.
      const stamps = await inodeStamps(watched);
      if (watched.some((p) => stamps.get(p) !== aliceStamps.get(p)) || (i + 1) % FULL_CHECK_EVERY === 0 || i === cases - 1) {
        const now = await snapshotFiles(watched);
        const changed = diffSnapshots(aliceFiles, now);
        if (changed.length > 0) violation('other user\'s files changed', `${shape}: ${changed.join('; ')}`);
        for (const [p, state] of now) aliceFiles.set(p, state);
        aliceStamps = stamps;
      }
      if (processStartTime(alicePid) !== alicePidStart) violation('other user\'s VM died', shape);
      else {
        const qmpState = await qmpRunning(aliceQmp);
        if (qmpState !== true) violation('other user\'s VM stopped answering', `${shape}: ${qmpState}`);
      }
      const aliceList = await withTimeout(alice.request('list').catch((err: Error) => err));
      if (aliceList === 'timeout' || aliceList instanceof Error) violation('other user\'s helper fails', `${shape}: ${aliceList === 'timeout' ? 'timeout' : aliceList.message}`);
      else if (!aliceList.some((vm) => vm.id === aliceVm.id)) violation('other user\'s helper lost her VM', `${shape}: ${aliceList.map((vm) => vm.id).join(', ')}`);
      try {
        const { journal } = await new HelperStateStore(host.stateDir).read();
        const foreign = [...Object.keys(journal.entries), ...Object.values(journal.trees ?? {}).map((t) => t.root)]
          .filter((p) => p.startsWith(a.dir) && !aliceJournalKeys.has(p));
        if (foreign.length > 0) violation('journal holds another user\'s files', `${shape}: ${foreign.join(', ')}`);
        const dropped = [...aliceJournalKeys].filter((k) => !journal.entries[k]);
        if (dropped.length > 0) violation('journal lost another user\'s records', `${shape}: ${dropped.join(', ')}`);
      } catch (err) {
        violation('journal unreadable', `${shape}: ${(err as Error).message}`);
      }
      if (processStartTime(alicePid) !== alicePidStart) break; // nothing left to protect
      if (process.env.HOSTILE_TRACE) log(`${shape} ${outcome === 'timeout' ? 'timeout' : outcome.ok ? 'ok' : outcome.code} ${Date.now()}`);
      if ((i + 1) % 100 === 0) log(`hostile: ${i + 1}/${cases} cases, ${result.boundaryViolations} violations`);
    }
    await alice.request('forceOff', { vm: aliceVm.id }).catch(() => undefined);
  } finally {
    await host.dispose();
  }
  return result;
}
