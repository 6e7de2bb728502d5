import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { profilePathProblem, ProfilePathError, quoteProfilePath, unquoteProfilePath } from './profile-path';
import { readFileSync } from 'node:fs';
import { parseProfile, profileGrants } from './profile-access';
import { isVmProfileName, parseAppArmorLabel, renderVmProfile, vmProfileName, type VmProfileInput } from './vm-profile';

// The real parser, compiling without a kernel (-Q): present wherever .ci/run installed apparmor.
const PARSER = ['/usr/sbin/apparmor_parser', '/sbin/apparmor_parser'].find((p) => existsSync(p));
const ASSETS = path.resolve(__dirname, '../../../assets/apparmor');

/** Compiles a profile without loading it; the -D dumps go to stderr. */
function parse(text: string, ...flags: string[]): string {
  const r = spawnSync(PARSER as string, ['-Q', '-I', ASSETS, ...flags], { input: text, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`apparmor_parser failed (${r.status}): ${r.stderr}`);
  return r.stderr;
}

/**
 * The strings each DFA of `apparmor_parser -D dfa-states` accepts, when each is one straight chain of
 * single bytes; undefined for a DFA with any other transition (a class, a loop, a branch).
 */
function literalDfas(dump: string): (Buffer | undefined)[] {
  return dump.split(/^\{1\} <== .*$/m).slice(1).map((dfa) => {
    const next = new Map<number, { byte: number; to: number }[]>();
    let state = 0;
    for (const line of dfa.split('\n')) {
      const head = /^\{(\d+)\} perms:/.exec(line);
      if (head) {
        state = Number(head[1]);
        continue;
      }
      if (!/^\s+\S/.test(line)) continue;
      const t = /^\s+(?:\S+ |\\ {2})?0x([0-9a-f]{1,2}) -> \{(\d+)\}/.exec(line);
      if (!t || state === 0) return undefined;
      next.set(state, [...(next.get(state) ?? []), { byte: parseInt(t[1] as string, 16), to: Number(t[2]) }]);
    }
    const bytes: number[] = [];
    const seen = new Set<number>();
    for (let s = 1; next.has(s);) {
      const out = next.get(s) as { byte: number; to: number }[];
      if (out.length !== 1 || seen.has(s)) return undefined;
      seen.add(s);
      bytes.push((out[0] as { byte: number }).byte);
      s = (out[0] as { to: number }).to;
    }
    // Every state with a transition was walked: nothing branches off the chain.
    return seen.size === next.size ? Buffer.from(bytes) : undefined;
  });
}

const tricky = fc.constantFrom('*', '**', '?', '[', ']', '[ab]', '{', '}', '{a,b}', '^', '"', '\\', '\\\\', '@', '@{', '@{HOME}', '\\x41', '\\012',
  '\\n', ' ', '\t', '\n', ',', '#', '!', '(', ')', '|', '+', '.', '..', '$', "'", '<', '>', '=', '&', '~', 'é', '日本', 'a', 'b', '/', '//', '-', 'x\\');
const fileName = fc.array(fc.oneof(tricky, fc.string({ unit: 'binary', maxLength: 4 })), { minLength: 1, maxLength: 8 }).map((parts) => `/${parts.join('')}`);

describe('profile paths', () => {
  it('quotes every character the parser reads specially, and reads back what it wrote', () => {
    expect(quoteProfilePath('/home/u/*.img')).toBe('"/home/u/\\*.img"');
    expect(quoteProfilePath('/home/u/@{HOME} [1]^x"y\\z?')).toBe('"/home/u/@\\{HOME\\} \\[1\\]\\^x\\"y\\\\z\\?"');
    fc.assert(fc.property(fileName, (p) => {
      if (profilePathProblem(p) !== undefined) return;
      expect(unquoteProfilePath(quoteProfilePath(p))).toBe(p);
    }));
  });

  it('refuses names no rule can match exactly: control characters, relative and non-canonical paths', () => {
    for (const bad of ['/home/u/a\\', '/home/u/a\nb', '/home/u/a\tb', 'a.img', '/home/u//a', '/home/u/./a', '/home/u/../a', '/home/u/', '/home/u/\x7f']) {
      expect(() => quoteProfilePath(bad)).toThrow(ProfilePathError);
    }
    expect(() => quoteProfilePath('/a\nb')).toThrow(/control character/);
  });

  it('reads back nothing it would not write: an unescaped glob or a stray escape is no rule', () => {
    for (const q of ['"/a/*"', '"/a/?"', '"/a/{b,c}"', '"/a\\n"', '"/a\\x41"', '"/a\\"', '"relative"', '/a']) expect(unquoteProfilePath(q)).toBeUndefined();
  });

  it.skipIf(PARSER === undefined)('no file name widens a rule: apparmor_parser compiles each quoted name to a DFA that accepts that name alone', () => {
    fc.assert(fc.property(fc.array(fileName, { minLength: 1, maxLength: 25 }), (names) => {
      const ok = names.filter((n) => profilePathProblem(n) === undefined);
      for (const n of names) {
        if (!ok.includes(n)) expect(() => quoteProfilePath(n)).toThrow(ProfilePathError);
      }
      if (ok.length === 0) return;
      const text = ['abi <abi/3.0>,', ...ok.map((n, i) => `profile t${String(i).padStart(3, '0')} {\n  ${quoteProfilePath(n)} r,\n}`)].join('\n');
      const dfas = literalDfas(parse(text, '-D', 'dfa-states'));
      expect(dfas).toHaveLength(ok.length);
      const accepted = dfas.map((d) => d?.toString('hex') ?? 'not a literal').sort();
      expect(accepted).toEqual(ok.map((n) => Buffer.from(n).toString('hex')).sort());
    }), { numRuns: 60 });
  });

  it.skipIf(PARSER === undefined)('the check itself sees a widened rule: an unescaped glob compiles to more than a chain', () => {
    expect(literalDfas(parse('abi <abi/3.0>,\nprofile t {\n  "/home/u/*.img" r,\n}\n', '-D', 'dfa-states'))).toEqual([undefined]);
    expect(literalDfas(parse('abi <abi/3.0>,\nprofile t {\n  "/home/u/{a,b}" r,\n}\n', '-D', 'dfa-states'))).toEqual([undefined]);
  });
});

describe('a VM profile', () => {
  const input: VmProfileInput = {
    name: vmProfileName(1000, 'web'),
    vm: '1000/web',
    base: 'abstractions/svirt-qemu',
    files: [
      { path: '/home/u/vms/web disk [1].qcow2', use: 'private' },
      { path: '/home/u/shared.img', use: 'shared' },
      { path: '/home/u/base.qcow2', use: 'readonly' },
      { path: '/home/u/install*.iso', use: 'readonly' },
      { path: '/home/u/vmlinuz', use: 'boot' },
      { path: '/usr/share/OVMF/OVMF_CODE.fd', use: 'boot' },
      { path: '/home/u/shared.img', use: 'readonly' },
    ],
    dirs: ['/var/lib/svirt-manager/run/1000-web', '/var/lib/svirt-manager-display/1000-web'],
  };

  it('names each VM by its owner and name, and only such names are the product\'s', () => {
    expect(vmProfileName(1000, 'web')).toBe('svirt-vm-1000-web');
    expect(isVmProfileName('svirt-vm-1000-web')).toBe(true);
    for (const other of ['libvirt-1234', 'svirt-vm-a/b', 'svirt-vm-x^hat', 'svirt-vm-a:ns', '/usr/bin/qemu']) expect(isVmProfileName(other)).toBe(false);
    for (const bad of ['../x', 'a b', 'a/b', '^x', '']) expect(() => vmProfileName(1000, bad)).toThrow(ProfilePathError);
  });

  it('grants private and shared disks read-write, read-only content and boot files read, and its own directories, nothing else', () => {
    const base = readFileSync(path.join(ASSETS, 'abstractions/svirt-qemu'), 'utf8').replace(/^\s*include <abstractions\/base>$/m, '');
    const parsed = parseProfile(renderVmProfile(input), new Map([['tunables/global', '@{multiarch}=*-linux-gnu*\n@{PROC}=/proc/\n@{sys}=/sys/\n@{pid}=[0-9]*\n@{tid}=@{pid}\n'], ['abstractions/svirt-qemu', base]]));
    const grant = (p: string, a: 'read' | 'write') => profileGrants(parsed, { path: p, mode: a === 'read' ? 'r' : 'rw' }).granted;
    expect(grant('/home/u/vms/web disk [1].qcow2', 'write')).toBe(true);
    expect(grant('/home/u/shared.img', 'write')).toBe(true);
    expect(grant('/home/u/base.qcow2', 'read')).toBe(true);
    expect(grant('/home/u/base.qcow2', 'write')).toBe(false);
    expect(grant('/home/u/vmlinuz', 'read')).toBe(true);
    expect(grant('/var/lib/svirt-manager/run/1000-web/qmp.sock', 'write')).toBe(true);
    // The glob-looking name grants that one file; neighbours and other VMs' directories get nothing.
    expect(grant('/home/u/install*.iso', 'read')).toBe(true);
    expect(grant('/home/u/install-2.iso', 'read')).toBe(false);
    expect(grant('/var/lib/svirt-manager/run/1000-web2/qmp.sock', 'read')).toBe(false);
    expect(grant('/home/u/secret.txt', 'read')).toBe(false);
  });

  it('refuses a VM whose file cannot be named exactly, naming the file', () => {
    expect(() => renderVmProfile({ ...input, files: [{ path: '/home/u/a\nb.img', use: 'private' }] })).toThrow(/a\\nb\.img.*control character/);
  });

  it.skipIf(PARSER === undefined)('compiles with apparmor_parser, with the product\'s base abstraction', () => {
    expect(() => parse(renderVmProfile(input))).not.toThrow();
  });
});

describe('AppArmor labels as the kernel writes them', () => {
  it('reads a profile name and its mode, and unconfined', () => {
    expect(parseAppArmorLabel('svirt-vm-0-vma (enforce)\n')).toEqual({ profile: 'svirt-vm-0-vma', mode: 'enforce' });
    expect(parseAppArmorLabel('/usr/bin/man (complain)')).toEqual({ profile: '/usr/bin/man', mode: 'complain' });
    expect(parseAppArmorLabel('unconfined\0')).toEqual({ profile: 'unconfined', mode: 'unconfined' });
    expect(parseAppArmorLabel('system_u:system_r:svirt_t:s0:c1,c2')).toBeUndefined();
  });
});
