import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const HERE = path.dirname(new URL(import.meta.url).pathname);

async function lastJson(script: string): Promise<{ kernel: string; initrd: string; disk: string }> {
  const { stdout } = await run('node', [script], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { kernel: string; initrd: string; disk: string };
}

let copy: string | undefined;
afterAll(async () => {
  if (copy) await rm(copy, { recursive: true, force: true });
});

describe('npm run guest', () => {
  it('in a copied checkout prints the copy\'s own files, not the original\'s', async () => {
    const original = await lastJson(path.join(HERE, 'build-guest.mjs'));
    expect(original.kernel.startsWith(`${HERE}/`)).toBe(true);
    copy = await mkdtemp(path.join(tmpdir(), 'svirt-guest-copy-'));
    await cp(HERE, path.join(copy, 'guest'), { recursive: true, verbatimSymlinks: true });
    const copied = await lastJson(path.join(copy, 'guest', 'build-guest.mjs'));
    for (const key of ['kernel', 'initrd', 'disk'] as const) {
      expect(copied[key].startsWith(`${copy}/guest/cache/`)).toBe(true);
      expect(path.basename(copied[key])).toBe(path.basename(original[key]));
    }
  });
});
