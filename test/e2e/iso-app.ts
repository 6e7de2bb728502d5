import { copyFile, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { createServices, type Services } from '../../src/user/app-services';
import { writeLabel } from '../../src/security/selinux/file-labels';
import { openAppInBrowser, type AppInBrowser } from '../support/app-in-browser';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../support/helper-session';
import { testIso } from '../support/test-iso';

// What the installer-ISO e2e tests share: a test host with the test ISO copied in at its original label,
// the real services in Chromium, the guest's serial output handed to the test as it arrives, the create
// form filled for an ISO VM, and the display canvas read for pixels.

export const SHOTS = path.resolve('test/e2e/screenshots');

export interface IsoApp {
  host: TestHost;
  services: Services;
  app: AppInBrowser;
  /** The installer ISO, in the host's directory, labeled ORIGINAL_LABEL. */
  iso: string;
}

export async function openIsoApp(onSerial: (text: string) => void): Promise<IsoApp> {
  await mkdir(SHOTS, { recursive: true });
  const host = await createTestHost();
  try {
    const iso = path.join(host.dir, 'installer.iso');
    await copyFile(await testIso(), iso);
    await writeLabel(iso, ORIGINAL_LABEL);
    const services = createServices({ vmDirectory: path.join(host.dir, 'vms'), helperEnv: host.env });
    services.onEvent(({ event, payload }) => {
      if (event === 'consoleData') onSerial(Buffer.from((payload as { data: string }).data, 'base64').toString('latin1'));
    });
    const app = await openAppInBrowser(services);
    return { host, services, app, iso };
  } catch (error) {
    await host.dispose();
    throw error;
  }
}

/** Forces the test's VM off, then closes the services, the browser and the host. */
export async function closeIsoApp(session: IsoApp | undefined, vm: string): Promise<void> {
  await session?.services.forceOffVm({ name: vm }).catch(() => undefined);
  await session?.services.dispose?.();
  await session?.app.close();
  await session?.host.dispose();
}

/** Opens the create form and fills what an ISO install needs: the name, the ISO and the memory. */
export async function fillIsoCreateForm(page: Page, { name, iso, memoryMiB }: { name: string; iso: string; memoryMiB: number }): Promise<void> {
  await page.getByText('SELinux disabled').first().waitFor({ timeout: 60_000 });
  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'New VM' }).click();
  await page.getByText('ISO installer').click();
  await page.getByRole('textbox', { name: 'Name', exact: true }).fill(name);
  await page.getByRole('textbox', { name: 'ISO image', exact: true }).fill(iso);
  await page.getByRole('spinbutton', { name: 'Memory (MiB)' }).fill(String(memoryMiB));
}

/** The display canvas's size and how many of its pixels differ from its most common colour (the background). */
export function displayInk(page: Page): Promise<{ width: number; height: number; ink: number }> {
  return page.getByTestId('display-screen').locator('canvas').evaluate((c: HTMLCanvasElement) => {
    const { data } = c.getContext('2d')!.getImageData(0, 0, c.width, c.height);
    const counts = new Map<number, number>();
    for (let i = 0; i < data.length; i += 4) {
      const rgb = (data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!;
      counts.set(rgb, (counts.get(rgb) ?? 0) + 1);
    }
    return { width: c.width, height: c.height, ink: data.length / 4 - Math.max(...counts.values()) };
  });
}
