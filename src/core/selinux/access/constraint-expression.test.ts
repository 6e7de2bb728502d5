import { describe, expect, it } from 'vitest';
import { parseContext } from '../context';
import {
  CONSTRAINT_DIALECT, evaluateConstraint, formatConstraintTree, parseConstraints, readConstraintExpression,
  type ConstraintNames, type ConstraintTree,
} from './constraint-expression';
import { renderAsSetools, tokenizeInfix } from './setools-infix';

function read(text: string): ConstraintTree {
  const reading = readConstraintExpression(text);
  if (!reading.ok) throw new Error(reading.reason);
  return reading.tree;
}

const names: ConstraintNames = {
  hasUser: (n) => ['system_u', 'unconfined_u', 'staff_u'].includes(n),
  hasRole: (n) => ['system_r', 'object_r'].includes(n),
  typesOf: (n) => {
    if (n === 'mcs_constrained_type') return new Set(['svirt_t']);
    if (['svirt_t', 'virtd_t', 'svirt_image_t'].includes(n)) return new Set([n]);
    return undefined;
  },
};

const subjects = (s: string, t: string) => ({ source: parseContext(s), target: parseContext(t) });

describe('reading seinfo-printed constraint expressions', () => {
  it('reads the MCS file constraint as seinfo prints it', () => {
    expect(formatConstraintTree(read('h1 dom h2 or ( t1 != mcs_constrained_type )'))).toBe('((h1 dom h2) or (t1 != mcs_constrained_type))');
    expect(formatConstraintTree(read('h1 dom h2 and ( l2 == h2 ) or ( t1 != mcs_constrained_type )'))).toBe(
      '(((h1 dom h2) and (l2 == h2)) or (t1 != mcs_constrained_type))',
    );
  });

  it('reads a long or-chain (UBAC) and name sets', () => {
    const tree = read('u1 == u2 or ( u1 == system_u ) or ( t1 == { svirt_t virtd_t } ) or ( t2 != mcs_constrained_type )');
    expect(formatConstraintTree(tree)).toBe('((((u1 == u2) or (u1 == system_u)) or (t1 == { svirt_t virtd_t })) or (t2 != mcs_constrained_type))');
  });

  it('reads not', () => {
    expect(formatConstraintTree(read('not ( u1 == u2 )'))).toBe('not (u1 == u2)');
  });

  it('prints back exactly what setools prints, for the trees it reads', () => {
    const text = 'u1 == u2 or ( u1 == system_u ) or ( t1 == { svirt_t virtd_t } ) or ( t2 != mcs_constrained_type )';
    expect(renderAsSetools(read(text), CONSTRAINT_DIALECT)).toEqual(tokenizeInfix(text));
  });

  it('refuses a printing that two different trees produce', () => {
    // setools prints both (a or b) and c and a or (b and c) this way.
    const reading = readConstraintExpression('u1 == u2 or ( u2 == system_u ) and ( t1 == svirt_t )');
    expect(reading.ok).toBe(false);
    expect(reading.ok ? '' : reading.reason).toMatch(/^ambiguous as printed by setools \(2 different readings\)/);
  });

  it('accepts readings that differ only in how an associative chain nests', () => {
    expect(readConstraintExpression('u1 == u2 and ( r1 == r2 ) and ( t1 == t2 )').ok).toBe(true);
  });

  it('refuses what setools cannot have printed', () => {
    expect(readConstraintExpression('u1 == or u2').ok).toBe(false);
    expect(readConstraintExpression('( u1 == u2').ok).toBe(false);
  });
});

describe('evaluating constraints', () => {
  const vm = 'system_u:system_r:svirt_t:s0:c1,c2';
  const mcs = read('h1 dom h2 or ( t1 != mcs_constrained_type )');

  it('evaluates level dominance on the subject high and target high levels', () => {
    expect(evaluateConstraint(mcs, subjects(vm, 'system_u:object_r:svirt_image_t:s0:c1,c2'), names)).toEqual({ value: true });
    expect(evaluateConstraint(mcs, subjects(vm, 'system_u:object_r:svirt_image_t:s0:c1'), names)).toEqual({ value: true });
    expect(evaluateConstraint(mcs, subjects(vm, 'system_u:object_r:svirt_image_t:s0:c3'), names)).toEqual({ value: false });
    expect(evaluateConstraint(mcs, subjects('system_u:system_r:virtd_t:s0', 'system_u:object_r:svirt_image_t:s0:c3'), names)).toEqual({ value: true });
  });

  it('evaluates eq, domby and incomp on the named levels', () => {
    const both = subjects('system_u:system_r:virtd_t:s0-s0:c0.c3', 'system_u:object_r:svirt_image_t:s0:c1-s0:c1,c2');
    expect(evaluateConstraint(read('l2 == h2'), both, names).value).toBe(false);
    expect(evaluateConstraint(read('l1 domby l2'), both, names).value).toBe(true);
    expect(evaluateConstraint(read('h1 incomp l2'), both, names).value).toBe(false);
    expect(evaluateConstraint(read('l1 != h1'), both, names).value).toBe(true);
  });

  it('compares users and roles by name and sets', () => {
    const s = subjects('system_u:system_r:svirt_t:s0', 'staff_u:object_r:svirt_image_t:s0');
    expect(evaluateConstraint(read('u1 == u2'), s, names).value).toBe(false);
    expect(evaluateConstraint(read('u2 == { staff_u unconfined_u }'), s, names).value).toBe(true);
    expect(evaluateConstraint(read('r1 != r2'), s, names).value).toBe(true);
  });

  it('is undecided on names the policy lacks, unless the other side settles it', () => {
    const s = subjects(vm, 'system_u:object_r:svirt_image_t:s0');
    const unknownName = evaluateConstraint(read('t1 == nosuch_attr'), s, names);
    expect(unknownName.value).toBeUndefined();
    expect(evaluateConstraint(read('u1 == u2 or ( t1 == nosuch_attr )'), s, names).value).toBe(true);
    expect(evaluateConstraint(read('r1 dom r2'), s, names).value).toBeUndefined();
    expect(evaluateConstraint(read('t3 == svirt_t'), s, names).value).toBeUndefined();
  });
});

describe('parseConstraints', () => {
  it('reads seinfo --constrain lines, single and set permissions, and checks the announced count', () => {
    const parsed = parseConstraints(`
Constraints: 2
   constrain fd use (u1 == u2 or ( u1 == system_u )); 
   mlsconstrain file { open read } (h1 dom h2 or ( t1 != mcs_constrained_type )); 
`);
    expect(parsed.announced).toBe(2);
    expect(parsed.rules.map((r) => [r.kind, r.tclass, r.perms])).toEqual([
      ['constrain', 'fd', ['use']],
      ['mlsconstrain', 'file', ['open', 'read']],
    ]);
    expect(parsed.rules.every((r) => r.reading.ok)).toBe(true);
  });

  it('keeps lines it cannot split', () => {
    expect(parseConstraints('   constrain file { read }\n').unparsedLines).toEqual(['constrain file { read }']);
  });
});
