import { describe, expect, it } from 'vitest';
import { parseTeRules } from './te-rules';

describe('parseTeRules', () => {
  it('reads allow and dontaudit rules, single and set permissions, and conditions', () => {
    const parsed = parseTeRules([
      'allow svirt_t svirt_image_t:file { append getattr open read };',
      'allow NetworkManager_t NetworkManager_t:filesystem associate;',
      'dontaudit svirt_t etc_t:file write;',
      'allow svirt_t nfs_t:file { getattr read }; [ virt_use_nfs ]:True',
      'allow svirt_t nfs_t:dir search; [ ! secure_mode && virt_use_nfs ]:False',
    ].join('\n'));
    expect(parsed.unparsedLines).toEqual([]);
    expect(parsed.rules).toEqual([
      { kind: 'allow', source: 'svirt_t', target: 'svirt_image_t', tclass: 'file', perms: ['append', 'getattr', 'open', 'read'] },
      { kind: 'allow', source: 'NetworkManager_t', target: 'NetworkManager_t', tclass: 'filesystem', perms: ['associate'] },
      { kind: 'dontaudit', source: 'svirt_t', target: 'etc_t', tclass: 'file', perms: ['write'] },
      { kind: 'allow', source: 'svirt_t', target: 'nfs_t', tclass: 'file', perms: ['getattr', 'read'], condition: { text: 'virt_use_nfs', whenTrue: true } },
      { kind: 'allow', source: 'svirt_t', target: 'nfs_t', tclass: 'dir', perms: ['search'], condition: { text: '! secure_mode && virt_use_nfs', whenTrue: false } },
    ]);
  });

  it('expands source, target and class sets', () => {
    const parsed = parseTeRules('allow { a_t b_t } c_t:{ file dir } read;');
    expect(parsed.rules.map((r) => `${r.source} ${r.target}:${r.tclass}`)).toEqual(['a_t c_t:file', 'a_t c_t:dir', 'b_t c_t:file', 'b_t c_t:dir']);
  });

  it('keeps what a binary policy never prints as unparsed, and ignores other rule kinds', () => {
    const parsed = parseTeRules('allow a_t ~b_t:file read;\nallow a_t b_t:file *;\nauditallow a_t b_t:file read;\ntype_transition a_t b_t:file c_t;');
    expect(parsed.rules).toEqual([]);
    expect(parsed.unparsedLines).toHaveLength(2);
  });
});
