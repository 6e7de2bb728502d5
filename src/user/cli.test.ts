import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };

const run = promisify(execFile);

// The built CLI through its package bin, as a user runs it (npm test builds first).
describe('svirt CLI', () => {
  it('prints its version', async () => {
    const { stdout } = await run(process.execPath, ['bin/svirt.js', 'version']);
    expect(stdout.trim()).toBe(`svirt ${pkg.version}`);
  });

  it('lists the commands in --help', async () => {
    const { stdout } = await run(process.execPath, ['bin/svirt.js', '--help']);
    expect(stdout).toMatch(/Usage: svirt/);
    expect(stdout).toMatch(/version/);
  });

  it('gives concrete SELinux labels in the help of its SELinux questions and of relabel', async () => {
    // commander wraps long lines; the words are what matter.
    const help = async (command: string): Promise<string> => (await run(process.execPath, ['bin/svirt.js', command, '--help'])).stdout.replace(/\s+/g, ' ');
    const access = await help('access');
    expect(access).toContain('e.g. system_u:system_r:svirt_t:s0:c1,c2');
    expect(access).toContain('e.g. system_u:object_r:svirt_image_t:s0:c1,c2');
    expect(await help('context')).toContain('e.g. system_u:object_r:svirt_image_t:s0:c2,c1,c0');
    const relabel = await help('relabel');
    expect(relabel).toContain('--shared shared read/write image (under SELinux: svirt_image_t:s0)');
    expect(relabel).toContain('--readonly shared read-only content (under SELinux: virt_content_t:s0)');
  });

  it('names an example label when --seclabel static: has none (exit 2)', async () => {
    await expect(run(process.execPath, ['bin/svirt.js', 'define', '--name', 'x', '--kernel', '/nonexistent', '--seclabel', 'static:'])).rejects.toMatchObject({
      code: 2, stderr: expect.stringContaining('--seclabel static: needs a label, e.g. static:system_u:system_r:svirt_t:s0:c1,c2'),
    });
  });

  it('exits 2 on an unknown command', async () => {
    await expect(run(process.execPath, ['bin/svirt.js', 'frobnicate'])).rejects.toMatchObject({ code: 2 });
  });

  it('refuses audit --compare-offline on a kernel without SELinux, naming the flag (exit 2)', async () => {
    await expect(run(process.execPath, ['bin/svirt.js', 'audit', '--compare-offline'])).rejects.toMatchObject({
      code: 2, stderr: expect.stringMatching(/--compare-offline needs a kernel with SELinux on/),
    });
  });
});
