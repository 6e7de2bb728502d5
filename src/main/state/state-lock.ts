import { open, readFile, unlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';

/**
 * A host-wide lock over the helper's state directory, shared by every helper (the app's, a CLI's).
 * Node has no flock(2), so the lock is a file created with O_EXCL holding the owner's pid and process
 * start time; a lock whose owner is gone (SIGKILL, power loss) is stale and taken over, and the start
 * time guards against a recycled pid.
 */
export interface LockOwner {
  pid: number;
  startTime: string;
}

/** The kernel's start time of a process (field 22 of /proc/PID/stat), or undefined if it is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its closing paren.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
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
    super(`state is locked by another helper (${holder}) and was not released in time: ${lockPath}`);
    this.name = 'StateLockTimeoutError';
  }
}

async function tryAcquire(lockPath: string, self: LockOwner): Promise<LockOwner | null> {
  try {
    const handle = await open(lockPath, 'wx', 0o600);
    await handle.writeFile(JSON.stringify(self));
    await handle.close();
    return null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder: LockOwner | undefined;
  try {
    holder = JSON.parse(await readFile(lockPath, 'utf8')) as LockOwner;
  } catch {
    holder = undefined; // empty or torn: its writer died between create and write
  }
  if (holder && typeof holder.pid === 'number' && isProcessAlive(holder)) return holder;
  // Stale. Remove it and let the next round race for it through O_EXCL again.
  await unlink(lockPath).catch(() => undefined);
  return { pid: 0, startTime: 'stale' };
}

/** Runs `fn` while holding the lock. Re-entrant use from one process is a programming error. */
export async function withStateLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const startTime = processStartTime(process.pid);
  if (startTime === undefined) throw new Error('cannot read /proc/self/stat');
  const self = { pid: process.pid, startTime };
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    const holder = await tryAcquire(lockPath, self);
    if (holder === null) break;
    if (Date.now() > deadline) throw new StateLockTimeoutError(lockPath, `pid ${holder.pid}`);
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}
