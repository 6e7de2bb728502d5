import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../cli';
import { loadPolicyProfile, readPolicyFiles } from '../../security/selinux/selinux-files';

let root: string;

async function selinuxDir(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(root, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  await mkdir(dir, { recursive: true });
  return dir;
}

const SETRANS = 's0=SystemLow\ns0-s0:c0.c1023=SystemLow-SystemHigh\ns0:c0.c1023=SystemHigh\ns0:c0,c1,c2=Trio\nDomain=Ignored\n';

let debian: string;
let noSetrans: string;
let brokenSetrans: string;
let absent: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'svirt-context-'));
  debian = await selinuxDir('debian', {
    config: 'SELINUX=permissive\nSELINUXTYPE=default\n',
    'default/setrans.conf': SETRANS,
    'default/contexts/virtual_domain_context': 'system_u:system_r:svirt_t:s0\n',
    'default/contexts/virtual_image_context': 'system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:virt_content_t:s0\n',
  });
  noSetrans = await selinuxDir('no-setrans', { config: 'SELINUXTYPE=targeted\n' });
  brokenSetrans = await selinuxDir('broken', { config: 'SELINUXTYPE=default\n', 'default/setrans.conf': 's0=SystemLow\nnonsense\n' });
  absent = join(root, 'does-not-exist');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Runs `svirt ARGS` in-process through main(), capturing what it writes. */
async function svirt(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await main(['node', 'svirt', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('svirt context', () => {
  it('prints the canonical form and the translation setrans.conf defines', async () => {
    const run = await svirt('context', 'system_u:object_r:svirt_image_t:s0:c2,c1,c0', '--selinux-dir', debian);
    expect(run).toEqual({
      code: 0,
      stdout: 'system_u:object_r:svirt_image_t:s0:c0.c2\ntranslated: system_u:object_r:svirt_image_t:Trio\n',
      stderr: '',
    });
  });

  it('translates a range whose sides have names', async () => {
    const run = await svirt('context', 'unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023', '--selinux-dir', debian);
    expect(run.stdout).toBe('unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023\ntranslated: unconfined_u:unconfined_r:unconfined_t:SystemLow-SystemHigh\n');
  });

  it('prints only the canonical form when no name is defined', async () => {
    const run = await svirt('context', 'system_u:system_r:svirt_t:s0:c12,c345', '--selinux-dir', debian);
    expect(run).toEqual({ code: 0, stdout: 'system_u:system_r:svirt_t:s0:c12,c345\n', stderr: '' });
  });

  it('accepts a translated range and prints it raw', async () => {
    const run = await svirt('context', 'system_u:object_r:svirt_image_t:SystemHigh', '--selinux-dir', debian);
    expect(run.stdout).toBe('system_u:object_r:svirt_image_t:s0:c0.c1023\ntranslated: system_u:object_r:svirt_image_t:SystemHigh\n');
  });

  it('works without setrans.conf or without /etc/selinux at all', async () => {
    for (const dir of [noSetrans, absent]) {
      const run = await svirt('context', 'u:r:t:s0:c1,c0', '--selinux-dir', dir);
      expect(run).toEqual({ code: 0, stdout: 'u:r:t:s0:c0,c1\n', stderr: '' });
    }
  });

  it('warns about a malformed setrans.conf and still prints the canonical form', async () => {
    const run = await svirt('context', 'u:r:t:s0', '--selinux-dir', brokenSetrans);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('u:r:t:s0\n');
    expect(run.stderr).toMatch(/warning: .*broken\/default\/setrans.conf: setrans.conf line 2: expected raw=Name.*not translating/);
  });

  it.each([
    ['system_u:object_r', /invalid context .* expected user:role:type/],
    ['u:r:t:s0:c5.c2', /runs backwards/],
    ['u:r:t:NoSuchName', /invalid sensitivity in "u:r:t:NoSuchName"/],
  ])('rejects %j with exit 2 and the reason', async (input, reason) => {
    const run = await svirt('context', input, '--selinux-dir', debian);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(reason);
    expect(run.stderr).toMatch(/^svirt: /);
  });

  it('refuses a category past the policy\'s last one (c1023), naming the range to use', async () => {
    const run = await svirt('context', 'system_u:object_r:svirt_image_t:s0:c1,c1024', '--selinux-dir', debian);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain("category c1024 is past the policy's last category c1023");
    const last = await svirt('context', 'system_u:object_r:svirt_image_t:s0:c1023', '--selinux-dir', noSetrans);
    expect(last.code).toBe(0);
  });

  it('prints the version for --version, -V and the version command alike', async () => {
    const runs = [await svirt('--version'), await svirt('-V'), await svirt('version')];
    for (const run of runs) {
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^svirt \d+\.\d+\.\d+\n$/);
    }
  });

  it('exits 2 without an argument', async () => {
    const run = await svirt('context');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/missing required argument 'context'/);
  });
});

describe('readPolicyFiles', () => {
  it('reads the config, the virtual_*_context files and setrans.conf of the configured policy', async () => {
    const files = await readPolicyFiles(debian);
    expect(files.setransConf).toBe(SETRANS);
    expect(files.virtualDomainContext).toBe('system_u:system_r:svirt_t:s0\n');
    const profile = await loadPolicyProfile(debian);
    expect(profile.policyType).toBe('default');
    expect(profile.fallback).toBe(false);
    expect(profile.imageContext.type).toBe('svirt_image_t');
  });

  it('leaves missing files out, and falls back in the profile', async () => {
    expect(await readPolicyFiles(absent)).toEqual({});
    expect(await readPolicyFiles(noSetrans)).toEqual({ selinuxConfig: 'SELINUXTYPE=targeted\n' });
    expect((await loadPolicyProfile(absent)).fallback).toBe(true);
  });

  it('refuses a SELINUXTYPE that is not a plain directory name', async () => {
    const dir = await selinuxDir('traversal', { config: 'SELINUXTYPE=../../tmp\n' });
    await expect(readPolicyFiles(dir)).rejects.toThrow(/SELINUXTYPE "..\/..\/tmp" is not a policy name/);
  });
});
