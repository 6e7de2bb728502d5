import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KernelAccess, parseAccessReply, type AccessDecision } from './kernel-access';

// A stand-in selinuxfs with the class directories the kernel publishes (class/NAME/index, perms/PERM).
let fs: string;
const VM_A = 'system_u:system_r:svirt_t:s0:c1,c2';
const IMG_A = 'system_u:object_r:svirt_image_t:s0:c1,c2';

beforeAll(async () => {
  fs = await mkdtemp(path.join(os.tmpdir(), 'selinuxfs-'));
  const perms = { ioctl: 1, read: 2, write: 3, create: 4, getattr: 5, append: 11, open: 22 };
  await mkdir(path.join(fs, 'class', 'file', 'perms'), { recursive: true });
  await writeFile(path.join(fs, 'class', 'file', 'index'), '7\n');
  for (const [name, value] of Object.entries(perms)) await writeFile(path.join(fs, 'class', 'file', 'perms', name), `${value}\n`);
});
afterAll(async () => {
  await rm(fs, { recursive: true, force: true });
});

/** The kernel's answer fixed: only the selinuxfs `access` transaction itself is left out. */
class FixedAnswer extends KernelAccess {
  requests: string[] = [];
  constructor(selinuxfs: string, private readonly answer: string) {
    super(selinuxfs);
  }
  override computeAv(s: string, t: string, c: string): Promise<AccessDecision> {
    this.requests.push(`${s} ${t} ${c}`);
    return Promise.resolve(parseAccessReply(this.answer));
  }
}

describe('parseAccessReply', () => {
  it('reads allowed, decided, auditallow, auditdeny in hex, seqno in decimal, and flags', () => {
    expect(parseAccessReply('20040a ffffffff 0 fffafffb 12 1')).toEqual({
      allowed: 0x20040a, decided: 0xffffffff, auditallow: 0, auditdeny: 0xfffafffb, seqno: 12, flags: 1,
    });
  });

  it('takes an answer without flags, as libselinux does, and refuses anything else', () => {
    expect(parseAccessReply('2 ffffffff 0 ffffffff 3').flags).toBe(0);
    expect(() => parseAccessReply('')).toThrow(/unreadable/);
    expect(() => parseAccessReply('zz ffffffff 0 0 1 0')).toThrow(/unreadable/);
    expect(() => parseAccessReply('2 ffffffff 0 0 x 0')).toThrow(/unreadable/);
  });
});

describe('KernelAccess', () => {
  it('maps permission names to bits from the class directory (bit = 1 << (value - 1))', async () => {
    const info = await new KernelAccess(fs).classInfo('file');
    expect(info.index).toBe(7);
    expect(info.perms.get('read')).toBe(0x2);
    expect(info.perms.get('append')).toBe(0x400);
    expect(info.perms.get('open')).toBe(0x200000);
  });

  it('allows when every asked bit is in the access vector, and names the denied permissions otherwise', async () => {
    // open|read|getattr allowed, write and append not.
    const kernel = new FixedAnswer(fs, `${(0x200000 | 0x2 | 0x10).toString(16)} ffffffff 0 ffffffff 5 0`);
    expect(await kernel.check(VM_A, IMG_A, 'file', ['open', 'read'])).toMatchObject({ decision: 'allowed' });
    expect(await kernel.check(VM_A, IMG_A, 'file', ['open', 'read', 'write', 'append'])).toEqual({ decision: 'denied', reason: 'the kernel denies file { write append }' });
  });

  it('says when the subject\'s domain is permissive, while the decision stays the policy\'s', async () => {
    const kernel = new FixedAnswer(fs, '0 ffffffff 0 ffffffff 5 1');
    expect(await kernel.check(VM_A, IMG_A, 'file', ['read'])).toEqual({
      decision: 'denied', reason: 'the kernel denies file { read } (the subject\'s domain is permissive: not enforced)',
    });
  });

  it('reports a permission or class the kernel lacks, and an unreachable selinuxfs, as errors, never as denials', async () => {
    const kernel = new FixedAnswer(fs, '0 ffffffff 0 ffffffff 5 0');
    expect(await kernel.check(VM_A, IMG_A, 'file', ['map'])).toMatchObject({ decision: 'error', reason: expect.stringMatching(/no permission map in class file/) });
    expect(await kernel.check(VM_A, IMG_A, 'blk_file', ['read'])).toMatchObject({ decision: 'error', reason: expect.stringMatching(/no usable class blk_file/) });
    const missing = new KernelAccess(path.join(fs, 'not-mounted'));
    expect(await missing.check(VM_A, IMG_A, 'file', ['read'])).toMatchObject({ decision: 'error' });
    // The fake's class exists but it has no access file: the question cannot be asked.
    expect(await new KernelAccess(fs).check(VM_A, IMG_A, 'file', ['read'])).toMatchObject({ decision: 'error', reason: expect.stringMatching(/did not answer/) });
  });

  it('keeps one request per subject, target and class, whichever permissions are asked of it', async () => {
    const real = new KernelAccess(fs);
    const first = real.computeAv('bad context', IMG_A, 'file');
    expect(real.computeAv('bad context', IMG_A, 'file')).toBe(first);
    await expect(first).rejects.toThrow(/not a context/);
  });
});
