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

  it('exits 2 on an unknown command', async () => {
    await expect(run(process.execPath, ['bin/svirt.js', 'frobnicate'])).rejects.toMatchObject({ code: 2 });
  });

  it('refuses audit --compare-offline on a kernel without SELinux, naming the flag (exit 2)', async () => {
    await expect(run(process.execPath, ['bin/svirt.js', 'audit', '--compare-offline'])).rejects.toMatchObject({
      code: 2, stderr: expect.stringMatching(/--compare-offline needs a kernel with SELinux on/),
    });
  });
});
