import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, type Services } from '../../src/user/app-services';
import { VmStore } from '../../src/user/vm-store';
import { openAppInBrowser, type AppInBrowser } from '../support/app-in-browser';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { SHOTS } from './iso-app';

// The relabel dialog's Cancel through the real services: the page, the helper, svirt-label-tree walking a
// real tree of labeled files. The walk is held still (SIGSTOP) once it has changed some labels, so that
// the page can be measured and cancelled at a known point; every label is read back with getfattr after.
const run = promisify(execFile);
const VM = 'cancel-vm';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
// Many small directories: the walk reports a batch every 256 directories per worker, well before its end.
const DIRS = 3_000;
const PER_DIR = 1;

let host: TestHost;
let services: Services;
let app: AppInBrowser;
let page: Page;
let tree: string;
let pageErrors: string[] = [];
/** The svirt-label-tree processes walking the tree (it forks a worker per CPU, up to 4). */
let walkers: number[] = [];
let progressSeen = false;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const signalWalkers = (signal: NodeJS.Signals) => {
  for (const pid of walkers) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already.
    }
  }
};

/** The children of a process, from /proc (every thread's list). */
async function childrenOf(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => []);
  const lists = await Promise.all(tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '')));
  return lists.flatMap((l) => l.split(' ').filter((x) => x !== '').map(Number));
}

/** This test's helper: the process whose environment names the test host's state directory. */
async function helperPid(): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '');
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (environ.split('\0').includes(`SVIRT_STATE_DIR=${host.stateDir}`) && argv.includes('svirt-helper')) return Number(entry);
  }
  throw new Error('the helper of this test is not running');
}

