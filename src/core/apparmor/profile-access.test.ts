import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { globToRegExp, parseProfile, profileGrants, profileIncludes, ProfileSyntaxError } from './profile-access';
import { profilePathProblem } from './profile-path';
import { renderVmProfile, type VmProfileInput } from './vm-profile';

const BASE = readFileSync(path.resolve(__dirname, '../../../assets/apparmor/abstractions/svirt-qemu'), 'utf8');
// What the VM profile includes, as a Debian host has it (shortened: the variables the base uses).
const INCLUDES = new Map([
  ['tunables/global', '@{PROC}=/proc/\n@{sys}=/sys/\n@{multiarch}=*-linux-gnu*\n@{pid}={[1-9],[1-9][0-9]}\n@{tid}=@{pid}\n@{HOME}=@{HOMEDIRS}/*/ /root/\n@{HOMEDIRS}=/home/\n'],
  ['abstractions/svirt-qemu', BASE],
  ['abstractions/base', '  /etc/ld.so.cache r,\n  /{usr/,}lib{,32,64}/** mr,\n  deny /home/** w,\n'],
]);

function vmProfile(files: VmProfileInput['files'], dirs: string[] = ['/var/lib/svirt-manager/run/1000-a']) {
  return renderVmProfile({ name: 'svirt-vm-1000-a', vm: '1000/a', files, dirs, base: 'abstractions/svirt-qemu' });
}

const ask = (text: string, p: string, mode: string, owned = false) => profileGrants(parseProfile(text, INCLUDES), { path: p, mode, owned });

describe('a VM profile read back to answer an access question', () => {
  const text = vmProfile([
    { path: '/var/lib/images/a.img', use: 'private' },
    { path: '/var/lib/images/base.iso', use: 'readonly' },
  ]);

  it('grants a private disk read and write, by the rule that names it', () => {
    const answer = ask(text, '/var/lib/images/a.img', 'rw');
    expect(answer.granted).toBe(true);
    expect(answer.allowedBy.map((r) => r.text)).toEqual(['"/var/lib/images/a.img" rwk']);
    expect(answer.reason).toContain('"/var/lib/images/a.img" rwk');
  });

  it('grants read-only content read, and not write', () => {
    expect(ask(text, '/var/lib/images/base.iso', 'r').granted).toBe(true);
    const write = ask(text, '/var/lib/images/base.iso', 'w');
    expect(write.granted).toBe(false);
    expect(write.missing).toEqual(['w']);
  });

  it('grants another VM\'s disk nothing, and says no rule grants it', () => {
    const answer = ask(text, '/var/lib/images/b.img', 'r');
    expect(answer.granted).toBe(false);
    expect(answer.reason).toBe('no rule of svirt-vm-1000-a grants r on /var/lib/images/b.img');
  });

  it('grants what is below its run directory, and not the directory\'s neighbours', () => {
    expect(ask(text, '/var/lib/svirt-manager/run/1000-a/qmp.sock', 'rw').granted).toBe(true);
    expect(ask(text, '/var/lib/svirt-manager/run/1000-a', 'r').granted).toBe(false);
    expect(ask(text, '/var/lib/svirt-manager/run/1000-ab/qmp.sock', 'r').granted).toBe(false);
  });

  it('reads the rules of its includes, with the tunables\' variables', () => {
    const sysfs = ask(text, '/sys/devices/system/cpu/cpu0/online', 'r');
    expect(sysfs.granted).toBe(true);
    expect(sysfs.allowedBy[0]?.source).toBe('abstractions/svirt-qemu');
    expect(ask(text, '/usr/lib/x86_64-linux-gnu/qemu/block-curl.so', 'm').granted).toBe(true);
    expect(ask(text, '/usr/lib64/libc.so.6', 'm').granted).toBe(true);
    expect(profileIncludes(text)).toEqual(['tunables/global', 'abstractions/svirt-qemu']);
  });

  it('lets a deny rule win over an allow rule for the same file, wherever it is written', () => {
    const home = vmProfile([{ path: '/home/u/a.img', use: 'private' }]);
    const answer = ask(home, '/home/u/a.img', 'rw');
    expect(answer.granted).toBe(false);
    expect(answer.missing).toEqual(['w']);
    expect(answer.deniedBy.map((r) => r.text)).toEqual(['deny /home/** w']);
    expect(answer.reason).toContain('a deny rule wins');
    expect(ask(home, '/home/u/a.img', 'r').granted).toBe(true);
  });

  it('counts an owner rule only for a file the process owns', () => {
    expect(ask(text, '/proc/42/mountinfo', 'r').granted).toBe(false);
    expect(ask(text, '/proc/42/mountinfo', 'r', true).granted).toBe(true);
  });

  it('refuses an include it was not given, unless the include is "if exists"', () => {
    expect(() => parseProfile(text)).toThrow(ProfileSyntaxError);
    expect(parseProfile('include if exists <local/x>\nprofile p { /a r, }').rules).toHaveLength(1);
  });
});

