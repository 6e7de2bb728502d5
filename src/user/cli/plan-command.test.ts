import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildPolicyProfile, type PolicyProfile } from '../../core/selinux/policy-profile';
import { parseContext } from '../../core/selinux/context';
import { buildCli } from '../cli';
import { CliError, EXIT } from './exit-codes';
import { registerPlanCommand, type PlanCommandDeps } from './plan-command';

const FIXTURES = new URL('../../../test/fixtures/libvirt/', import.meta.url);

const debian = buildPolicyProfile({
  selinuxConfig: 'SELINUXTYPE=default\n',
  virtualDomainContext: 'system_u:system_r:svirt_t:s0\n',
  virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
});

interface Run {
  stdout: string;
  stderr: string;
  error?: unknown;
}

/** Runs `svirt plan ARGS` in-process against fixture files and a fixed profile. */
async function plan(args: string[], overrides: Partial<PlanCommandDeps> = {}): Promise<Run> {
  const run: Run = { stdout: '', stderr: '' };
  const deps: PlanCommandDeps = {
    loadProfile: () => debian,
    readFile: (path) => readFileSync(new URL(path, FIXTURES), 'utf8'),
    pathExists: () => false,
    write: (text) => { run.stdout += text; },
    warn: (text) => { run.stderr += text; },
    ...overrides,
  };
  const program = new Command('svirt').exitOverride().configureOutput({ writeOut: (t) => { run.stdout += t; }, writeErr: (t) => { run.stderr += t; } });
  registerPlanCommand(program, deps);
  try {
    await program.parseAsync(['node', 'svirt', 'plan', ...args]);
  } catch (e) {
    run.error = e;
  }
  return run;
}

function exitCode(run: Run): number | undefined {
  return run.error instanceof CliError ? run.error.exitCode : undefined;
}

describe('svirt plan --json', () => {
  it('prints path, label and remember for a running domain, using its live pair', async () => {
    const run = await plan(['--libvirt-xml', 'running-dynamic-live.xml', '--json']);
    expect(run.error).toBeUndefined();
    const image = 'system_u:object_r:svirt_image_t:s0:c392,c662';
    expect(JSON.parse(run.stdout)).toEqual([
      { path: '/var/lib/libvirt/images/web01.qcow2', label: image, remember: true },
      { path: '/dev/vg0/web01-data', label: null, remember: false },
      // serial and console share one log file: planned once.
      { path: '/var/log/libvirt/qemu/web01-serial0.log', label: image, remember: true },
      { path: '/var/lib/libvirt/qemu/channel/target/domain-7-web01/org.qemu.guest_agent.0', label: image, remember: true },
    ]);
    expect(run.stderr).toBe('');
  });

  it('uses the pair given with --level', async () => {
    const run = await plan(['--libvirt-xml', 'fedora-kvm-inactive.xml', '--json', '--level', 's0:c5,c10']);
    expect(JSON.parse(run.stdout)).toEqual([
      { path: '/var/lib/libvirt/images/fedora40.qcow2', label: 'system_u:object_r:svirt_image_t:s0:c5,c10', remember: true },
      { path: '/srv/cluster/quorum.raw', label: 'system_u:object_r:svirt_image_t:s0', remember: false },
      { path: '/var/lib/libvirt/images/Fedora-Workstation-Live-x86_64-40.iso', label: 'system_u:object_r:virt_content_t:s0', remember: true },
    ]);
  });

  it('draws a concrete preview pair for an inactive dynamic domain, and says so on stderr', async () => {
    const run = await plan(['--libvirt-xml', 'fedora-kvm-inactive.xml', '--json']);
    const rows = JSON.parse(run.stdout) as { path: string; label: string | null }[];
    const range = parseContext(rows[0]?.label ?? '').range;
    expect(range?.low.sensitivity).toBe(0);
    expect(range?.low.categories).toHaveLength(2);
    expect(range?.low.categories.every((c) => c >= 0 && c <= 1023)).toBe(true);
    expect(run.stderr).toMatch(/preview pair: each start draws its own/);
  });

  it('labels both ends of a pipe that has them, and notes the TCG fallback on stderr', async () => {
    const run = await plan(['--libvirt-xml', 'tcg-direct-kernel.xml', '--json', '--level', 's0:c1,c7'], {
      pathExists: (p) => p.endsWith('pipe1.in') || p.endsWith('pipe1.out'),
    });
    const image = 'system_u:object_r:svirt_image_t:s0:c1,c7';
    const content = 'system_u:object_r:virt_content_t:s0';
    expect(JSON.parse(run.stdout)).toEqual([
      { path: '/srv/guests/tiny/disk.raw', label: image, remember: true },
      { path: '/srv/guests/tiny/vmlinuz', label: content, remember: true },
      { path: '/srv/guests/tiny/initrd.gz', label: content, remember: true },
      { path: '/srv/guests/tiny/board.dtb', label: content, remember: true },
      { path: '/srv/guests/tiny/serial0.log', label: image, remember: true },
      { path: '/srv/guests/tiny/pipe1.in', label: image, remember: true },
      { path: '/srv/guests/tiny/pipe1.out', label: image, remember: true },
      { path: '/dev/ttyS3', label: 'system_u:object_r:tty_device_t:s0', remember: true },
      { path: '/srv/guests/tiny/console.sock', label: image, remember: true },
    ]);
    // The baselabel names svirt_tcg_t, so no fallback note here.
    expect(run.stderr).toBe('');
  });
});