/** The svirt-label-tree processes under `parent` that walk this test's tree (their command line names it). */
async function walkersUnder(parent: number): Promise<number[]> {
  const found: number[] = [];
  const visit = async (pid: number): Promise<void> => {
    for (const child of await childrenOf(pid)) {
      const argv = (await readFile(`/proc/${child}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (path.basename(argv[0] ?? '') === 'svirt-label-tree' && argv.includes(tree)) found.push(child);
      await visit(child);
    }
  };
  await visit(parent);
  return found;
}

/**
 * Holds the walk still once it has reported a batch: stopped (SIGSTOP) on sight, then let run a few
 * milliseconds at a time until its first progress has come through the services. However busy the
 * machine, the walk is held with labels changed and more to go.
 */
async function holdAfterFirstBatch(helper: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (walkers.length === 0) {
    if (Date.now() > deadline) throw new Error('svirt-label-tree never started');
    walkers = await walkersUnder(helper);
  }
  signalWalkers('SIGSTOP');
  while (!progressSeen) {
    if (Date.now() > deadline) throw new Error('the walk reported no progress');
    signalWalkers('SIGCONT');
    await sleep(2);
    signalWalkers('SIGSTOP');
    // Workers forked since are held as well.
    for (const pid of await walkersUnder(helper)) {
      if (walkers.includes(pid)) continue;
      walkers.push(pid);
      process.kill(pid, 'SIGSTOP');
    }
    await sleep(250);
  }
}

/** Every label in the tree, the root's included, read with getfattr. */
async function labelsInTree(): Promise<string[]> {
  const { stdout } = await run('getfattr', ['-R', '-h', '-n', 'security.selinux', '--only-values', '--absolute-names', '-e', 'text', tree], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.split(/\0|\n/).map((l) => l.replace(/^"|"$/g, '')).filter((l) => l.length > 0);
}

/** Whether SIGTERM is pending for a (stopped) process: the cancel has reached it. */
async function termPending(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const pending = [...status.matchAll(/^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)].map((m) => BigInt(`0x${m[1]}`));
  return pending.some((mask) => (mask & (1n << 14n)) !== 0n);
}

/** Where the dialog and its parts are on the screen. */
const dialogLayout = () => page.evaluate(() => {
  const box = (selector: string) => {
    const r = document.querySelector(selector)?.getBoundingClientRect();
    return r ? { top: Math.round(r.top), left: Math.round(r.left), width: Math.round(r.width), height: Math.round(r.height) } : null;
  };
  return { dialog: box('[role="dialog"]'), list: box('.change-list'), status: box('[data-testid="relabel-status"]'), actions: box('.dialog__actions') };
});

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  host = await createTestHost();
  tree = path.join(host.dir, 'build-cache');
  for (let d = 0; d < DIRS; d++) {
    const sub = path.join(tree, `d${d}`);
    await mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: PER_DIR }, (_, k) => writeFile(path.join(sub, `f${k}`), '')));
  }
  await run('chcon', ['-R', ORIGINAL_LABEL, tree]);
  // A directory is no disk image the create form would take; its definition is written as the store writes it.
  const vmDirectory = path.join(host.dir, 'vms');
  await new VmStore(vmDirectory).define({
    name: VM, memoryMiB: 128, vcpus: 1, boot: { kind: 'disk' }, seclabel: { mode: 'dynamic' },
    disks: [{ path: tree, format: 'raw', class: 'private', relabel: true }],
  });
  services = createServices({ vmDirectory, helperEnv: host.env });
  // Held still at its first reported batch: labels changed, more to go.
  services.onEvent(({ event }) => {
    if (event === 'relabelProgress') progressSeen = true;
  });
  app = await openAppInBrowser(services, { width: 1280, height: 820 });
  ({ page, pageErrors } = app);
}, 180_000);

afterAll(async () => {
  signalWalkers('SIGCONT');
  await services?.dispose?.();
  await app?.close();
  await host?.dispose();
});

describe('cancelling a tree relabel from the dialog', () => {
  it('stops the walk, puts every label back, keeps the disk private, and the dialog does not move between confirm and progress', async () => {
    const total = DIRS * PER_DIR + DIRS + 1;
    await page.getByText('SELinux disabled').first().waitFor({ timeout: 60_000 });
    await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Virtual machines' }).click();
    await page.getByRole('button', { name: VM, exact: true }).click();
    await page.getByRole('group', { name: `Sharing of ${tree}` }).getByRole('button', { name: 'Shared read-write' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByTestId('change-count').waitFor({ timeout: 120_000 });
    expect(await dialog.getByTestId('change-count').innerText()).toBe(`${total} files change label:`);
    const confirming = await dialogLayout();

    const held = holdAfterFirstBatch(await helperPid());
    await dialog.getByRole('button', { name: `Relabel ${total} files` }).click({ timeout: 120_000 });
    await held;
    // The first batch's progress reaches the page while the walk is held.
    await expect.poll(async () => Number(/^(\d+) of/.exec(await dialog.getByTestId('relabel-status').innerText())?.[1] ?? 0), { timeout: 60_000 }).toBeGreaterThan(0);
    const changed = (await labelsInTree()).filter((l) => l === SHARED).length;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThan(total);
    console.log(`[measure] walk held with ${changed} of ${total} labels changed`);

    // One slot for both phases: nothing in the dialog moves or resizes when the bar replaces the note.
    const applying = await dialogLayout();
    expect(applying).toEqual(confirming);
    await page.screenshot({ path: path.join(SHOTS, 'e2e-relabel-progress.png') });

    await dialog.getByRole('button', { name: 'Cancel' }).click();
    // The cancel reached the walk (SIGTERM waits while it is held); let it go.
    await expect.poll(async () => (await Promise.all(walkers.map((pid) => termPending(pid).catch(() => false)))).some(Boolean), { timeout: 30_000, interval: 20 }).toBe(true);
    signalWalkers('SIGCONT');
    await dialog.getByText(/cancelled: every label it changed is back/).waitFor({ timeout: 60_000 });
    walkers = [];
    await page.screenshot({ path: path.join(SHOTS, 'e2e-relabel-cancelled.png') });

    const after = await labelsInTree();
    expect(after.length).toBe(total);
    expect(after.filter((l) => l !== ORIGINAL_LABEL)).toEqual([]);
    // The definition did not change, and the helper's journal holds nothing to put back.
    const details = await services.getVm({ name: VM });
    expect(details.definition.disks[0]?.class).toBe('private');
    const helper = host.startHelper();
    expect(await helper.request('relabel', { path: tree, mode: 'restore' })).toMatchObject({ restored: 0 });
    expect(pageErrors).toEqual([]);
  }, 300_000);
});
