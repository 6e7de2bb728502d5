import axe from 'axe-core';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditedVm } from '../../src/core/selinux/audit-report';
import { createServices, type Services } from '../../src/user/app-services';
import { readLabels } from '../../src/security/selinux/file-labels';
import { parseVmDefinition, VM_DEFINITION_VERSION } from '../../src/core/vm-definition';
import { openAppInBrowser, type AppInBrowser } from '../support/app-in-browser';

// The windowed VM list and audit matrix in Chromium against the real services: 1,000 defined VMs (the
// real store and helper), and an audit of 20 VMs' records over 2,000 files with real labels (chcon),
// decided by the policy evaluator. What is checked is what windowing could break: the right rows at
// any scroll position, the keyboard reaching every row and cell, and the ARIA counts of the whole.
const run = promisify(execFile);
const VMS = 1000;
const RUNNING = 20;
const PER_VM = 100;
const name = (i: number) => `vm-${String(i).padStart(4, '0')}`;
const pair = (i: number) => `s0:c${2 * i},c${2 * i + 1}`;

let root: string;
let services: Services;
let app: AppInBrowser;
let page: Page;
const files: string[][] = [];

const nav = (label: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: label }).click();
const inDom = (selector: string) => page.locator(selector).count();

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'svirt-scale-e2e-'));
  await chmod(root, 0o755);
  const vmDir = path.join(root, 'vms');
  await mkdir(vmDir, { mode: 0o700 });
  for (let i = 0; i < VMS; i++) {
    const def = parseVmDefinition({
      name: name(i), memoryMiB: 512, vcpus: 1, boot: { kind: 'disk' },
      disks: [{ path: path.join(root, `${name(i)}.qcow2`), format: 'qcow2', class: 'private', relabel: true }],
      seclabel: { mode: 'dynamic' }, version: VM_DEFINITION_VERSION, createdAt: new Date(0).toISOString(),
    });
    await writeFile(path.join(vmDir, `${def.name}.json`), JSON.stringify(def), { mode: 0o600 });
  }
  for (let i = 0; i < RUNNING; i++) {
    const dir = path.join(root, 'images', name(i));
    await mkdir(dir, { recursive: true });
    const mine = Array.from({ length: PER_VM }, (_, k) => path.join(dir, `disk-${k}.img`));
    await Promise.all(mine.map((f) => writeFile(f, '')));
    await run('chcon', ['-R', `system_u:object_r:svirt_image_t:${pair(i)}`, dir]);
    files.push(mine);
  }
  const auditedVms = async (): Promise<AuditedVm[]> => {
    const labels = await readLabels(files.flat());
    return files.map((mine, i) => ({
      name: name(i), processLabel: `system_u:system_r:svirt_t:${pair(i)}`, confined: false, confinement: 'unconfined-disabled' as const,
      notConfinedReason: 'SELinux is disabled', resources: mine.map((p) => ({
        path: p, class: 'private', expectedLabel: `system_u:object_r:svirt_image_t:${pair(i)}`, actualLabel: labels.get(p) ?? null, tclass: 'file',
      })),
    }));
  };
  await writeFile(path.join(root, 'helper.json'), '{}');
  const helperEnv = {
    ...process.env, SVIRT_STATE_DIR: path.join(root, 'state'), SVIRT_HELPER_CONFIG: path.join(root, 'helper.json'), SVIRT_HELPER_SCRIPT: path.resolve('dist/svirt-helper.js'),
  };
  services = createServices({ vmDirectory: vmDir, helperEnv, auditedVms });
  app = await openAppInBrowser(services, { width: 960, height: 600 });
  page = app.page;
  await page.getByTestId(`vm-row-${name(0)}`).waitFor({ timeout: 60_000 });
}, 180_000);