describe('svirt plan (table)', () => {
  it('shows the process label, one row per file and what happens at stop', async () => {
    const run = await plan(['--libvirt-xml', 'running-dynamic-live.xml']);
    const out = run.stdout;
    expect(out).toMatch(/^VM web01 \(kvm, seclabel dynamic\) with policy default\n/);
    expect(out).toMatch(/process: system_u:system_r:svirt_t:s0:c392,c662 {2}\(the running domain's pair\)/);
    expect(out).toMatch(/^PATH +DEVICE +CLASS +LABEL +AT STOP$/m);
    expect(out).toMatch(/^\/var\/lib\/libvirt\/images\/web01\.qcow2 +disk vda +private +system_u:object_r:svirt_image_t:s0:c392,c662 +restore$/m);
    expect(out).toMatch(/^\/dev\/vg0\/web01-data +disk vdb +private +\(left alone\) +-$/m);
  });

  it('shows a static domain with its fixed label and keeps shared content', async () => {
    const run = await plan(['--libvirt-xml', 'static-relabel.xml']);
    expect(run.stdout).toMatch(/process: system_u:system_r:svirt_t:s0:c700,c900\n/);
    expect(run.stdout).toMatch(/^\/srv\/payroll\/keys\.raw +disk vdc +readonly +system_u:object_r:svirt_image_t:s0:c700,c900 +keep$/m);
  });

  it('says when a preview pair is shown, and lists notes', async () => {
    const tcg = buildPolicyProfile({ virtualImageContext: 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n' });
    const run = await plan(['--libvirt-xml', 'fedora-kvm-inactive.xml'], { loadProfile: () => tcg });
    expect(run.stdout).toMatch(/\(a preview pair: each start draws its own\)/);
    expect(run.stdout).toMatch(/built-in fallback/);
    expect(run.stdout).toMatch(/Notes:\n {2}- SELINUXTYPE not found/);
  });

  it('says so when there is nothing to label', async () => {
    const run = await plan(['--libvirt-xml', 'inline.xml'], { readFile: () => "<domain type='kvm'><name>bare</name><seclabel type='none'/></domain>" });
    expect(run.stdout).toMatch(/process: unconfined\n\nNo files to label\./);
  });
});

describe('svirt plan errors', () => {
  it('exits 2 on malformed XML, naming the file and the element', async () => {
    const run = await plan(['--libvirt-xml', 'x.xml'], { readFile: () => "<domain type='kvm'><name>t</name><devices><hostdev/></devices></domain>" });
    expect(exitCode(run)).toBe(EXIT.badInput);
    expect((run.error as Error).message).toMatch(/^x\.xml: domain\/devices\/hostdev: is not supported/);
  });

  it('exits 2 when the file cannot be read', async () => {
    const run = await plan(['--libvirt-xml', 'missing.xml']);
    expect(exitCode(run)).toBe(EXIT.badInput);
    expect((run.error as Error).message).toMatch(/^cannot read missing\.xml/);
  });

  it('exits 2 when the plan itself is refused (one file, two uses)', async () => {
    const xml = "<domain type='kvm'><name>t</name><devices>" +
      "<disk type='file'><source file='/img/a'/><target dev='vda'/></disk>" +
      "<disk type='file'><source file='/img/a'/><target dev='vdb'/><shareable/></disk></devices></domain>";
    const run = await plan(['--libvirt-xml', 'x.xml', '--level', 's0:c1,c2'], { readFile: () => xml });
    expect(exitCode(run)).toBe(EXIT.badInput);
    expect((run.error as Error).message).toMatch(/already in use by disk vda/);
  });

  it.each([
    [['--level', 'c1,c2'], /--level: invalid sensitivity/],
    [['--level', 's0:c1,c2000'], /outside the range c0\.c1023/],
  ])('exits 2 on a bad --level %j', async (extra, message) => {
    const run = await plan(['--libvirt-xml', 'fedora-kvm-inactive.xml', ...extra]);
    expect(exitCode(run)).toBe(EXIT.badInput);
    expect((run.error as Error).message).toMatch(message);
  });

  it('exits 2 on --level for a static domain, or one that differs from the live pair', async () => {
    expect(exitCode(await plan(['--libvirt-xml', 'static-relabel.xml', '--level', 's0:c1,c2']))).toBe(EXIT.badInput);
    const live = await plan(['--libvirt-xml', 'running-dynamic-live.xml', '--level', 's0:c1,c2']);
    expect((live.error as Error).message).toMatch(/runs at s0:c392,c662/);
  });

  it('exits 3 when the policy profile cannot be read', async () => {
    const failing = (): PolicyProfile => {
      throw new Error('virtual_image_context needs two lines');
    };
    const run = await plan(['--libvirt-xml', 'fedora-kvm-inactive.xml'], { loadProfile: failing });
    expect(exitCode(run)).toBe(EXIT.unknown);
    expect((run.error as Error).message).toMatch(/policy profile: virtual_image_context/);
  });

  it('requires --libvirt-xml', async () => {
    const run = await plan([]);
    expect((run.error as { code?: string }).code).toBe('commander.missingMandatoryOptionValue');
  });
});

describe('svirt plan registration', () => {
  it('is part of the svirt command tree, with help on the pair shown', () => {
    const command = buildCli().commands.find((c) => c.name() === 'plan');
    expect(command).toBeDefined();
    expect(command?.helpInformation()).toMatch(/--libvirt-xml <file>/);
    let help = '';
    command?.configureOutput({ writeOut: (t) => { help += t; } });
    command?.outputHelp();
    expect(help).toMatch(/preview pair is drawn with the same allocator/);
  });
});
