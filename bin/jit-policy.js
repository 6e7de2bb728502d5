// Whether this process's SELinux domain may have executable anonymous memory (`process execmem`), which
// V8's JIT needs. Debian's policy denies it to unconfined_t unless the allow_execmem boolean is on, so
// the CLI, started by a desktop user there, must run with --jitless. Asked of the kernel (selinuxfs
// `access`, as security_compute_av does) before the CLI bundle loads, in plain string code, so nothing
// here is compiled to machine code first. The mode does not matter: a permissive kernel would only log
// the same denial.
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

/** true: the kernel's policy denies execmem to this domain (or SELinux is on and cannot tell); false: JIT is fine. */
export function jitDeniedBySelinux(selinuxfs = '/sys/fs/selinux', self = '/proc/self/attr/current') {
  let index;
  let bit;
  try {
    readFileSync(`${selinuxfs}/enforce`, 'utf8');
    index = readFileSync(`${selinuxfs}/class/process/index`, 'utf8').trim();
    bit = 2 ** (Number(readFileSync(`${selinuxfs}/class/process/perms/execmem`, 'utf8').trim()) - 1);
  } catch {
    // No selinuxfs: SELinux is off, nothing to deny.
    return false;
  }
  try {
    const context = readFileSync(self, 'utf8').split('\0')[0].trim();
    const fd = openSync(`${selinuxfs}/access`, 'r+');
    try {
      writeSync(fd, `${context} ${context} ${index}`);
      const reply = Buffer.alloc(256);
      const n = readSync(fd, reply, 0, reply.length, null);
      const allowed = parseInt(reply.subarray(0, n).toString('latin1').split(' ')[0], 16);
      if (!Number.isFinite(allowed) || !Number.isFinite(bit)) return true;
      return Math.floor(allowed / bit) % 2 === 0;
    } finally {
      closeSync(fd);
    }
  } catch {
    // SELinux is on but the question failed: run without JIT rather than be killed by a denial.
    return true;
  }
}
