// The app at scale, in Debian's Chromium against the real services (bridged through the IPC contract as
// the e2e tests do): the VM list with 1,000 defined VMs, and the access audit of 100 running VMs × 10,000
// labeled files.
//
//   tsx bench/scale.ts [--vms 1000] [--running 100] [--files 10000] [--repeats 5] [--dir PARENT]
//
// What is real: the VM store (1,000 definition files), the root helper (asked which VMs run), the files
// and their security.selinux labels (chcon, read back with getfattr inside each audit), the policy
// evaluator on the installed policy (SELinux is off in this kernel; with it on the kernel would answer),
// the audit's matrix and problems, the contract bridge, React and the browser's layout and paint. What is
// not: the 100 VMs' run records (name, qemu label, files), passed to the services' audit instead of
// asking the helper, because 100 qemu processes do not fit this machine. The policy is loaded once
// before timing (reported as policyLoadMs); the app does the same, once per process.
//
// Timings (median of --repeats, each from the click in the sidebar to the first frame painted after the
// rows are in the DOM):
//   listFirstPaintMs   the VM list: listVms through the bridge, 1,000 rows' worth of data, the window drawn
//   auditMatrixMs      the audit: labels read, matrix and problems computed, sent, the grid drawn
//   auditDecisionsPerSec  matrix cells (VMs × files) decided per second of the services' audit call
//   listScrollFrameMs / matrixScrollFrameMs  the slowest frame while scrolling through list / matrix
// Human lines first; the last line is one JSON object.

import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import type { AuditedVm } from '../src/core/selinux/audit-report';
import { createServices } from '../src/user/app-services';
import { selinuxMode } from '../src/security/selinux/host-selinux';
import { readLabels } from '../src/security/selinux/file-labels';
import { loadAccessPolicy } from '../src/security/selinux/policy-query';
import { parseVmDefinition, VM_DEFINITION_VERSION } from '../src/core/vm-definition';
import { openAppInBrowser } from '../test/support/app-in-browser';