afterAll(async () => {
  await app?.close();
  await services?.dispose?.();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the VM list with 1,000 VMs', () => {
  it('keeps only the rows in view in the DOM, tells assistive technology all 1,001 rows, and shows the last one when scrolled to the end', async () => {
    expect(await inDom('.vm-table tbody tr[data-index]')).toBeLessThan(40);
    expect(await page.locator('.vm-table').getAttribute('aria-rowcount')).toBe(String(VMS + 1));
    await page.getByTestId(`vm-row-${name(VMS - 1)}`).waitFor({ state: 'detached' });
    // Rows measure themselves as they render, so the end moves: scroll until it stays put.
    for (let k = 0; k < 10 && !(await page.getByTestId(`vm-row-${name(VMS - 1)}`).count()); k++) {
      await page.locator('.content').evaluate((el) => el.scrollTo({ top: el.scrollHeight }));
      await page.waitForTimeout(100);
    }
    const last = page.getByTestId(`vm-row-${name(VMS - 1)}`);
    await expect.poll(() => last.isVisible()).toBe(true);
    expect(await last.getAttribute('aria-rowindex')).toBe(String(VMS + 1));
    expect(await page.getByTestId(`vm-row-${name(0)}`).count()).toBe(0);
    expect(await inDom('.vm-table tbody tr[data-index]')).toBeLessThan(40);
  });

  it('finds a VM from the middle by the filter, and opens it by the keyboard', async () => {
    await page.getByRole('searchbox', { name: 'Filter by name' }).fill(name(512));
    await page.getByTestId(`vm-row-${name(512)}`).waitFor();
    expect(await inDom('.vm-table tbody tr[data-index]')).toBe(1);
    await page.getByRole('button', { name: name(512), exact: true }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: name(512), level: 1 }).waitFor();
    await nav('Virtual machines');
    await page.getByRole('searchbox', { name: 'Filter by name' }).fill('');
  });

  it('lets Tab walk the names past the first window of rows, each one scrolled into view', async () => {
    await page.locator('.content').evaluate((el) => el.scrollTo({ top: 0 }));
    await page.getByRole('button', { name: name(0), exact: true }).focus();
    for (let k = 0; k < 40; k++) await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement;
      const box = el.getBoundingClientRect();
      return { text: el.textContent, inView: box.top >= 0 && box.bottom <= window.innerHeight };
    });
    expect(focused).toEqual({ text: name(40), inView: true });
  });
});

describe('the audit matrix of 20 VMs × 2,000 files', () => {
  it('draws a window of the 40,000 cells, and the keyboard moves the active cell to any corner, scrolled into view, with its rule on Enter', async () => {
    await nav('Access audit');
    const grid = page.getByRole('grid', { name: 'Access matrix' });
    await grid.waitFor({ timeout: 120_000 });
    expect(await grid.getAttribute('aria-rowcount')).toBe(String(RUNNING + 1));
    expect(await grid.getAttribute('aria-colcount')).toBe(String(RUNNING * PER_VM + 1));
    expect(await inDom('[role="gridcell"]')).toBeLessThan(400);

    await grid.focus();
    const active = async () => page.evaluate(() => {
      const g = document.querySelector('[role="grid"]') as HTMLElement;
      const cell = document.getElementById(g.getAttribute('aria-activedescendant') ?? '') as HTMLElement;
      const a = cell.getBoundingClientRect();
      const b = g.getBoundingClientRect();
      return { label: cell.getAttribute('aria-label'), inView: a.left >= b.left - 1 && a.right <= b.right + 1 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1 };
    });
    expect((await active()).label).toBe(`${name(0)} on ${files[0]?.[0]}: write`);
    await page.keyboard.press('End');
    await expect.poll(active).toEqual({ label: `${name(0)} on ${files[RUNNING - 1]?.[PER_VM - 1]}: none`, inView: true });
    await page.keyboard.press('Control+End');
    await expect.poll(active).toEqual({ label: `${name(RUNNING - 1)} on ${files[RUNNING - 1]?.[PER_VM - 1]}: write`, inView: true });
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByTestId('access-rule').innerText()).toMatch(new RegExp(`${name(RUNNING - 2)} → disk-${PER_VM - 1}\\.img: none\\.`));
    expect(await inDom('[role="gridcell"]')).toBeLessThan(400);
  });

  it('has no serious or critical accessibility violation in the windowed list and grid', async () => {
    await page.evaluate(axe.source);
    const violations = async () => {
      const results = await page.evaluate(() => (window as unknown as { axe: typeof axe }).axe.run(document, { resultTypes: ['violations'] }));
      return results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
    };
    expect(await violations()).toEqual([]);
    await nav('Virtual machines');
    await page.getByTestId(`vm-row-${name(0)}`).waitFor();
    expect(await violations()).toEqual([]);
    expect(app.pageErrors).toEqual([]);
  });
});
