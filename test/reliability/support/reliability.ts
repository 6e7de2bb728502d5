import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { McsAllocator } from '../../../src/core/selinux/mcs-allocator';
import { HelperStateStore } from '../../../src/root/state/helper-state';
import { processStartTime } from '../../../src/host/state-lock';
import type { TestHost } from '../../support/helper-session';
import { wireDefinition } from '../../support/wire-definition';
import type { VmDefinitionInput } from '../../../src/core/vm-definition';

/**
 * Shared pieces of the reliability tests and the soak: the file watcher (labels, owners, modes), the
 * state invariants checked after every crash, a scan for qemu processes nobody lists, and a raw JSON
 * Lines driver for the fuzzer (the regular HelperClient would refuse to send what the fuzzer sends).
 */
const execFileP = promisify(execFile);

/** A requester that is not root (the helper believes SUDO_UID), and the owner of files that are not theirs. */
export const REQUESTER_UID = 4242;
export const OTHER_UID = 4343;

/** Environment for a helper of `host` acting for `uid`, optionally armed to kill itself at a fault point. */
export function helperEnv(uid: number, faultAt?: string): NodeJS.ProcessEnv {
  // An explicit SUDO_UID (even 0): a test run under sudo must not make every helper act for the sudoer.
  const env: NodeJS.ProcessEnv = { SUDO_UID: String(uid), PKEXEC_UID: undefined, SVIRT_FAULT_AT: faultAt };
  return env;
}

// ---------------------------------------------------------------------------------------------------
// The file watcher

export interface FileState {
  readonly exists: boolean;
  readonly label: string | null;
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  readonly ino: number;
}

export type FileSnapshot = Map<string, FileState>;

/**
 * Labels straight from `getfattr -h -n security.selinux` (not the project's reader, which is under test),
 * owners and modes from lstat. Missing files and files without the attribute are recorded as such.
 */
export async function snapshotFiles(paths: readonly string[]): Promise<FileSnapshot> {
  const labels = new Map<string, string>();
  for (let i = 0; i < paths.length; i += 500) {
    const batch = paths.slice(i, i + 500);
    let stdout: string;
    try {
      ({ stdout } = await execFileP('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', 'security.selinux', '--', ...batch], { maxBuffer: 64 << 20 }));
    } catch (err) {
      // Exit 1 when some file has no label or is missing; what was printed is valid.
      stdout = (err as { stdout?: string }).stdout ?? '';
    }
    let current: string | undefined;
    for (const line of stdout.split('\n')) {
      if (line.startsWith('# file: ')) current = line.slice(8).replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
      else if (current !== undefined && line.startsWith('security.selinux=0x')) {
        const bytes = Buffer.from(line.slice('security.selinux=0x'.length), 'hex');
        labels.set(current, bytes.subarray(0, bytes.at(-1) === 0 ? -1 : undefined).toString('utf8'));
      }
    }
  }
  const out: FileSnapshot = new Map();
  for (const p of paths) {
    const st = await lstat(p).catch(() => undefined);
    out.set(p, st
      ? { exists: true, label: labels.get(p) ?? null, uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino }
      : { exists: false, label: null, uid: -1, gid: -1, mode: 0, ino: 0 });
  }
  return out;
}