describe('file names with glob characters in a VM profile', () => {
  const names = ['/home/u/*.img', '/home/u/**', '/home/u/?.img', '/home/u/[ab].img', '/home/u/{a,b}.img', '/home/u/@{HOME}x', '/home/u/^x', '/home/u/a"b\\c.img'];

  it.each(names)('%s grants only itself', (name) => {
    const text = vmProfile([{ path: name, use: 'private' }]);
    const parsed = parseProfile(text, INCLUDES);
    expect(profileGrants(parsed, { path: name, mode: 'r' }).granted).toBe(true);
    for (const other of ['/home/u/b.img', '/home/u/a.img', '/home/u/x/y.img', '/home/u/secret.txt', '/home/u/rootx', '/home/u/x']) {
      expect(profileGrants(parsed, { path: other, mode: 'r' }).granted, other).toBe(false);
    }
  });

  it('any name the product may write grants that name and no name that differs from it', () => {
    const part = fc.constantFrom('*', '**', '?', '[', ']', '[ab]', '{', '}', '{a,b}', '^', '"', '\\', '@{HOME}', ',', '#', ' ', 'a', 'b', '/', '.', 'é');
    const name = fc.array(part, { minLength: 1, maxLength: 6 }).map((parts) => `/srv/${parts.join('')}`).filter((n) => profilePathProblem(n) === undefined);
    fc.assert(fc.property(name, name, (mine, other) => {
      const parsed = parseProfile(vmProfile([{ path: mine, use: 'private' }], []), INCLUDES);
      expect(profileGrants(parsed, { path: mine, mode: 'rw' }).granted).toBe(true);
      if (other !== mine) expect(profileGrants(parsed, { path: other, mode: 'r' }).granted).toBe(false);
    }), { numRuns: 300 });
  });
});

describe('AppArmor globs', () => {
  it('reads * and ** as one path component and any depth, neither matching the empty name after a slash', () => {
    expect(globToRegExp('/d/*').test('/d/x')).toBe(true);
    expect(globToRegExp('/d/*').test('/d/x/y')).toBe(false);
    expect(globToRegExp('/d/*').test('/d/')).toBe(false);
    expect(globToRegExp('/d/**').test('/d/x/y')).toBe(true);
    expect(globToRegExp('/d/**').test('/d/')).toBe(false);
    expect(globToRegExp('/d/a*').test('/d/a')).toBe(true);
  });

  it('reads ?, classes and alternatives, and a backslash as making the next character plain', () => {
    expect(globToRegExp('/d/?').test('/d/x')).toBe(true);
    expect(globToRegExp('/d/?').test('/d//')).toBe(false);
    expect(globToRegExp('/d/[ab]').test('/d/b')).toBe(true);
    expect(globToRegExp('/d/[^ab]').test('/d/b')).toBe(false);
    expect(globToRegExp('/d/{x,y/z}').test('/d/y/z')).toBe(true);
    expect(globToRegExp('/d/\\*').test('/d/x')).toBe(false);
    expect(globToRegExp('/d/\\*').test('/d/*')).toBe(true);
  });
});

describe('the rules of a profile text', () => {
  it('reads both rule orders, the file keyword, qualifiers and exec modes, and skips other rules', () => {
    const parsed = parseProfile([
      'profile p flags=(complain) {',
      '  # a comment, /etc/shadow r,',
      '  file r /etc/a,',
      '  audit owner /etc/b rw,',
      '  /usr/bin/x ix,',
      '  network inet stream,',
      '  signal (receive) peer=unconfined,',
      '  /etc/c r, # trailing comment',
      '  ^hat { /etc/d r, }',
      '  profile child { /etc/e r, }',
      '}',
    ].join('\n'));
    expect(parsed.name).toBe('p');
    expect(parsed.rules.map((r) => r.glob)).toEqual(['/etc/a', '/etc/b', '/usr/bin/x', '/etc/c']);
    expect(profileGrants(parsed, { path: '/usr/bin/x', mode: 'rx' }).missing).toEqual(['r']);
    expect(profileGrants(parsed, { path: '/etc/shadow', mode: 'r' }).granted).toBe(false);
    expect(profileGrants(parsed, { path: '/etc/d', mode: 'r' }).granted).toBe(false);
  });

  it('picks the named profile of a text that holds several', () => {
    const text = 'profile one { /one r, }\nprofile two { /two r, }\n';
    expect(profileGrants(parseProfile(text, new Map(), 'two'), { path: '/two', mode: 'r' }).granted).toBe(true);
    expect(() => parseProfile(text, new Map(), 'three')).toThrow(/no profile three/);
  });

  it('keeps a rule with an undefined variable as matching nothing, and says so', () => {
    const parsed = parseProfile('profile p { @{NOPE}/x r, }');
    expect(parsed.unreadable).toEqual([{ rule: '@{NOPE}/x r', problem: '@{NOPE} is not defined' }]);
    expect(profileGrants(parsed, { path: '/x', mode: 'r' }).granted).toBe(false);
  });

  it('refuses a text whose blocks or quotes do not close, and a mode that is not letters of rwaklmx', () => {
    expect(() => parseProfile('profile p { /a r,')).toThrow(ProfileSyntaxError);
    expect(() => parseProfile('profile p { "/a r, }')).toThrow(ProfileSyntaxError);
    expect(() => profileGrants(parseProfile('profile p { /a r, }'), { path: '/a', mode: 'read' })).toThrow(/letters/);
  });
});
