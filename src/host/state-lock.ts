import { randomBytes } from 'node:crypto';
import { link, open, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';

/**
 * A host-wide lock over the helper's state directory, shared by every helper (the app's, a CLI's).
 * Node has no flock(2), so the lock is a file created atomically (link) holding the owner's pid and process
 * start time; a lock whose owner is gone (SIGKILL, power loss) is stale and taken over, and the start
 * time guards against a recycled pid.
 */
export interface LockOwner {
  pid: number;
  startTime: string;
}

/**
 * The kernel's start time of a process (field 22 of /proc/PID/stat), or undefined if it is gone. A zombie
 * (state Z, or X while it is reaped) has exited: it holds no files and runs nothing, only its parent has
 * not collected it yet, so it counts as gone.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its closing paren.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function isProcessAlive(owner: LockOwner): boolean {
  return processStartTime(owner.pid) === owner.startTime;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class StateLockTimeoutError extends Error {
  constructor(lockPath: string, holder: string) {
    super(`state is locked by another helper (${holder}) that shows no progress: ${lockPath}`);
    this.name = 'StateLockTimeoutError';
  }
}

export interface StateLockOptions {
  /** How long a live holder may go without a heartbeat before a waiter gives up. */
  stuckMs?: number;
  /** How often the holder beats. */
  heartbeatMs?: number;
}

const HEARTBEAT_MS = 1_000;
// Far above any heartbeat delay a loaded host causes (a holder's event loop stalled for minutes is stuck).
const STUCK_MS = 120_000;

/**
 * Creates the lock file whole: written under a private name, then hard-linked to the lock's name (link
 * fails with EEXIST while it is held). Created with O_EXCL and written after, a lock is empty for a
 * moment, and a waiter that read it then took it for torn and removed it: both held the lock (4
 * processes lost 2 of 1,200 updates).
 */
async function createLock(lockPath: string, self: LockOwner): Promise<boolean> {
  const temp = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(temp, JSON.stringify(self), { mode: 0o600, flag: 'wx' });
  try {
    await link(temp, lockPath);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

// A breaker holds `<lock>.break` for a few milliseconds; one this old was left by a killed breaker.
const BREAKER_STALE_MS = 10_000;

/**
 * Removes a stale lock, but only the one judged stale: two waiters that both found it stale would
 * otherwise both remove "it", the second removing the lock the first had just taken. Breakers take
 * turns through `<lock>.break` (O_EXCL) and re-read the lock under it.
 */
async function breakStaleLock(lockPath: string, staleText: string): Promise<void> {
  const breaker = `${lockPath}.break`;
  try {
    await (await open(breaker, 'wx', 0o600)).close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const age = await stat(breaker).then((st) => Date.now() - st.mtimeMs, () => 0);
    if (age > BREAKER_STALE_MS) await unlink(breaker).catch(() => undefined);
    return;
  }
  try {
    if ((await readFile(lockPath, 'utf8').catch(() => undefined)) === staleText) await unlink(lockPath).catch(() => undefined);
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
}

async function tryAcquire(lockPath: string, self: LockOwner): Promise<LockOwner | null> {
  if (await createLock(lockPath, self)) return null;
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch {
    return { pid: 0, startTime: 'released' }; // released meanwhile: try again
  }
  let holder: LockOwner | undefined;
  try {
    holder = JSON.parse(text) as LockOwner;
  } catch {
    holder = undefined; // torn (a disk error; locks are never written in place): nobody holds it
  }
  if (holder && typeof holder.pid === 'number' && isProcessAlive(holder)) return holder;
  // Stale. Remove it and let the next round race for it again.
  await breakStaleLock(lockPath, text);
  return { pid: 0, startTime: 'stale' };
}

/** The age of the holder's last heartbeat (the lock file's mtime), or 0 if the lock is gone. */
async function heartbeatAge(lockPath: string): Promise<number> {
  return stat(lockPath).then((st) => Date.now() - st.mtimeMs, () => 0);
}

/** Runs `fn` while holding the lock. Re-entrant use from one process is a programming error. */
export async function withStateLock<T>(lockPath: string, fn: () => Promise<T>, options: StateLockOptions = {}): Promise<T> {
  const stuckMs = options.stuckMs ?? STUCK_MS;
  const startTime = processStartTime(process.pid);
  if (startTime === undefined) throw new Error('cannot read /proc/self/stat');
  const self = { pid: process.pid, startTime };
  let delay = 2;
  for (;;) {
    const holder = await tryAcquire(lockPath, self);
    if (holder === null) break;
    if (holder.pid !== 0) {
      const age = await heartbeatAge(lockPath);
      if (age > stuckMs) throw new StateLockTimeoutError(lockPath, `pid ${holder.pid}, no heartbeat for ${Math.round(age / 1000)} s`);
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(lockPath, now, now).catch(() => undefined);
  }, options.heartbeatMs ?? HEARTBEAT_MS);
  try {
    return await fn();
  } finally {
    clearInterval(heartbeat);
    await unlink(lockPath).catch(() => undefined);
  }
}
