/**
 * The kernel's own access decisions, asked the way libselinux's security_compute_av() asks: write
 * "SCONTEXT TCONTEXT CLASS" (the class's number) to selinuxfs's `access` transaction file and read back
 * "allowed decided auditallow auditdeny seqno flags" (hex, but seqno decimal) on the same open file. One
 * request answers every permission of a class for a subject/target pair, so it is made once per triple
 * and cached; class numbers come from `class/NAME/index`, permission bits from `class/NAME/perms/PERM`
 * (bit = 1 << (value - 1)).
 *
 * The answer is the security server's access vector: it does not depend on the enforcing mode, so it is
 * the same on a permissive host (where the old per-permission selinux_check_access said "allowed" to
 * everything). A failure to ask (no selinuxfs, a context the policy does not know, a class or permission
 * it lacks, no `security compute_av` permission) is an error, never a denial.
 */
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AccessVerdict } from '../../core/selinux/audit-report';
import { SELINUXFS } from './host-selinux';

export interface AccessDecision {
  readonly allowed: number;
  readonly decided: number;
  readonly auditallow: number;
  readonly auditdeny: number;
  readonly seqno: number;
  readonly flags: number;
}

/** The subject's domain is permissive (av_decision flags): its denials are logged, not enforced. */
export const AVD_FLAGS_PERMISSIVE = 0x1;

export class KernelAccessError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KernelAccessError';
  }
}

const HEX = /^[0-9a-fA-F]{1,8}$/;

/** Parses the `access` reply; flags may be absent (older kernels), as libselinux accepts. */
export function parseAccessReply(text: string): AccessDecision {
  const fields = text.replace(/\0.*$/s, '').trim().split(/\s+/);
  const [allowed, decided, auditallow, auditdeny, seqno, flags] = fields;
  if (fields.length < 5 || fields.length > 6 || ![allowed, decided, auditallow, auditdeny].every((f) => f !== undefined && HEX.test(f))) {
    throw new KernelAccessError(`unreadable answer from selinuxfs access: ${JSON.stringify(text.slice(0, 120))}`);
  }
  if (!/^\d{1,10}$/.test(seqno ?? '') || (flags !== undefined && !HEX.test(flags))) {
    throw new KernelAccessError(`unreadable answer from selinuxfs access: ${JSON.stringify(text.slice(0, 120))}`);
  }
  const hex = (f: string | undefined) => (f === undefined ? 0 : parseInt(f, 16) >>> 0);
  return { allowed: hex(allowed), decided: hex(decided), auditallow: hex(auditallow), auditdeny: hex(auditdeny), seqno: Number(seqno), flags: hex(flags) };
}

/** Contexts and class names go into one space-separated line: nothing in them may split or end it. */
const WORD = /^[^\s\0]{1,4096}$/;

export class KernelAccess {
  private readonly classes = new Map<string, Promise<{ index: number; perms: Map<string, number> }>>();
  private readonly vectors = new Map<string, Promise<AccessDecision>>();

  constructor(private readonly selinuxfs: string = SELINUXFS) {}

  /** The kernel's number for a class and the bit of each of its permissions. */
  classInfo(tclass: string): Promise<{ index: number; perms: Map<string, number> }> {
    if (!/^[A-Za-z0-9_]+$/.test(tclass)) return Promise.reject(new KernelAccessError(`not a class name: ${JSON.stringify(tclass)}`));
    let info = this.classes.get(tclass);
    if (!info) {
      info = (async () => {
        const dir = join(this.selinuxfs, 'class', tclass);
        try {
          const index = Number((await readFile(join(dir, 'index'), 'utf8')).trim());
          const names = await readdir(join(dir, 'perms'));
          const values = await Promise.all(names.map(async (name) => Number((await readFile(join(dir, 'perms', name), 'utf8')).trim())));
          if (!Number.isInteger(index) || index < 1 || index > 0xffff) throw new Error(`index ${index}`);
          const perms = new Map<string, number>();
          names.forEach((name, i) => {
            const value = values[i] as number;
            if (!Number.isInteger(value) || value < 1 || value > 32) throw new Error(`permission ${name} has value ${value}`);
            perms.set(name, (1 << (value - 1)) >>> 0);
          });
          return { index, perms };
        } catch (err) {
          throw new KernelAccessError(`the kernel's policy has no usable class ${tclass} (${dir}): ${(err as Error).message}`, { cause: err });
        }
      })();
      this.classes.set(tclass, info);
    }
    return info;
  }

  /** The access vector for a subject, target and class: one transaction on selinuxfs `access`. */
  computeAv(scontext: string, tcontext: string, tclass: string): Promise<AccessDecision> {
    const key = `${scontext}\n${tcontext}\n${tclass}`;
    let vector = this.vectors.get(key);
    if (!vector) {
      vector = (async () => {
        if (!WORD.test(scontext) || !WORD.test(tcontext)) throw new KernelAccessError(`not a context: ${JSON.stringify(WORD.test(scontext) ? tcontext : scontext)}`);
        const { index } = await this.classInfo(tclass);
        const file = join(this.selinuxfs, 'access');
        let handle;
        try {
          handle = await open(file, 'r+');
          const request = Buffer.from(`${scontext} ${tcontext} ${index}`, 'utf8');
          await handle.write(request, 0, request.length, null);
          const reply = Buffer.alloc(4096);
          const { bytesRead } = await handle.read(reply, 0, reply.length, null);
          return parseAccessReply(reply.subarray(0, bytesRead).toString('utf8'));
        } catch (err) {
          if (err instanceof KernelAccessError) throw err;
          throw new KernelAccessError(`the kernel did not answer ${scontext} → ${tcontext}:${tclass} (${file}): ${(err as Error).message}`, { cause: err });
        } finally {
          await handle?.close();
        }
      })();
      this.vectors.set(key, vector);
    }
    return vector;
  }

  /** Whether every permission in `perms` is allowed: an access-oracle verdict ('error' when it cannot be told). */
  async check(scontext: string, tcontext: string, tclass: string, perms: readonly string[]): Promise<AccessVerdict> {
    try {
      const [{ perms: bits }, av] = await Promise.all([this.classInfo(tclass), this.computeAv(scontext, tcontext, tclass)]);
      const unknown = perms.filter((p) => !bits.has(p));
      if (unknown.length > 0) return { decision: 'error', reason: `the kernel's policy has no permission ${unknown.join(', ')} in class ${tclass}` };
      const denied = perms.filter((p) => ((av.allowed & (bits.get(p) as number)) >>> 0) === 0);
      const permissiveDomain = (av.flags & AVD_FLAGS_PERMISSIVE) !== 0 ? ' (the subject\'s domain is permissive: not enforced)' : '';
      return denied.length === 0
        ? { decision: 'allowed', reason: `the kernel allows ${tclass} { ${perms.join(' ')} }${permissiveDomain}` }
        : { decision: 'denied', reason: `the kernel denies ${tclass} { ${denied.join(' ')} }${permissiveDomain}` };
    } catch (err) {
      return { decision: 'error', reason: (err as Error).message };
    }
  }
}