/** Every difference between two snapshots, one line each. */
export function diffSnapshots(before: FileSnapshot, after: FileSnapshot): string[] {
  const out: string[] = [];
  for (const [p, a] of before) {
    const b = after.get(p);
    if (!b) continue;
    for (const key of ['exists', 'label', 'uid', 'gid', 'mode', 'ino'] as const) {
      if (a[key] !== b[key]) out.push(`${p}: ${key} ${JSON.stringify(a[key])} -> ${JSON.stringify(b[key])}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Processes

/** The argv of a process, or undefined if it is gone (or a zombie, whose cmdline is empty). */
function cmdline(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return text === '' ? undefined : text.split('\0').filter((a) => a !== '');
  } catch {
    return undefined;
  }
}

export interface FoundProcess {
  readonly pid: number;
  readonly argv: string[];
}

/** Live processes whose argv mentions `marker` (a test's private dir) and match `kind`. */
/** Whether a process has a file open whose path contains `marker` (read through /proc/PID/fd, as root). */
function holdsFileUnder(pid: number, marker: string): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // exited meanwhile
  }
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).includes(marker);
    } catch {
      return false;
    }
  });
}

export function findProcesses(marker: string, kind: 'qemu' | 'keeper'): FoundProcess[] {
  const found: FoundProcess[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const argv = cmdline(pid);
    if (!argv) continue;
    const isQemu = argv.some((a) => /(^|\/)qemu-system-/.test(a));
    // qemu gets every file as an fd, so its command line names none of them: it is found by what it holds.
    if (!argv.some((a) => a.includes(marker)) && !(isQemu && holdsFileUnder(pid, marker))) continue;
    const isKeeper = argv.includes('--console-keeper');
    if ((kind === 'qemu' && isQemu) || (kind === 'keeper' && isKeeper)) found.push({ pid, argv });
  }
  return found;
}

/** SIGKILLs every qemu (and console keeper) of this host dir: a power cut as far as processes go. */
export async function killAllVmProcesses(marker: string): Promise<number> {
  const victims = [...findProcesses(marker, 'qemu'), ...findProcesses(marker, 'keeper')];
  for (const v of victims) {
    try {
      process.kill(v.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await waitUntil(() => findProcesses(marker, 'qemu').length + findProcesses(marker, 'keeper').length === 0, 10_000);
  return victims.length;
}

export async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

// ---------------------------------------------------------------------------------------------------
// Invariants

/** A private image the test gave a VM, and the label it had before. */
export interface PrivateImage {
  readonly vmId: string;
  readonly path: string;
  readonly original: string | null;
  /** The label while the VM runs, when it is not the VM's image label (kernel and initrd: content). */
  readonly whileRunning?: string;
}

/**
 * The state invariants that must hold whenever no helper is in the middle of a request (after a crash,
 * once a new helper has reconciled). Returns the violations, empty when all hold:
 * - registry.json and journal.json parse with the project's own parsers, the allocator state loads;
 * - no two running VMs share a pair, and every held pair belongs to a VM in the registry at that level;
 * - every VM in the registry is alive (its qemu runs with the recorded start time) and none is stuck in
 *   `starting` once the helper that started it is gone;
 * - every journaled private label is held by a VM in the registry;
 * - every stopped VM's private images carry their original label, every running VM's its image label;
 * - no qemu (or console keeper) of this host runs that the registry does not list.
 */
export async function checkInvariants(host: Pick<TestHost, 'dir' | 'stateDir'>, images: readonly PrivateImage[] = []): Promise<string[]> {
  const v: string[] = [];
  let state;
  try {
    state = await new HelperStateStore(host.stateDir).read();
  } catch (err) {
    return [`state does not parse: ${(err as Error).message}`];
  }
  const { registry, journal } = state;
  const vms = Object.values(registry.vms);

  let holds: readonly { owner: string; level: string }[] = [];
  try {
    holds = registry.mcs === null || registry.mcs === undefined ? [] : McsAllocator.fromJSON(registry.mcs, { random: () => 0 }).toJSON().holds;
  } catch (err) {
    v.push(`allocator state does not load: ${(err as Error).message}`);
  }
  const byLevel = new Map<string, string>();
  for (const hold of holds) {
    const other = byLevel.get(hold.level);
    if (other !== undefined) v.push(`pair ${hold.level} held by both ${other} and ${hold.owner}`);
    byLevel.set(hold.level, hold.owner);
    const record = registry.vms[hold.owner];
    if (!record) v.push(`pair ${hold.level} held by ${hold.owner}, which is not a running VM`);
    else if (record.level !== hold.level) v.push(`pair ${hold.level} held by ${hold.owner}, whose record says ${String(record.level)}`);
  }
  const levels = new Map<string, string>();
  for (const record of vms) {
    if (record.level === null) continue;
    const other = levels.get(record.level);
    if (other !== undefined) v.push(`running VMs ${other} and ${record.id} share the pair ${record.level}`);
    levels.set(record.level, record.id);
    if (!holds.some((h) => h.owner === record.id)) v.push(`running VM ${record.id} has level ${record.level} but the allocator holds no pair for it`);
  }

  for (const record of vms) {
    const qemuAlive = record.pid !== null && processStartTime(record.pid) === record.pidStartTime;
    if (!qemuAlive) v.push(`VM ${record.id} is in the registry but its qemu (${String(record.pid)}) is not running`);
    const helperAlive = processStartTime(record.helperPid) === record.helperStartTime;
    if (record.phase === 'starting' && !helperAlive) v.push(`VM ${record.id} is stuck in "starting": the helper that started it is gone`);
  }

  for (const entry of Object.values(journal.entries)) {
    if (entry.kind === 'private' && !registry.vms[entry.holder]) v.push(`journal holds ${entry.path} privately for ${entry.holder}, which is not running`);
  }

  const labels = await snapshotFiles(images.map((i) => i.path));
  for (const image of images) {
    const now = labels.get(image.path)?.label ?? null;
    const record = registry.vms[image.vmId];
    if (!record && now !== image.original) v.push(`stopped VM ${image.vmId}: ${image.path} is ${String(now)}, not its original ${String(image.original)}`);
    const running = image.whileRunning ?? record?.imageLabel ?? null;
    if (record && running !== null && now !== running) v.push(`running VM ${image.vmId}: ${image.path} is ${String(now)}, not ${running}`);
  }

  const listed = new Set(vms.map((r) => r.pid));
  for (const q of findProcesses(host.dir, 'qemu')) {
    if (!listed.has(q.pid)) v.push(`qemu ${q.pid} runs but no VM in the registry has it: ${q.argv.slice(0, 4).join(' ')}`);
  }
  const keepers = new Set(vms.map((r) => r.keeperPid));
  for (const k of findProcesses(host.stateDir, 'keeper')) {
    if (!keepers.has(k.pid)) v.push(`console keeper ${k.pid} runs but no VM in the registry has it`);
  }
  return v;
}

/**
 * Invariants once processes have settled: a keeper notices its qemu is gone a moment later, and one
 * spawned by a helper that died before recording it gives up after its 10 s connect timeout.
 */
export async function settledInvariants(host: Pick<TestHost, 'dir' | 'stateDir'>, images: readonly PrivateImage[] = [], timeoutMs = 15_000): Promise<string[]> {
  let last: string[] = [];
  await waitUntil(async () => (last = await checkInvariants(host, images)).length === 0, timeoutMs, 200);
  return last;
}

// ---------------------------------------------------------------------------------------------------
// VM definitions

export interface DiskRef {
  readonly path: string;
  readonly class: 'private' | 'shared' | 'readonly';
  readonly relabel?: boolean;
}

/** Smallest memory the test guest boots with under load (80 MiB panics: out of memory for the initramfs). */
export const GUEST_MEMORY_MIB = 96;

export function vmDefinition(host: Pick<TestHost, 'kernel' | 'initrd' | 'append'>, name: string, disks: readonly DiskRef[], extra: Record<string, unknown> = {}): VmDefinitionInput {
  return wireDefinition({
    version: 1, name, memoryMiB: GUEST_MEMORY_MIB, vcpus: 1, createdAt: new Date().toISOString(),
    boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
    disks: disks.map((d) => ({ path: d.path, format: 'raw', class: d.class, relabel: d.relabel ?? true })),
    seclabel: { mode: 'dynamic' },
    ...extra,
  });
}

// ---------------------------------------------------------------------------------------------------
// Raw protocol driver

export interface RawResponse {
  readonly raw: string;
  readonly message: Record<string, unknown> | undefined;
}

/**
 * A helper process spoken to in raw bytes: whatever is written goes to its stdin unchanged; every line it
 * prints is kept, parsed if it parses (a line that does not is itself a finding).
 */
export class RawHelper {
  readonly lines: RawResponse[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  private waiters = new Set<() => void>();
  private pendingText = '';

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      this.pendingText += chunk;
      for (let nl = this.pendingText.indexOf('\n'); nl >= 0; nl = this.pendingText.indexOf('\n')) {
        const raw = this.pendingText.slice(0, nl);
        this.pendingText = this.pendingText.slice(nl + 1);
        let message: Record<string, unknown> | undefined;
        try {
          const parsed: unknown = JSON.parse(raw);
          if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) message = parsed as Record<string, unknown>;
        } catch {
          message = undefined;
        }
        this.lines.push({ raw, message });
      }
      for (const w of this.waiters) w();
    });
    child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-16_384);
    });
    child.stdin.on('error', () => undefined); // EPIPE after a crash: reported through `exited`
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => {
      for (const w of this.waiters) w();
      resolve({ code, signal });
    }));
  }

  static start(host: Pick<TestHost, 'env'>, extraEnv: NodeJS.ProcessEnv = {}): RawHelper {
    const env = { ...host.env, ...extraEnv };
    for (const [k, val] of Object.entries(env)) if (val === undefined) delete env[k];
    const script = env.SVIRT_HELPER_SCRIPT ?? path.resolve('dist/svirt-helper.js');
    return new RawHelper(spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'pipe'], env }));
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Writes bytes, honoring backpressure (a 1 MiB line must not be buffered without bound). */
  async write(data: Buffer | string): Promise<void> {
    if (!this.alive) return;
    if (!this.child.stdin.write(data)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.child.stdin.off('drain', done);
          this.child.off('close', done);
          resolve();
        };
        this.child.stdin.on('drain', done);
        this.child.on('close', done);
      });
    }
  }

  /** Resolves true once `predicate` holds over the lines received, false at the deadline or exit. */
  waitFor(predicate: (lines: readonly RawResponse[]) => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (predicate(this.lines)) finish(true);
        else if (!this.alive) finish(predicate(this.lines));
      };
      const timer = setTimeout(() => finish(predicate(this.lines)), timeoutMs);
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends one well-formed request and waits for its response (undefined at the deadline). */
  async request(id: string, verb: string, args: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown> | undefined> {
    await this.write(`${JSON.stringify({ id, verb, args })}\n`);
    let found: Record<string, unknown> | undefined;
    await this.waitFor((lines) => (found = lines.find((l) => l.message?.id === id)?.message) !== undefined, timeoutMs);
    return found;
  }

  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }

  async close(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.stdin.end();
    return this.exited;
  }
}
