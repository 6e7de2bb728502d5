import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLabel } from '../src/security/selinux/file-labels';
import { GUEST_READY_MARKER } from './support/guest';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from './support/helper-session';

// The svirt CLI as a script would use it: the built bin, a real helper per invocation, a real guest.
const execFileP = promisify(execFile);
let host: TestHost;

async function svirt(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, ['bin/svirt.js', ...args], {
      env: { ...host.env, XDG_CONFIG_HOME: path.join(host.dir, 'config') },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  host = await createTestHost();
});
afterAll(async () => {
  await svirt('stop', 'cli-vm', '--force');
  await host.dispose();
});

describe('svirt VM commands', () => {
  it('defines, starts, talks to, inspects, stops and undefines a VM', async () => {
    const disk = await host.disk('cli.img');
    const shared = await host.disk('cli-shared.img');
    const defined = await svirt('define', '--name', 'cli-vm', '--kernel', host.kernel, '--initrd', host.initrd, '--append', host.append,
      '--disk', disk, '--disk', `${shared}:shared`, '--memory', '128');
    expect(defined).toMatchObject({ code: 0, stdout: 'defined cli-vm\n' });
    expect((await svirt('define', '--name', 'cli-vm', '--kernel', host.kernel)).stderr).toMatch(/already/);
    expect((await svirt('define', '--name', 'bad', '--kernel', host.kernel, '--seclabel', 'static:garbage')).code).toBe(2);

    const listed = JSON.parse((await svirt('list', '--json')).stdout) as { name: string; state: string }[];
    expect(listed.map((v) => [v.name, v.state])).toEqual([['cli-vm', 'stopped']]);
    // The helper names the model it probed; a stopped VM is described as that model would start it.
    const status = JSON.parse((await svirt('status', '--json')).stdout) as { security: { model: string; modelName: string; state: string } };
    expect(status.security).toMatchObject({ model: 'selinux', modelName: 'SELinux' });
    expect((await svirt('status')).stdout).toMatch(new RegExp(`^security model: SELinux \\(${status.security.state}\\)`, 'm'));
    const shownStopped = (await svirt('show', 'cli-vm')).stdout;
    expect(shownStopped).toMatch(/^model: SELinux \(sVirt\)$/m);
    expect(shownStopped).toMatch(/^confinement: a fresh MCS pair is drawn at each start/m);
    expect((await svirt('list')).stdout).toMatch(new RegExp(`^cli-vm\\s+stopped\\s.*\\sSELinux \\(${status.security.state}\\)$`, 'm'));

    const refused = await svirt('start', 'cli-vm');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/SELinux is disabled/);

    const started = await svirt('start', 'cli-vm', '--allow-unconfined');
    expect(started.stdout).toMatch(/^started cli-vm: pid \d+, system_u:system_r:svirt_t:s0:c\d+[,.]c\d+, unconfined-disabled \(not confined: SELinux disabled\)/);

    expect((await svirt('console', 'cli-vm', '--expect', GUEST_READY_MARKER, '--timeout', '60')).code).toBe(0);
    const answer = await svirt('console', 'cli-vm', '--send', 'echo $((6*7))', '--expect', '^42\\r?$', '--timeout', '30');
    expect(answer.code).toBe(0);
    expect((await svirt('console', 'cli-vm', '--send', 'true', '--expect', '^never-printed$', '--timeout', '2')).code).toBe(1);

    const running = JSON.parse((await svirt('list', '--json')).stdout) as { state: string; level: string; processLabel: string; confinement: string; confined: boolean }[];
    expect(running[0]).toMatchObject({ state: 'running', confinement: 'unconfined-disabled', confined: false });
    expect((await svirt('list')).stdout).toMatch(/^cli-vm\s+running\s.*\sunconfined-disabled\s+SELinux \(sVirt\)$/m);
    // Running, the helper's description: the context's parts as the SELinux driver split them, the pair its own.
    const shown = JSON.parse((await svirt('show', 'cli-vm', '--json')).stdout) as { security: { model: string; processParts: { name: string; value: string }[] } };
    expect(shown.security.model).toBe('selinux');
    expect(shown.security.processParts.map((p) => [p.name, p.value])).toEqual([['user', 'system_u'], ['role', 'system_r'], ['type', 'svirt_t'], ['level', running[0]?.level]]);
    expect((await svirt('show', 'cli-vm')).stdout).toMatch(/^ {2}user system_u · role system_r · type svirt_t · level s0:c\d+[,.]c\d+ \(the pair only this VM holds\)$/m);
    const labels = JSON.parse((await svirt('labels', 'cli-vm', '--json')).stdout) as { path: string; expectedLabel: string; actualLabel: string; match: boolean }[];
    const diskRow = labels.find((l) => l.path === disk);
    expect(diskRow).toMatchObject({ expectedLabel: `system_u:object_r:svirt_image_t:${running[0]?.level}`, match: true });
    expect(labels.every((l) => l.match === true)).toBe(true);

    const stopped = await svirt('stop', 'cli-vm');
    expect(stopped.stdout).toMatch(/^stopped cli-vm; \d+ file label\(s\) restored/);
    expect(await readLabel(disk)).toBe(ORIGINAL_LABEL);
    expect((await svirt('undefine', 'cli-vm')).code).toBe(0);
    expect(JSON.parse((await svirt('list', '--json')).stdout)).toEqual([]);
    expect((await svirt('list')).stdout).toMatch(/^no VMs yet: define one with `svirt define/);
    // About twenty svirt runs, each with its own helper, and a boot under TCG on a shared machine.
  }, 300_000);

  it('relabels shared content and restores it', async () => {
    const file = await host.disk('content.img');
    const labeled = await svirt('relabel', file, '--readonly');
    expect(labeled.code).toBe(0);
    expect(labeled.stdout).toMatch(new RegExp(`^labeled 1 file under ${file} as read-only VM content`));
    expect(await readLabel(file)).toBe('system_u:object_r:virt_content_t:s0');
    const restored = await svirt('relabel', file, '--restore', '--json');
    expect(JSON.parse(restored.stdout)).toMatchObject({ restored: 1 });
    expect(await readLabel(file)).toBe(ORIGINAL_LABEL);
    expect((await svirt('relabel', file, '--restore')).stdout).toMatch(/^nothing to restore under /);
    const refused = await svirt('relabel', '/etc/passwd', '--shared');
    expect(refused.stderr).toMatch(/refusing "\/etc\/passwd": it lies under the system directory \/etc/);
  });
});
