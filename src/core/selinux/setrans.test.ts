import { describe, expect, it } from 'vitest';
import { ContextSyntaxError } from './context';
import { EMPTY_TRANSLATION_TABLE, parseSetrans, SetransSyntaxError } from './setrans';

// Debian's shipped file plus one category name written the long way.
const DEBIAN = `#
# Multi-Category Security translation table for SELinux
# Uncomment the following to disable translation libary
# disable=1
s0=SystemLow
s0-s0:c0.c1023=SystemLow-SystemHigh
s0:c0.c1023=SystemHigh
s0:c0,c1,c2=Trio   # listed one by one, canonical is s0:c0.c2

s0:c0.c36 = TopSecretRecipe
`;

describe('parseSetrans', () => {
  const table = parseSetrans(DEBIAN);

  it('reads level and range lines, canonicalizing the raw side', () => {
    expect(table.disabled).toBe(false);
    expect(table.entries.map((e) => [e.raw, e.name, e.isRange])).toEqual([
      ['s0', 'SystemLow', false],
      ['s0-s0:c0.c1023', 'SystemLow-SystemHigh', true],
      ['s0:c0.c1023', 'SystemHigh', false],
      ['s0:c0.c2', 'Trio', false],
      ['s0:c0.c36', 'TopSecretRecipe', false],
    ]);
    expect(table.unsupported).toEqual([]);
  });

  it('translates levels and ranges to names by canonical match', () => {
    expect(table.toName('s0')).toBe('SystemLow');
    expect(table.toName('s0:c0.c1023')).toBe('SystemHigh');
    expect(table.toName('s0-s0:c0.c1023')).toBe('SystemLow-SystemHigh');
    expect(table.toName('s0:c0,c1,c2')).toBe('Trio');
    expect(table.toName('s0:c2,c1,c0')).toBe('Trio');
    // low == high is one level
    expect(table.toName('s0:c0.c2-s0:c0.c2')).toBe('Trio');
  });

  it('names a range side by side when both sides have names, as mcstrans does', () => {
    expect(table.toName('s0-s0:c0.c36')).toBe('SystemLow-TopSecretRecipe');
    expect(table.toName('s0:c0.c2-s0:c0.c1023')).toBe('Trio-SystemHigh');
  });

  it('leaves anything without a name unchanged', () => {
    expect(table.toName('s0:c1,c2')).toBe('s0:c1,c2');
    expect(table.toName('s0-s0:c5')).toBe('s0-s0:c5');
    expect(table.toName('not a level')).toBe('not a level');
    expect(table.fromName('Unknown')).toBe('Unknown');
    expect(table.fromName('SystemLow-Unknown')).toBe('SystemLow-Unknown');
  });

  it('translates names back to canonical levels and ranges', () => {
    expect(table.fromName('SystemLow')).toBe('s0');
    expect(table.fromName('Trio')).toBe('s0:c0.c2');
    expect(table.fromName('SystemLow-SystemHigh')).toBe('s0-s0:c0.c1023');
    expect(table.fromName('SystemLow-TopSecretRecipe')).toBe('s0-s0:c0.c36');
    expect(table.fromName('Trio-Trio')).toBe('s0:c0.c2');
    // high must dominate low
    expect(table.fromName('SystemHigh-SystemLow')).toBe('SystemHigh-SystemLow');
  });

  it('round-trips every entry', () => {
    for (const entry of table.entries) {
      expect(table.fromName(table.toName(entry.raw))).toBe(entry.raw);
    }
  });

  it('replaces the range of a context', () => {
    expect(table.translateContext('system_u:object_r:svirt_image_t:s0:c0,c1,c2')).toBe('system_u:object_r:svirt_image_t:Trio');
    expect(table.translateContext('unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023')).toBe('unconfined_u:unconfined_r:unconfined_t:SystemLow-SystemHigh');
    expect(table.translateContext('system_u:system_r:svirt_t:s0:c5,c1')).toBe('system_u:system_r:svirt_t:s0:c1,c5');
    expect(table.translateContext('system_u:system_r:svirt_t')).toBe('system_u:system_r:svirt_t');
    expect(() => table.translateContext('system_u:system_r')).toThrow(ContextSyntaxError);
  });

  it('reads a context whose range is a name back to canonical form', () => {
    expect(table.untranslateContext('system_u:object_r:svirt_image_t:SystemHigh')).toBe('system_u:object_r:svirt_image_t:s0:c0.c1023');
    expect(table.untranslateContext('u:r:t:SystemLow-SystemHigh')).toBe('u:r:t:s0-s0:c0.c1023');
    expect(table.untranslateContext('u:r:t:s0:c2,c1')).toBe('u:r:t:s0:c1,c2');
    expect(() => table.untranslateContext('u:r:t:Nonsense')).toThrow(ContextSyntaxError);
  });

  it('skips and reports the advanced syntax, including the words of a modifier group', () => {
    const advanced = parseSetrans(`
Domain=NATOEXAMPLE
Include=/etc/selinux/mls/setrans.d/*.conf
s0=SystemLow
Base=Sensitivity Levels
s1=Confidential
ModifierGroup=Releasability
Whitespace=- ,
Join=,
Prefix=REL TO
Default=c200.c511
~c200.c511=USA
c0.c200!c201.c511
c0>c1
Domain=Other
s0:c7=Seven
`);
    expect(advanced.entries.map((e) => `${e.raw}=${e.name}`)).toEqual(['s0=SystemLow', 's1=Confidential', 's0:c7=Seven']);
    expect(advanced.unsupported.map((u) => u.line)).toEqual([2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(advanced.unsupported.find((u) => u.line === 13)?.reason).toMatch(/constraint/);
    expect(advanced.unsupported.find((u) => u.line === 12)?.reason).toMatch(/modifier word/);
    expect(advanced.toName('s0:c7')).toBe('Seven');
  });

  it('keeps the first definition of a raw level or a name and reports the later one', () => {
    const dup = parseSetrans('s0:c1=One\ns0:c1=Uno\ns0:c2=One\n');
    expect(dup.toName('s0:c1')).toBe('One');
    expect(dup.fromName('Uno')).toBe('s0:c1');
    expect(dup.fromName('One')).toBe('s0:c1');
    expect(dup.shadowed.map((s) => s.line)).toEqual([2, 3]);
  });

  it('translates nothing when disable=1', () => {
    const off = parseSetrans('disable=1\ns0=SystemLow\n');
    expect(off.disabled).toBe(true);
    expect(off.toName('s0')).toBe('s0');
    expect(off.fromName('SystemLow')).toBe('SystemLow');
  });

  it.each([
    ['s0 SystemLow', 2, /expected raw=Name/],
    ['=SystemLow', 2, /nothing before/],
    ['s0=', 2, /nothing after/],
    ['s0:c5.c2=Backwards', 2, /backwards/],
    ['x9=Bad', 2, /not a sensitivity/],
    ['s0:c1=s0:c2', 2, /is itself a level/],
  ])('rejects %j with its line number', (line, lineNo, reason) => {
    let error: unknown;
    try {
      parseSetrans(`s0=SystemLow\n${line}\n`);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SetransSyntaxError);
    expect((error as SetransSyntaxError).line).toBe(lineNo);
    expect((error as Error).message).toMatch(reason);
  });

  it('accepts CRLF line ends', () => {
    expect(parseSetrans('s0=SystemLow\r\ns0:c0.c1023=SystemHigh\r\n').toName('s0:c0.c1023')).toBe('SystemHigh');
  });

  it('has an empty table for hosts without the file', () => {
    expect(EMPTY_TRANSLATION_TABLE.toName('s0')).toBe('s0');
    expect(EMPTY_TRANSLATION_TABLE.entries).toEqual([]);
  });
});
