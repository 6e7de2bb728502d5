import { readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/**
 * Each running VM's qemu gets its own uid and gid (one number for both) from a reserved range, as systemd's
 * DynamicUser does, so that no qemu can open another's /proc/PID/fd or files even without SELinux (libvirt
 * runs every VM as one `qemu` user, and any of them can reach every other's open images that way).
 *
 * - The range is a helper.json setting (`vmIdRange`, default systemd's dynamic range 61184-65519, which
 *   package-created system users and regular users never get). A range that holds an /etc/passwd uid or an
 *   /etc/group gid is refused at load: such an account could reach a VM's files.
 * - The id is the VM's record in the registry (RunRecord.qemuUid), chosen under the state lock: freed when
 *   the record goes, at stop or when reconcile cleans up after a crash. No account is created: spawn and
 *   setpriv take numbers.
 * - An id is given out only if no record holds it, no account has appeared on it since the range was
 *   checked, and no process runs as it (a qemu left by a crash whose record is gone).
 * - /etc/passwd and /etc/group are read directly: no getent, no extra process on the start path.
 */
export interface IdRange {
  readonly first: number;
  readonly last: number;
}

export const DEFAULT_VM_ID_RANGE: IdRange = { first: 61184, last: 65519 };

/** "FIRST-LAST" → range; ids 0 (root) and 65535/4294967295 (the "no id" values) are never in one. */
export function parseIdRange(text: string): IdRange {
  const m = /^(\d{1,10})-(\d{1,10})$/.exec(text);
  const first = Number(m?.[1]);
  const last = Number(m?.[2]);
  if (!m || first < 1 || last < first || last >= 0xffffffff) throw new Error(`vmIdRange must be FIRST-LAST with 0 < FIRST <= LAST < 4294967295, not ${JSON.stringify(text)}`);
  if (first <= 65535 && last >= 65535) throw new Error(`vmIdRange ${text} holds 65535, which means "no id" to 16-bit interfaces`);
  return { first, last };
}

/** Numeric ids of a passwd or group file's entries, with their names. */
function idsOf(text: string): Map<number, string> {
  const ids = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id !== undefined && /^\d+$/.test(id)) ids.set(Number(id), name);
  }
  return ids;
}

/** The account uids and group gids of the host. */
export async function hostAccountIds(files = { passwd: '/etc/passwd', group: '/etc/group' }): Promise<{ uids: Map<number, string>; gids: Map<number, string> }> {
  const [passwd, group] = await Promise.all([readFile(files.passwd, 'utf8').catch(() => ''), readFile(files.group, 'utf8').catch(() => '')]);
  return { uids: idsOf(passwd), gids: idsOf(group) };
}

/** Throws when an account or group id lies inside the range. */
export async function checkIdRangeFree(range: IdRange, files?: { passwd: string; group: string }): Promise<void> {
  const { uids, gids } = await hostAccountIds(files);
  for (const [kind, ids] of [['user', uids], ['group', gids]] as const) {
    for (const [id, name] of ids) {
      if (id >= range.first && id <= range.last) {
        throw new Error(`vmIdRange ${range.first}-${range.last} holds the ${kind} ${name} (${id}): VM ids must belong to no account`);
      }
    }
  }
}

/**
 * Uids in the range that own a process now (/proc/PID's owner is the process's uid). Read synchronously: a
 * procfs stat costs microseconds, a trip through the thread pool for each of a few hundred processes
 * costs tens of milliseconds of every start on a busy host.
 */
function idsRunning(range: IdRange): Set<number> {
  const out = new Set<number>();
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let uid: number;
    try {
      uid = statSync(`/proc/${name}`).uid;
    } catch {
      continue; // ended meanwhile
    }
    if (uid >= range.first && uid <= range.last) out.add(uid);
  }
  return out;
}

/** The lowest id of the range that no record holds, no account uses and no process runs as; undefined if none. */
export async function allocateVmId(range: IdRange, recorded: Iterable<number>): Promise<number | undefined> {
  const taken = new Set(recorded);
  const { uids, gids } = await hostAccountIds();
  const running = idsRunning(range);
  for (let id = range.first; id <= range.last; id++) {
    if (!taken.has(id) && !uids.has(id) && !gids.has(id) && !running.has(id)) return id;
  }
  return undefined;
}