const run = promisify(execFile);

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '1000' },
    running: { type: 'string', default: '100' },
    files: { type: 'string', default: '10000' },
    repeats: { type: 'string', default: '5' },
    dir: { type: 'string', default: os.tmpdir() },
  },
});
function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} needs a positive integer, got ${text}`);
  return value;
}
const VMS = positive('--vms', values.vms);
const RUNNING = Math.min(VMS, positive('--running', values.running));
const FILES = positive('--files', values.files);
const REPEATS = positive('--repeats', values.repeats);
const PER_VM = Math.ceil(FILES / RUNNING);

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const round = (x: number) => Math.round(x * 10) / 10;
const name = (i: number) => `vm-${String(i).padStart(4, '0')}`;
// Each running VM its own pair, as the allocator would hand them out.
const pair = (i: number) => `s0:c${2 * i},c${2 * i + 1}`;

const root = await mkdtemp(path.join(values.dir, 'svirt-scale-'));
await chmod(root, 0o755);
const vmDir = path.join(root, 'vms');
const imageDir = path.join(root, 'images');
await mkdir(vmDir, { recursive: true, mode: 0o700 });
await mkdir(imageDir, { recursive: true });

try {
  // 1,000 definitions, written as the store writes them (one define at a time checks every other
  // definition for a shared private disk: quadratic set-up, not what is measured).
  const setupStart = performance.now();
  for (let i = 0; i < VMS; i++) {
    const def = parseVmDefinition({
      name: name(i), memoryMiB: 512 + 256 * (i % 8), vcpus: 1 + (i % 4), boot: { kind: 'disk' },
      disks: [{ path: path.join(imageDir, `${name(i)}.qcow2`), format: 'qcow2', class: 'private', relabel: true }],
      seclabel: { mode: 'dynamic' }, version: VM_DEFINITION_VERSION, createdAt: new Date(0).toISOString(),
    });
    await writeFile(path.join(vmDir, `${def.name}.json`), `${JSON.stringify(def, null, 2)}\n`, { mode: 0o600 });
  }
  // The running VMs' files: PER_VM each, labeled with the VM's pair by chcon (real xattrs on disk).
  const files: string[][] = [];
  for (let i = 0; i < RUNNING; i++) {
    const dir = path.join(imageDir, name(i));
    await mkdir(dir);
    const mine = Array.from({ length: PER_VM }, (_, k) => path.join(dir, `disk-${k}.img`));
    await Promise.all(mine.map((f) => writeFile(f, '')));
    await run('chcon', ['-R', `system_u:object_r:svirt_image_t:${pair(i)}`, dir]);
    files.push(mine);
  }
  const fileCount = files.reduce((n, f) => n + f.length, 0);
  console.log(`set-up: ${VMS} definitions, ${RUNNING} running VMs × ${PER_VM} labeled files (${fileCount}) in ${round(performance.now() - setupStart)} ms`);

  const host = await selinuxMode();
  const confinement = host === 'disabled' ? 'unconfined-disabled' : host === 'permissive' ? 'permissive' : 'confined';
  const audited = async (): Promise<AuditedVm[]> => {
    const labels = await readLabels(files.flat());
    return files.map((mine, i) => ({
      name: name(i), processLabel: `system_u:system_r:svirt_t:${pair(i)}`, confined: confinement === 'confined', confinement,
      notConfinedReason: confinement === 'confined' ? null : `SELinux is ${host}`,
      resources: mine.map((p) => ({
        path: p, class: 'private', expectedLabel: `system_u:object_r:svirt_image_t:${pair(i)}`, actualLabel: labels.get(p) ?? null, tclass: 'file',
      })),
    }));
  };

  const stateDir = path.join(root, 'state');
  const configPath = path.join(root, 'helper.json');
  await writeFile(configPath, '{}');
  const helperEnv = { ...process.env, SVIRT_STATE_DIR: stateDir, SVIRT_HELPER_CONFIG: configPath, SVIRT_HELPER_SCRIPT: path.resolve('dist/svirt-helper.js') };
  const services = createServices({ vmDirectory: vmDir, helperEnv, auditedVms: audited });
  const listCallMs: number[] = [];
  const realList = services.listVms;
  services.listVms = async () => {
    const start = performance.now();
    const vms = await realList();
    listCallMs.push(performance.now() - start);
    return vms;
  };
  const auditCallMs: number[] = [];
  const realAudit = services.audit;
  services.audit = async () => {
    const start = performance.now();
    const report = await realAudit();
    auditCallMs.push(performance.now() - start);
    return report;
  };

  const policyStart = performance.now();
  if (host === 'disabled') await loadAccessPolicy();
  const policyLoadMs = performance.now() - policyStart;

  const app = await openAppInBrowser(services, { width: 1280, height: 820 });
  try {
    const { page } = app;
    await page.getByTestId(`vm-row-${name(0)}`).waitFor({ timeout: 60_000 });

    /** From a click on a sidebar entry to the first frame painted with `selector` in the DOM. */
    const timeScreen = (label: string, selector: string): Promise<number> => page.evaluate(async ({ label, selector }) => {
      const button = [...document.querySelectorAll('nav[aria-label="Main"] button')].find((b) => b.textContent?.includes(label)) as HTMLButtonElement;
      const start = performance.now();
      button.click();
      await new Promise<void>((resolve) => {
        if (document.querySelector(selector)) return resolve();
        const observer = new MutationObserver(() => {
          if (document.querySelector(selector)) {
            observer.disconnect();
            resolve();
          }
        });
        observer.observe(document.body, { childList: true, subtree: true });
      });
      // The frame that shows it: rAF runs before that frame's paint, the task after it once painted.
      await new Promise<void>((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
      return performance.now() - start;
    }, { label, selector });

    /** Scrolls `selector` through `steps` positions (down, or right), one per frame; the slowest frame. */
    const scrollFrames = (selector: string, axis: 'top' | 'left', steps: number): Promise<number> => page.evaluate(async ({ selector, axis, steps }) => {
      const el = document.querySelector(selector) as HTMLElement;
      let slowest = 0;
      for (let k = 1; k <= steps; k++) {
        // Measured rows can change the total height as they render: the end is where it is now.
        const max = axis === 'top' ? el.scrollHeight - el.clientHeight : el.scrollWidth - el.clientWidth;
        const start = performance.now();
        el.scrollTo({ [axis]: k === steps ? max : (max * k) / steps });
        await new Promise<void>((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
        slowest = Math.max(slowest, performance.now() - start);
      }
      return slowest;
    }, { selector, axis, steps });

    const listMs: number[] = [];
    const auditMs: number[] = [];
    let listRowsInDom = 0;
    let matrixCellsInDom = 0;
    let listScrollFrameMs = 0;
    let matrixScrollFrameMs = 0;
    for (let r = 0; r < REPEATS; r++) {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'New VM' }).click();
      await page.getByRole('heading', { name: 'New VM', level: 1 }).waitFor();
      listMs.push(await timeScreen('Virtual machines', `[data-testid="vm-row-${name(0)}"]`));
      listRowsInDom = await page.locator('.vm-table tbody tr[data-index]').count();
      listScrollFrameMs = Math.max(listScrollFrameMs, await scrollFrames('.content', 'top', 20));
      await page.getByTestId(`vm-row-${name(VMS - 1)}`).waitFor({ timeout: 5000 }).catch(async (err: unknown) => {
        console.log(await page.evaluate(() => {
          const c = document.querySelector('.content') as HTMLElement;
          const rows = [...document.querySelectorAll('.vm-table tbody tr[data-index]')].map((r) => (r as HTMLElement).dataset.index);
          return JSON.stringify({ sh: c.scrollHeight, ch: c.clientHeight, st: c.scrollTop, rows: [rows[0], rows[rows.length - 1], rows.length], pads: [...document.querySelectorAll('.vm-table__pad td')].map((t) => (t as HTMLElement).style.height) });
        }));
        throw err;
      });

      auditMs.push(await timeScreen('Access audit', '[role="grid"] [role="gridcell"]'));
      matrixCellsInDom = await page.locator('[role="grid"] [role="gridcell"]').count();
      matrixScrollFrameMs = Math.max(matrixScrollFrameMs, await scrollFrames('.matrix-scroll', 'left', 20), await scrollFrames('.matrix-scroll', 'top', 10));
      await page.getByTestId(`access-${name(RUNNING - 1)}-${files[RUNNING - 1]?.[PER_VM - 1]}`).waitFor();
    }
    const cells = RUNNING * fileCount;
    const result = {
      vms: VMS,
      files: fileCount,
      listFirstPaintMs: round(median(listMs)),
      auditMatrixMs: round(median(auditMs)),
      auditDecisionsPerSec: Math.round(cells / (median(auditCallMs) / 1000)),
      runningVms: RUNNING,
      matrixCells: cells,
      listServiceMs: round(median(listCallMs)),
      auditServiceMs: round(median(auditCallMs)),
      policyLoadMs: round(policyLoadMs),
      listRowsInDom,
      matrixCellsInDom,
      listScrollFrameMs: round(listScrollFrameMs),
      matrixScrollFrameMs: round(matrixScrollFrameMs),
      repeats: REPEATS,
      selinux: host,
    };
    console.log(`list of ${VMS} VMs: first paint ${listMs.map(round).join(', ')} ms (median ${result.listFirstPaintMs}); services' listVms call ${listCallMs.map(round).join(', ')} ms; ${listRowsInDom} rows in the DOM; slowest scroll frame ${result.listScrollFrameMs} ms`);
    console.log(`audit of ${RUNNING} VMs × ${fileCount} files (${cells} cells): shown in ${auditMs.map(round).join(', ')} ms (median ${result.auditMatrixMs}); services' audit call ${auditCallMs.map(round).join(', ')} ms; ${matrixCellsInDom} cells in the DOM; slowest scroll frame ${result.matrixScrollFrameMs} ms`);
    console.log(`policy loaded before timing in ${result.policyLoadMs} ms (SELinux ${host})`);
    if (app.pageErrors.length > 0) throw new Error(`page errors: ${app.pageErrors.join('; ')}`);
    console.log(JSON.stringify(result));
  } finally {
    await app.close();
    await services.dispose?.();
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
