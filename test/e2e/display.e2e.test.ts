import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/user/app-services';
import { readLabel } from '../../src/security/selinux/file-labels';
import type { AppInBrowser } from '../support/app-in-browser';
import { axeViolations } from '../support/axe';
import { GUEST_READY_MARKER } from '../support/guest';
import { closeIsoApp, displayInk, fillIsoCreateForm, openIsoApp, SHOTS, type IsoApp } from './iso-app';

// An installer ISO through the app in Chromium against the real core: the create form, a CD-ROM boot, and
// the guest's VGA screen in noVNC over the helper's relay, typed into through noVNC.
const VM = 'iso-vm';

let services: Services;
let app: AppInBrowser;
let page: Page;
let iso: string;
let serial = '';
let pageErrors: string[] = [];
let session: IsoApp | undefined;

const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `e2e-${name}.png`) });
const canvas = () => page.getByTestId('display-screen').locator('canvas');
const inkPixels = () => displayInk(page);

/**
 * Types as a person does: Shift held for shifted characters. qemu maps each keysym to its key on a US layout
 * and does not add Shift itself (without it, `>` arrives as `.`), and Playwright's type() presses no Shift.
 */
async function typeLikeAPerson(text: string): Promise<void> {
  for (const ch of text) {
    const shifted = /[A-Z~!@#$%^&*()_+{}|:"<>?]/.test(ch);
    if (shifted) await page.keyboard.down('Shift');
    await page.keyboard.press(ch === '\n' ? 'Enter' : ch, { delay: 20 });
    if (shifted) await page.keyboard.up('Shift');
  }
}

beforeAll(async () => {
  session = await openIsoApp((text) => { serial += text; });
  ({ services, app, iso } = session);
  ({ page, pageErrors } = app);
}, 300_000);

afterAll(() => closeIsoApp(session, VM));

describe('a VM installed from an ISO, on its graphical display', () => {
  it('is created from the ISO with a display and network by default, boots from the CD-ROM, and shows and takes keys through noVNC', async () => {
    await fillIsoCreateForm(page, { name: VM, iso, memoryMiB: 256 });
    // An ISO VM gets a display and user-mode networking unless the user says otherwise.
    expect(await page.getByRole('checkbox', { name: /Graphical display/ }).isChecked()).toBe(true);
    expect(await page.getByRole('combobox', { name: 'Network' }).inputValue()).toBe('user');
    await shot('create-vm-iso');

    // From here to pixels on the canvas is what a user waits for.
    const t0 = Date.now();
    await page.getByRole('button', { name: 'Create VM' }).click();
    await page.getByRole('heading', { name: VM, level: 1 }).waitFor({ timeout: 30_000 });
    const defined = await services.getVm({ name: VM });
    expect(defined.definition).toMatchObject({ boot: { kind: 'iso', iso }, display: 'vnc', network: { mode: 'user' }, firmware: { kind: 'bios' }, memoryMiB: 256 });
    await page.getByRole('button', { name: 'Start', exact: true }).click();
    await page.getByRole('button', { name: 'Start unconfined' }).click();
    await page.getByText('Running').first().waitFor({ timeout: 60_000 });
    const tStarted = Date.now();
    await services.consoleAttach({ vm: VM });
    await page.getByRole('tab', { name: 'Display' }).click();
    await canvas().waitFor({ timeout: 30_000 });
    await expect.poll(async () => (await inkPixels()).ink, { timeout: 120_000, interval: 250 }).toBeGreaterThan(200);
    const tPixels = Date.now();
    const running = await services.getVm({ name: VM });
    expect(await readLabel(iso)).toBe('system_u:object_r:virt_content_t:s0');
    expect(running.summary.state).toBe('running');

    // The guest's boot text, then its shell on the VGA console (tty1).
    await expect.poll(() => serial, { timeout: 120_000 }).toContain(GUEST_READY_MARKER);
    const tShell = Date.now();
    await page.getByText('Connected', { exact: true }).waitFor();
    const size = await inkPixels();
    expect(size.width).toBeGreaterThanOrEqual(640);
    expect(size.ink).toBeGreaterThan(1000);
    await shot('display-iso-boot');
    // The graphical console screen, live: no serious or critical accessibility violation.
    expect(await axeViolations(page)).toEqual([]);

    // Keys typed into noVNC reach the tty1 shell: it writes to the serial port, where the test reads them back.
    await page.getByTestId('display-screen').click();
    await page.getByText('Keyboard captured').waitFor();
    const before = (await inkPixels()).ink;
    await typeLikeAPerson('echo vnc-typed-$((6*7)) > /dev/ttyS0\n');
    await expect.poll(() => serial, { timeout: 60_000 }).toContain('vnc-typed-42');
    // The echo of the typed line is on the screen too.
    expect((await inkPixels()).ink).not.toBe(before);
    await shot('display-typed');

    // Send keys: Ctrl+Alt+F2 switches the guest to an empty virtual terminal, Ctrl+Alt+F1 back to the shell.
    await page.getByRole('combobox', { name: 'Send keys' }).selectOption('f2');
    await expect.poll(async () => (await inkPixels()).ink, { timeout: 30_000 }).toBeLessThan(before / 4);
    await page.getByRole('combobox', { name: 'Send keys' }).selectOption('f1');
    await expect.poll(async () => (await inkPixels()).ink, { timeout: 30_000 }).toBeGreaterThan(before / 2);

    // By keyboard alone: Tab from the toolbar reaches the screen and captures the keys; Ctrl+Alt gives them back.
    await page.getByRole('button', { name: 'Fullscreen' }).focus();
    await page.keyboard.press('Tab');
    await page.getByText('Keyboard captured').waitFor();
    await typeLikeAPerson('echo tabbed-$((6*7)) > /dev/ttyS0\n');
    await expect.poll(() => serial, { timeout: 60_000 }).toContain('tabbed-42');
    await page.keyboard.down('Control');
    await page.keyboard.down('Alt');
    await page.keyboard.up('Alt');
    await page.keyboard.up('Control');
    await page.getByText('Click the screen or Tab to it to type into the VM').waitFor();
    expect(await page.evaluate(() => document.activeElement?.textContent?.trim())).toBe('Fullscreen');

    const seconds = (t: number) => `${((t - t0) / 1000).toFixed(1)} s`;
    console.log(`[measure] create form → VM running: ${seconds(tStarted)}; → first pixels on the canvas: ${seconds(tPixels)}; → guest shell ready: ${seconds(tShell)}`);
    await services.forceOffVm({ name: VM });
    expect(pageErrors).toEqual([]);
  }, 600_000);
});
