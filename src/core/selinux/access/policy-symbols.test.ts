import { describe, expect, it } from 'vitest';
import { FIXTURE_SEINFO } from '../../../../test/support/access-policy-fixture';
import { formatRange } from '../context';
import { parseSeinfoSymbols } from './policy-symbols';

describe('parseSeinfoSymbols', () => {
  const symbols = parseSeinfoSymbols(FIXTURE_SEINFO);

  it('reads every section without problems', () => {
    expect(symbols.problems).toEqual([]);
  });

  it('reads types with aliases and attributes', () => {
    expect(symbols.types.get('svirt_image_t')).toEqual(['file_type', 'virt_image_type']);
    expect(symbols.aliases.get('older_image_t')).toBe('svirt_image_t');
    expect(symbols.types.get('virtd_t')).toEqual(['can_change_process_identity', 'domain']);
    expect([...symbols.attributes]).toContain('mcs_constrained_type');
  });

  it('reads classes with their inherited common permissions', () => {
    expect([...(symbols.classes.get('file') ?? [])].sort()).toEqual(['entrypoint', 'getattr', 'open', 'read', 'write']);
    expect([...(symbols.classes.get('process') ?? [])].sort()).toEqual(['signal', 'transition']);
  });

  it('reads users with roles and ranges, roles with types, booleans, levels and permissive types', () => {
    const system = symbols.users.get('system_u');
    expect([...(system?.roles ?? [])]).toEqual(['system_r']);
    expect(system?.range && formatRange(system.range)).toBe('s0-s0:c0.c3');
    expect(symbols.users.get('user_u')?.range && formatRange(symbols.users.get('user_u')!.range!)).toBe('s0');
    expect([...(symbols.roles.get('user_r') ?? [])]).toEqual(['user_t']);
    expect(symbols.roles.get('object_r')?.size).toBe(0);
    expect(symbols.booleans.get('virt_use_nfs')).toBe(false);
    expect([...symbols.sensitivities]).toEqual([0]);
    expect([...symbols.categories]).toEqual([0, 1, 2, 3]);
    expect([...symbols.permissiveTypes]).toEqual(['permissive_t']);
  });

  it('reports sections whose announced count differs from what was read, and missing sections', () => {
    const broken = parseSeinfoSymbols(FIXTURE_SEINFO.replace('Booleans: 2', 'Booleans: 3').replace(/\nUsers: 3[\s\S]*$/, '\n'));
    expect(broken.problems).toEqual(expect.arrayContaining(['seinfo printed no "Users" section', 'seinfo announced 3 booleans but 2 were read']));
  });
});
