import { execFileSync } from 'node:child_process';
import { chown } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/main/helper-client';
import type { RunInfo } from '../src/main/helper/vm-lifecycle';
import { createTestHost, type TestHost } from './support/helper-session';

// The helper as a boundary between local users (issue 12): real helpers acting for two uids, real qemu.
const OTHER_UID = 4242;
let host: TestHost;
let root: HelperClient;
let other: HelperClient;

const definition = (name: string, disks: object[], boot: object = { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append }) => ({
  version: 1, name, memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(), boot, disks, seclabel: { mode: 'dynamic' },
});
const disk = (p: string, cls: 'private' | 'shared' | 'readonly') => ({ path: p, format: 'raw', class: cls, relabel: true });

/** What a promise settled with within `ms`, or 'pending'. */
const within = <T>(p: Promise<T>, ms: number): Promise<{ value: T } | { error: Error } | 'pending'> =>
  Promise.race([
    p.then((value) => ({ value }), (error: Error) => ({ error })),
    new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms)),
  ]);

beforeAll(async () => {
  host = await createTestHost();
  root = host.startHelper();
  other = host.startHelper({ SUDO_UID: String(OTHER_UID) });
  // Each helper probes the accelerator once (a real guest run): done here, not inside a timed request.
  await Promise.all([root.request('status'), other.request('status')]);
});
afterAll(async () => {
  for (const helper of [root, other]) {
    const running = await within(helper.request<RunInfo[]>('list'), 5_000);
    if (running !== 'pending' && 'value' in running) for (const vm of running.value) await within(helper.request('forceOff', { vm: vm.id }), 30_000);
  }
  await host.dispose();
});

describe('helper boundary between users', () => {
  it('refuses a FIFO given as a disk at once, and another user\'s start proceeds meanwhile', async () => {
    const fifo = path.join(host.dir, 'disk.fifo');
    execFileSync('mkfifo', ['-m', '0600', fifo]);
    await chown(fifo, OTHER_UID, OTHER_UID);
    const fifoStart = other.request('start', { definition: definition('fifo-vm', [disk(fifo, 'private')], { kind: 'disk' }), allowUnconfined: true });
    const rootStart = root.request<RunInfo>('start', { definition: definition('beside-fifo', [disk(await host.disk('beside.img'), 'private')]), allowUnconfined: true });
    // A refusal needs no waiting at all; 30 s only bounds a busy machine (the old code never returned).
    const fifoResult = await within(fifoStart, 30_000);
    expect(fifoResult === 'pending' ? 'still waiting after 30 s' : 'error' in fifoResult ? fifoResult.error.message : 'started').toMatch(/not a regular file/);
    const rootResult = await within(rootStart, 60_000);
    expect(rootResult !== 'pending' && 'value' in rootResult ? rootResult.value.name : rootResult).toBe('beside-fifo');
    await root.request('forceOff', { vm: 'beside-fifo' });
  });
});
