import { describe, expect, it } from 'vitest';
import { describeFileError, inUserWords } from './user-words';

describe('inUserWords', () => {
  it('names the CLI flag for each definition field, the store prefix dropped', () => {
    expect(inUserWords('defining "a": invalid VM definition: memoryMiB must be at most 1048576 (found 99999999)', 'cli'))
      .toBe('--memory must be at most 1048576 (found 99999999)');
    expect(inUserWords('updating "a": invalid VM definition: vcpus must be at least 1 (found 0); name must start with a letter or digit', 'cli'))
      .toBe('--vcpus must be at least 1 (found 0); --name must start with a letter or digit');
    expect(inUserWords('start request: invalid VM definition: disks[1].path is the same file as disks[0].path (/a.img)', 'cli'))
      .toBe('--disk #2 is the same file as --disk #1 (/a.img)');
    expect(inUserWords('network.portForwards[0].hostPort must be at least 1024 (found 80)', 'cli')).toBe('--forward #1 must be at least 1024 (found 80)');
    expect(inUserWords('boot.kernel: refusing "/etc/x": it lies under the system directory /etc', 'cli')).toBe('--kernel: refusing "/etc/x": it lies under the system directory /etc');
    expect(inUserWords('seclabel.label: invalid context in "garbage"', 'cli')).toBe('--seclabel: invalid context in "garbage"');
  });

  it('translates the helper\'s own words: its schema errors, its options and its VM ids', () => {
    expect(inUserWords('start: /allowUnconfined must be boolean', 'cli')).toBe('start: --allow-unconfined must be boolean');
    expect(inUserWords('start: /definition/memoryMiB must be integer', 'cli')).toBe('start: --memory must be integer');
    expect(inUserWords('/boot/vmlinuz does not exist', 'cli')).toBe('/boot/vmlinuz does not exist');
    expect(inUserWords('not confined: SELinux is disabled; start with allowUnconfined to run it anyway', 'cli')).toBe('not confined: SELinux is disabled; start with --allow-unconfined to run it anyway');
    expect(inUserWords('VM 1000/web is paused, not running', 'cli')).toBe('VM "web" is paused, not running');
  });

  it('names the app\'s form fields for the app', () => {
    expect(inUserWords('defining "a": invalid VM definition: memoryMiB must be at least 16 (found 8)', 'app')).toBe('Memory must be at least 16 (found 8)');
    expect(inUserWords('disks[0].path /x.img is already the private disk of VM "b"', 'app')).toBe('disk 1 /x.img is already the private disk of VM "b"');
  });

  it('leaves plain words alone: a field that is an English word counts only where a problem starts', () => {
    const text = 'VM "web" has no display; the name of its network is kept';
    expect(inUserWords(text, 'cli')).toBe(text);
  });
});

describe('describeFileError', () => {
  it('says in words why a file cannot be used, with no errno or syscall', () => {
    const err = (code: string) => Object.assign(new Error(`${code}: no such file or directory, realpath '/x'`), { code });
    expect(describeFileError('/x', err('ENOENT'))).toBe('/x does not exist');
    expect(describeFileError('/x', err('EACCES'))).toBe('/x cannot be read by you (permission denied)');
  });
});
