import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, type Services } from '../../src/user/app-services';
import { readLabel } from '../../src/security/selinux/file-labels';
import { openAppInBrowser, type AppInBrowser } from '../support/app-in-browser';
import { GUEST_READY_MARKER } from '../support/guest';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../support/helper-session';

// The renderer in Debian's Chromium, driving the real src/user and src/root services (real helper, real qemu, real
// labels) through the IPC contract: what Electron would do, without the Electron binary.
const run = promisify(execFile);
const SHOTS = path.resolve('test/e2e/screenshots');
const VM = 'e2e-vm';

let host: TestHost;
let services: Services;
let app: AppInBrowser;
let page: Page;
let disk: string;
let pageErrors: string[] = [];

const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `e2e-app-${name}.png`) });
const nav = (label: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: label }).click();
const terminalText = () => page.locator('.xterm-rows').innerText();

async function openVm(): Promise<void> {
  await nav('Virtual machines');
  await page.getByRole('button', { name: VM, exact: true }).click();
  await page.getByRole('heading', { name: VM, level: 1 }).waitFor();
}

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  host = await createTestHost();
  disk = await host.disk('e2e.img');
  services = createServices({ vmDirectory: path.join(host.dir, 'vms'), helperEnv: host.env });
  app = await openAppInBrowser(services);
  ({ page, pageErrors } = app);
});

afterAll(async () => {
  await services?.forceOffVm({ name: VM }).catch(() => undefined);
  await services?.dispose?.();
  await app?.close();
  await host?.dispose();
});

describe('the app in a real browser against the real core', () => {
  it('creates a VM from the guest kernel, runs it confined-in-labels, and shows and fixes its labels', async () => {
    // Host status bar from the real helper.
    await page.getByText('SELinux disabled').first().waitFor({ timeout: 60_000 });

    // Create VM.
    await nav('New VM');
    await page.getByText('Kernel + initrd').click();
    const field = (name: string | RegExp) => page.getByRole('textbox', { name, exact: typeof name === 'string' });
    await field('Name').fill(VM);
    await field('Kernel').fill(host.kernel);
    await field('Initrd').fill(host.initrd);
    await field('Kernel command line').fill(host.append);
    await field(/^Disk image/).fill(disk);
    await page.getByRole('spinbutton', { name: 'Memory (MiB)' }).fill('128');
    await shot('create-vm');
    await page.getByRole('button', { name: 'Create VM' }).click();
    // A created VM opens its details.
    await page.getByRole('heading', { name: VM, level: 1 }).waitFor({ timeout: 30_000 });

    // VM list.
    await nav('Virtual machines');
    await page.getByTestId(`vm-row-${VM}`).waitFor();
    await shot('vm-list');

    // Start: SELinux is off here, so the app asks before starting unconfined.
    await openVm();
    await page.getByRole('button', { name: 'Start', exact: true }).click();
    await page.getByRole('button', { name: 'Start unconfined' }).click();
    await page.getByText('Running').first().waitFor({ timeout: 60_000 });
    const running = await services.getVm({ name: VM });
    const pair = running.summary.processLevel?.level;
    expect(pair).toMatch(/^s0:c\d+[,.]c\d+$/);
    expect(await readLabel(disk)).toBe(`system_u:object_r:svirt_image_t:${pair}`);
    // The helper's description reaches the page: the model, and the context's parts as the SELinux driver split them.
    expect(running.summary.security.model).toBe('selinux');
    expect(running.summary.security.processParts.map((p) => p.value)).toEqual(['system_u', 'system_r', 'svirt_t', pair]);
    expect(await page.getByTestId('security-model').filter({ hasText: 'SELinux (sVirt)' }).textContent()).toContain(`a pair drawn for this start`);
    expect(await page.locator('[data-part="level"]').first().textContent()).toBe(pair);
    await nav('Virtual machines');
    await page.getByTestId(`vm-row-${VM}`).getByText('Running').waitFor();
    // SELinux is off on this host, so the row warns and says which model would have confined it.
    expect(await page.getByTestId(`vm-row-${VM}`).getByTestId('confinement').textContent()).toMatch(/Unconfined.*SELinux/);
    await shot('vm-list-running');
    await openVm();

    // Console: the ready marker, then a round trip through the guest's shell.
    await page.getByRole('tab', { name: 'Console' }).click();
    await page.getByTestId('console-screen').waitFor();
    await expect.poll(terminalText, { timeout: 60_000 }).toContain(GUEST_READY_MARKER);
    await page.getByTestId('console-screen').click();
    await page.keyboard.type('echo $((6*7))\n');
    await expect.poll(async () => (await terminalText()).split('\n').map((l) => l.trim()), { timeout: 30_000 }).toContain('42');
    await shot('console');

    // Audit: the VM's row; then a drifted label behind the app's back shows as a problem.
    await nav('Access audit');
    await page.getByTestId('audit-source').waitFor({ timeout: 60_000 });
    await page.getByTestId(`access-${VM}-${disk}`).waitFor();
    expect(await page.getByTestId(`access-${VM}-${disk}`).innerText()).toMatch(/write/);
    await run('chcon', ['-h', 'system_u:object_r:svirt_image_t:s0:c1,c2', disk]);
    await page.getByRole('button', { name: 'Check again' }).click();
    await page.locator('[data-kind="label-drift"]').waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-kind="label-drift"]').innerText()).toContain(disk);
    await shot('audit');

    // Stop: the private disk gets its original label back (the drift included).
    await openVm();
    await page.getByRole('button', { name: 'Shut down' }).click();
    await page.getByText('Stopped').first().waitFor({ timeout: 60_000 });
    expect(await readLabel(disk)).toBe(ORIGINAL_LABEL);

    // One click: make the disk shared read-write, confirm the listed file, see the label on disk.
    await page.getByRole('group', { name: `Sharing of ${disk}` }).getByRole('button', { name: 'Shared read-write' }).click();
    await page.getByTestId('change-count').waitFor();
    expect(await page.getByRole('table', { name: 'Files that change label' }).innerText()).toContain(disk);
    await shot('relabel-confirm');
    await page.getByRole('button', { name: /^Relabel \d+ files?$/ }).click();
    await page.getByRole('dialog').waitFor({ state: 'detached', timeout: 30_000 });
    const { stdout } = await run('getfattr', ['-h', '--only-values', '-n', 'security.selinux', disk]);
    expect(stdout.replace(/\0$/, '')).toBe('system_u:object_r:svirt_image_t:s0');
    expect((await services.getVm({ name: VM })).definition.disks[0]?.class).toBe('shared');
    await shot('vm-details');

    // Static label editor (editable while stopped): a malformed level is an error.
    await page.getByRole('tab', { name: 'Security label' }).click();
    await page.getByRole('radio', { name: /Static/ }).check();
    await page.getByRole('textbox', { name: /^Level/ }).fill('s0:c5.c2');
    await page.getByRole('list', { name: 'Label errors' }).waitFor();
    expect(await page.getByRole('list', { name: 'Label errors' }).innerText()).toMatch(/backwards/);
    await shot('static-label-editor');

    expect(pageErrors).toEqual([]);
  });
});
