import { execFile } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, type Services } from '../../src/user/app-services';
import { openAppInBrowser, type AppInBrowser } from '../support/app-in-browser';
import { createTestHost, type TestHost } from '../support/helper-session';

// The Disks & snapshots screen in Debian's Chromium against the real services: a disk created with
// qemu-img through the page, attached, shown in the label table, and a snapshot taken and listed.
const run = promisify(execFile);
const SHOTS = path.resolve('test/e2e/screenshots');
const VM = 'disks-vm';

let host: TestHost;
let services: Services;
let app: AppInBrowser;
let page: Page;
let pageErrors: string[] = [];

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  host = await createTestHost();
  services = createServices({ vmDirectory: path.join(host.dir, 'vms'), helperEnv: host.env });
  await services.defineVm({
    name: VM, memoryMiB: 128, vcpus: 1, disks: [], seclabel: { mode: 'dynamic' },
    boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
  });
  app = await openAppInBrowser(services);
  ({ page, pageErrors } = app);
});

afterAll(async () => {
  await services?.dispose?.();
  await app?.close();
  await host?.dispose();
});

describe('the Disks & snapshots screen', () => {
  it('creates and attaches a qcow2 disk, shows it with its label, and takes and lists a snapshot', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Virtual machines' }).click();
    await page.getByRole('button', { name: VM, exact: true }).click();
    await page.getByRole('tab', { name: 'Disks & snapshots' }).click();
    await page.getByText('Snapshots need a writable qcow2 disk.').waitFor();

    const image = path.join(host.dir, 'from-the-page.qcow2');
    const create = page.getByRole('form', { name: 'Create a disk' });
    await create.getByRole('textbox', { name: 'New disk' }).fill(image);
    await create.getByRole('textbox', { name: 'Size' }).fill('1G');
    await create.getByRole('button', { name: 'Create and attach' }).click();
    await page.getByRole('status').filter({ hasText: `created and attached ${image}` }).waitFor({ timeout: 60_000 });
    await page.getByRole('table').first().getByRole('cell', { name: image }).waitFor();
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', image])).stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 1024 ** 3 });
    expect((await stat(image)).uid).toBe(process.getuid?.());

    // A bad size is refused with the field's name, and nothing is created.
    await create.getByRole('textbox', { name: 'New disk' }).fill(path.join(host.dir, 'bad.qcow2'));
    await create.getByRole('textbox', { name: 'Size' }).fill('0');
    await create.getByRole('button', { name: 'Create and attach' }).click();
    await page.getByText('Size must be more than 0, not "0"').waitFor();
    await expect(stat(path.join(host.dir, 'bad.qcow2'))).rejects.toThrow(/ENOENT/);

    await page.getByRole('textbox', { name: 'Snapshot name' }).fill('first-boot');
    await page.getByRole('button', { name: 'Take snapshot' }).click();
    const list = page.getByRole('table', { name: 'Snapshot list' });
    await list.getByRole('cell', { name: 'first-boot' }).waitFor({ timeout: 60_000 });
    await page.screenshot({ path: path.join(SHOTS, 'e2e-disks-snapshots.png'), fullPage: true });
    expect((await services.snapshot({ vm: VM, op: 'list' })).disks).toEqual([{ disk: image, snapshots: [expect.objectContaining({ name: 'first-boot' })] }]);

    // The new disk is in the files-and-labels table.
    await page.getByRole('tab', { name: 'Overview' }).click();
    await page.getByRole('region', { name: 'Files' }).getByText(image).first().waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'e2e-disks-files.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });
});
