import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { Services } from '../../src/user/app-services';
import { bridgeServices } from './browser-bridge';
import { serveRenderer } from './serve-renderer';

/**
 * The built renderer in Debian's Chromium, bridged to real services through the IPC contract: what the
 * Electron window does, without the Electron binary. One set-up for every e2e file that drives the app.
 */
export interface AppInBrowser {
  readonly page: Page;
  /** Uncaught errors of the page; a test ends by expecting none. */
  readonly pageErrors: string[];
  close(): Promise<void>;
}

// Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function openAppInBrowser(services: Services, viewport = { width: 1360, height: 900 }): Promise<AppInBrowser> {
  const server = await serveRenderer();
  const profileDir = await mkdtemp(path.join(tmpdir(), 'svirt-chromium-'));
  let browser: BrowserContext | undefined;
  const close = async () => {
    await browser?.close();
    await server.close();
    await rm(profileDir, { recursive: true, force: true });
  };
  try {
    browser = await chromium.launchPersistentContext(profileDir, { executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS, viewport });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await bridgeServices(page, services);
    await page.goto(server.url);
    return { page, pageErrors, close };
  } catch (err) {
    await close();
    throw err;
  }
}
