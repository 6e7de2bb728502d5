import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/user/app-services';
import { readLabel, writeLabel } from '../../src/security/selinux/file-labels';
import type { AppInBrowser } from '../support/app-in-browser';
import { GUEST_READY_MARKER } from '../support/guest';
import { ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { closeIsoApp, displayInk, fillIsoCreateForm, openIsoApp, SHOTS, type IsoApp } from './iso-app';

// An install as a user does it, in Chromium against the real core: a VM from the installer ISO with a port
// forward, a new 1 GiB qcow2 disk made on the Disks screen, pixels on the display, then a snapshot, a file on
// the disk changed by the guest, a revert, and the file as it was at the snapshot; last, the edit form
// detaches the ISO. The guest's shell is driven through the serial console the app's Console tab uses.
const VM = 'install-vm';

let host: TestHost;
let services: Services;
let app: AppInBrowser;
let page: Page;
let iso: string;
let serial = '';
let pageErrors: string[] = [];
let session: IsoApp | undefined;

const inkPixels = async () => (await displayInk(page)).ink;

/** Types a line on the guest's serial shell and waits for a line after it that matches. */
async function guest(session: string, command: string, expected: RegExp, timeout = 60_000): Promise<void> {
  const from = serial.length;
  await services.consoleInput({ session, data: `${command}\n` });
  const deadline = Date.now() + timeout;
  while (!expected.test(serial.slice(from))) {
    if (Date.now() > deadline) throw new Error(`the guest never answered ${expected} to ${command}; it said: ${JSON.stringify(serial.slice(from).slice(-600))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts the VM from the page (unconfined: this host has no SELinux); resolves with a serial session and a wait for the shell. */
async function start(): Promise<{ session: string; shell: () => Promise<void> }> {
  const from = serial.length;
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await page.getByRole('button', { name: 'Start unconfined' }).click();
  await page.getByText('Running').first().waitFor({ timeout: 120_000 });
  const { session } = await services.consoleAttach({ vm: VM });
  const shell = async () => {
    await expect.poll(() => serial.slice(from).includes(GUEST_READY_MARKER), { timeout: 240_000, interval: 250 }).toBe(true);
  };
  return { session, shell };
}

async function forceOff(): Promise<void> {
  await page.getByRole('button', { name: 'Force off' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Force off' }).click();
  await page.getByText('Stopped').first().waitFor({ timeout: 60_000 });
}

beforeAll(async () => {
  session = await openIsoApp((text) => { serial += text; });
  ({ host, services, app, iso } = session);
  ({ page, pageErrors } = app);
}, 300_000);

afterAll(() => closeIsoApp(session, VM));

describe('installing from an ISO onto a new disk, with a snapshot and a revert', () => {
  it('creates the VM with a port forward and a new 1 GiB qcow2, shows the display, and a revert takes back what the guest wrote after the snapshot', async () => {
    await fillIsoCreateForm(page, { name: VM, iso, memoryMiB: 256 });
    await page.getByRole('button', { name: 'Add a port forward' }).click();
    await page.getByRole('spinbutton', { name: 'Host port 1' }).fill('28022');
    await page.getByRole('spinbutton', { name: 'Guest port 1' }).fill('22');

    const t0 = Date.now();
    await page.getByRole('button', { name: 'Create VM' }).click();
    await page.getByRole('heading', { name: VM, level: 1 }).waitFor({ timeout: 30_000 });
    expect((await services.getVm({ name: VM })).definition).toMatchObject({
      boot: { kind: 'iso', iso }, display: 'vnc', network: { mode: 'user', portForwards: [{ hostPort: 28022, guestPort: 22 }] },
    });

    // The new disk, made with qemu-img as the user and attached, on the Disks & snapshots screen.
    const disk = path.join(host.dir, 'install-vm.qcow2');
    await page.getByRole('tab', { name: 'Disks & snapshots' }).click();
    const create = page.getByRole('form', { name: 'Create a disk' });
    await create.getByRole('textbox', { name: 'New disk' }).fill(disk);
    await create.getByRole('textbox', { name: 'Size' }).fill('1G');
    await create.getByRole('button', { name: 'Create and attach' }).click();
    await page.getByRole('status').filter({ hasText: `created and attached ${disk}` }).waitFor({ timeout: 60_000 });
    await writeLabel(disk, ORIGINAL_LABEL);
    const tDisk = Date.now();

    const first = await start();
    await page.getByRole('tab', { name: 'Display' }).click();
    await expect.poll(inkPixels, { timeout: 120_000, interval: 250 }).toBeGreaterThan(1000);
    const tPixels = Date.now();
    await first.shell();
    const tShell = Date.now();
    const level = (await services.getVm({ name: VM })).summary.processLevel?.level;
    expect(await readLabel(disk)).toBe(`system_u:object_r:svirt_image_t:${level}`);
    expect(await readLabel(iso)).toBe('system_u:object_r:virt_content_t:s0');

    // A file on the new disk (a tar archive is the disk's file system: the test guest loads no ext2 module).
    const writeNote = (text: string) => `echo ${text} > /tmp/note.txt && tar -cf /dev/vda -C /tmp note.txt && sync`;
    // The archive is a few blocks at the start of the disk; tar would otherwise read on through the whole GiB.
    const readNote = 'head -c 10240 /dev/vda | tar -xOf - note.txt';
    await guest(first.session, `${writeNote('before-snapshot')} && echo wrote-$((1+1))`, /^wrote-2\r?$/m);
    await page.getByRole('tab', { name: 'Disks & snapshots' }).click();
    await page.getByRole('textbox', { name: 'Snapshot name' }).fill('installed');
    await page.getByRole('button', { name: 'Take snapshot' }).click();
    const list = page.getByRole('table', { name: 'Snapshot list' });
    await list.getByRole('cell', { name: 'installed', exact: true }).waitFor({ timeout: 120_000 });
    expect((await services.snapshot({ vm: VM, op: 'list' })).via).toBe('qmp');
    await guest(first.session, `${writeNote('after-snapshot')} && ${readNote}`, /^after-snapshot\r?$/m);

    // Stopped, the snapshot is reverted with qemu-img as the user, and the guest finds the file as it was.
    await forceOff();
    expect(await readLabel(disk)).toBe(ORIGINAL_LABEL);
    await list.getByRole('row', { name: /installed/ }).getByRole('button', { name: 'Revert' }).click();
    await page.getByRole('status').filter({ hasText: 'reverted to installed' }).waitFor({ timeout: 60_000 });
    await page.screenshot({ path: path.join(SHOTS, 'e2e-snapshots.png'), fullPage: true });
    const second = await start();
    await second.shell();
    await guest(second.session, `${readNote}; echo read-$((2+2))`, /^before-snapshot\r?\n(.*\n)?read-4\r?$/m);
    expect(serial.slice(serial.lastIndexOf(GUEST_READY_MARKER))).not.toMatch(/^after-snapshot/m);
    await forceOff();

    // Installed: the edit form detaches the ISO (the VM then boots its disk), moves the forward, switches to UEFI.
    const edit = page.getByRole('form', { name: 'Edit the machine' });
    await edit.getByRole('textbox', { name: /Installer ISO/ }).fill('');
    await edit.getByRole('spinbutton', { name: 'Host port 1' }).fill('28080');
    await edit.getByRole('spinbutton', { name: 'Guest port 1' }).fill('80');
    await edit.getByRole('combobox', { name: /Firmware/ }).selectOption('uefi');
    await edit.getByRole('button', { name: 'Save' }).click();
    await expect.poll(async () => (await services.getVm({ name: VM })).definition.boot.kind, { timeout: 30_000 }).toBe('disk');
    const edited = (await services.getVm({ name: VM })).definition;
    expect(edited).toMatchObject({
      network: { mode: 'user', portForwards: [{ hostPort: 28080, guestPort: 80 }] },
      firmware: { kind: 'uefi', nvram: path.join(host.dir, 'vms', `${VM}.nvram.fd`) },
    });
    // A bad port is refused with the form's name for it, and nothing changes.
    await page.getByRole('form', { name: 'Edit the machine' }).getByRole('spinbutton', { name: 'Host port 1' }).waitFor();
    await page.getByRole('form', { name: 'Edit the machine' }).getByRole('button', { name: 'Add a port forward' }).click();
    await page.getByRole('form', { name: 'Edit the machine' }).getByRole('spinbutton', { name: 'Host port 2' }).fill('28080');
    await page.getByRole('form', { name: 'Edit the machine' }).getByRole('spinbutton', { name: 'Guest port 2' }).fill('443');
    await page.getByRole('form', { name: 'Edit the machine' }).getByRole('button', { name: 'Save' }).click();
    await page.getByText('Port forwards 28080:443: host port 28080 is already forwarded (to guest port 80)').waitFor({ timeout: 30_000 });
    expect((await services.getVm({ name: VM })).definition).toEqual(edited);
    await page.getByRole('form', { name: 'Edit the machine' }).scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'e2e-edit-form.png'), fullPage: true });

    const seconds = (t: number) => `${((t - t0) / 1000).toFixed(1)} s`;
    console.log(`[measure] create form → VM defined and 1 GiB disk made and attached: ${seconds(tDisk)}; → pixels on the canvas: ${seconds(tPixels)}; → guest shell ready: ${seconds(tShell)}`);
    expect(pageErrors).toEqual([]);
  }, 900_000);
});
