import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { parseContext } from '../labeling/context';
import type { InUseEntry } from '../labeling/mcs-allocator';

const run = promisify(execFile);

export type SelinuxMode = 'enforcing' | 'permissive' | 'disabled';

/** The kernel's SELinux mode, from libselinux's own `getenforce` (Disabled when the tool is missing). */
export async function selinuxMode(): Promise<SelinuxMode> {
  try {
    const { stdout } = await run('getenforce', []);
    const mode = stdout.trim().toLowerCase();
    return mode === 'enforcing' || mode === 'permissive' ? mode : 'disabled';
  } catch {
    return 'disabled';
  }
}

/**
 * Levels held by live processes on this host (libvirt's VMs, podman containers, other sVirt managers),
 * read from /proc/PID/attr/current when SELinux is on. A process at a single level with categories is
 * an MCS-confined subject; a process with a range (low ≠ high, e.g. s0-s0:c0.c1023) is unconfined with
 * respect to MCS and blocks nothing.
 */
export async function liveProcessLevels(mode?: SelinuxMode): Promise<InUseEntry[]> {
  if ((mode ?? (await selinuxMode())) === 'disabled') return [];
  const entries: InUseEntry[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let label: string;
    try {
      label = (await readFile(`/proc/${name}/attr/current`, 'utf8')).replace(/\0+$/, '').trim();
    } catch {
      continue; // exited meanwhile
    }
    let ctx;
    try {
      ctx = parseContext(label);
    } catch {
      continue; // "kernel" or unlabeled
    }
    if (!ctx.range || ctx.range.low.categories.length === 0) continue;
    const single = ctx.range.low.categories.join() === ctx.range.high.categories.join() && ctx.range.low.sensitivity === ctx.range.high.sensitivity;
    entries.push({ range: ctx.range, kind: single ? 'subject' : 'unconfined', owner: `pid ${name} (${ctx.type})` });
  }
  return entries;
}
