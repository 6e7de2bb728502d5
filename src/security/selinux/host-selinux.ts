import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseContext } from '../../core/selinux/context';
import type { InUseEntry } from '../../core/selinux/mcs-allocator';

export type SelinuxMode = 'enforcing' | 'permissive' | 'disabled';

export const SELINUXFS = '/sys/fs/selinux';

/**
 * The kernel's SELinux mode now, from selinuxfs's `enforce` (what getenforce reads): cheap enough to ask at
 * every report, so a host switched with setenforce is described as it is. Disabled when selinuxfs is absent.
 */
export async function selinuxMode(selinuxfs: string = SELINUXFS): Promise<SelinuxMode> {
  let enforce: string;
  try {
    enforce = (await readFile(join(selinuxfs, 'enforce'), 'utf8')).trim();
  } catch {
    return 'disabled';
  }
  return enforce === '1' ? 'enforcing' : enforce === '0' ? 'permissive' : 'disabled';
}

/** A process's SELinux context (/proc/PID/attr/current, without the kernel's trailing NUL); null when unreadable. */
export async function processLabel(pid: number, procRoot = '/proc'): Promise<string | null> {
  try {
    const label = (await readFile(join(procRoot, String(pid), 'attr', 'current'), 'utf8')).replace(/\0+$/, '').trim();
    return label === '' ? null : label;
  } catch {
    return null;
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
  // Every process's label, read synchronously: hundreds of tiny procfs reads, each cheaper than a trip
  // through the thread pool (a VM start waits for this scan).
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let label: string;
    try {
      label = readFileSync(`/proc/${name}/attr/current`, 'utf8').replace(/\0+$/, '').trim();
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
