/**
 * Renders every screen of the built renderer (dist/renderer) in Debian's Chromium against the sample
 * host, and writes one PNG per screen to test/e2e/screenshots/. For looking at the UI while working on
 * it: `npm run build && npx tsx test/renderer-preview/screenshot.ts`.
 */
import { build } from 'esbuild';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { serveRenderer } from '../support/serve-renderer';

const root = path.resolve(import.meta.dirname, '..', '..');
const pageDir = path.join(root, 'dist', 'renderer');
const outDir = path.join(root, 'test', 'e2e', 'screenshots');

async function bridgeScript(): Promise<string> {
  const result = await build({ entryPoints: [path.join(root, 'renderer/src/test-support/preview-bridge.ts')], bundle: true, format: 'iife', write: false, platform: 'browser' });
  return result.outputFiles[0]?.text ?? '';
}

async function shoot(page: Page, name: string, settleMs = 400): Promise<void> {
  await page.waitForTimeout(settleMs);
  await page.screenshot({ path: path.join(outDir, `preview-${name}.png`) });
  console.log(`wrote test/e2e/screenshots/preview-${name}.png`);
}

const nav = (page: Page, label: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: label }).click();

async function main(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const profile = await mkdtemp(path.join(tmpdir(), 'svirt-preview-'));
  const server = await serveRenderer(pageDir);
  // A fresh profile each run, so nothing from an earlier run (storage, permissions) colours the pictures.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 860 },
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.addInitScript({ content: await bridgeScript() });
    await page.goto(server.url);

    await page.getByTestId('vm-row-web').waitFor();
    await shoot(page, 'vm-list');

    await page.getByRole('button', { name: 'web', exact: true }).click();
    await page.getByRole('heading', { name: 'web', level: 1 }).waitFor();
    await shoot(page, 'vm-details');

    await page.getByRole('tab', { name: 'Console' }).click();
    await page.getByTestId('console-screen').waitFor();
    await page.waitForTimeout(500);
    await shoot(page, 'console');

    await nav(page, 'Virtual machines');
    await page.getByRole('button', { name: 'build', exact: true }).click();
    await page.getByRole('group', { name: 'Sharing of /srv/build-cache' }).getByRole('button', { name: 'Shared read-write' }).click();
    await page.getByTestId('change-count').waitFor();
    await shoot(page, 'relabel-confirm');
    await page.getByRole('button', { name: /^Relabel \d+ files$/ }).click();
    await shoot(page, 'relabel-progress', 300);
    await page.getByRole('dialog').waitFor({ state: 'detached' });

    await page.getByRole('tab', { name: 'Security label' }).click();
    await page.getByRole('radio', { name: /Static/ }).check();
    await page.getByRole('textbox', { name: /^Level/ }).fill('s0:c88,c901');
    await page.waitForTimeout(500);
    await shoot(page, 'static-label-editor');

    await nav(page, 'Access audit');
    await page.getByTestId('audit-source').waitFor();
    await shoot(page, 'audit');

    await nav(page, 'New VM');
    await shoot(page, 'create-vm');

    if (errors.length > 0) throw new Error(`the page reported errors:\n${errors.join('\n')}`);
  } finally {
    await browser.close();
    await server.close();
    await rm(profile, { recursive: true, force: true });
  }
}

await main();
