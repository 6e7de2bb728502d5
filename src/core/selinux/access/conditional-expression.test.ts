import { describe, expect, it } from 'vitest';
import { conditionBooleans, evaluateCondition, readCondition, type ConditionTree } from './conditional-expression';

function read(text: string): ConditionTree {
  const reading = readCondition(text);
  if (!reading.ok) throw new Error(reading.reason);
  return reading.tree;
}

const states = (values: Record<string, boolean>) => (name: string) => values[name];

describe('boolean conditions as sesearch prints them', () => {
  it('reads single booleans, negations and chains', () => {
    expect(evaluateCondition(read('virt_use_nfs'), states({ virt_use_nfs: true }))).toBe(true);
    expect(evaluateCondition(read('! secure_mode_setbool && ! secure_mode_policyload'), states({ secure_mode_setbool: false, secure_mode_policyload: false }))).toBe(true);
    const chain = read('( httpd_builtin_scripting && httpd_unified && httpd_enable_cgi )');
    expect([...conditionBooleans(chain)].sort()).toEqual(['httpd_builtin_scripting', 'httpd_enable_cgi', 'httpd_unified']);
    expect(evaluateCondition(chain, states({ httpd_builtin_scripting: true, httpd_unified: true, httpd_enable_cgi: false }))).toBe(false);
  });

  it('reads xor, equality and a negated subexpression', () => {
    expect(evaluateCondition(read('a ^ b'), states({ a: true, b: true }))).toBe(false);
    expect(evaluateCondition(read('a == b'), states({ a: false, b: false }))).toBe(true);
    expect(evaluateCondition(read('! ( a || b )'), states({ a: false, b: false }))).toBe(true);
  });

  it('is undefined when a boolean it needs has no state, and decided when it does not need it', () => {
    expect(evaluateCondition(read('a && b'), states({ a: true }))).toBeUndefined();
    expect(evaluateCondition(read('a && b'), states({ a: false }))).toBe(false);
    expect(evaluateCondition(read('a || b'), states({ b: true }))).toBe(true);
  });

  it('refuses a printing two different trees produce', () => {
    // Two different four-boolean trees print this way; three-boolean ones never collide.
    const reading = readCondition('( a && b || c && d )');
    expect(reading.ok ? '' : reading.reason).toMatch(/^ambiguous as printed by setools/);
  });
});
