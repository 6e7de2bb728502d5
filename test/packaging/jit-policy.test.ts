import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain JS module of the bin entry (no types; it must load before any bundle).
import { jitDeniedBySelinux } from '../../bin/jit-policy.js';

// The kernel's own answer (selinuxfs `access`) is asked in the SELinux test host (npm run test:selinux),
// where the CLI runs without --jitless and must cause no execmem denial; here, the two ends.
describe('whether the CLI may use the JIT', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('keeps the JIT where SELinux is off (no selinuxfs)', () => {
    expect(jitDeniedBySelinux('/nonexistent/selinuxfs')).toBe(false);
  });

  it('runs without the JIT when SELinux is on but the kernel cannot be asked', () => {
    const fs = mkdtempSync(path.join(tmpdir(), 'svirt-selinuxfs-'));
    dirs.push(fs);
    mkdirSync(path.join(fs, 'class/process/perms'), { recursive: true });
    writeFileSync(path.join(fs, 'enforce'), '1');
    writeFileSync(path.join(fs, 'class/process/index'), '2');
    writeFileSync(path.join(fs, 'class/process/perms/execmem'), '14');
    // No `access` file: the question fails.
    expect(jitDeniedBySelinux(fs, '/nonexistent/attr/current')).toBe(true);
  });
});
