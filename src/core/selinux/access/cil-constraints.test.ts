import { describe, expect, it } from 'vitest';
import { parseCilConstraints, selectCilConstraintLines } from './cil-constraints';
import { formatConstraintTree } from './constraint-expression';

describe('CIL constraints', () => {
  const cil = [
    '(allow svirt_t svirt_image_t (file (read)))',
    '(mlsconstrain (file (ioctl read write)) (or (and (dom h1 h2) (eq l2 h2)) (neq t1 mcs_constrained_type)))',
    '(constrain (process (transition)) (or (eq r1 r2) (and (eq t1 (a_t b_t)) (not (eq r2 system_r)))))',
  ].join('\n');

  it('selects the constraint statements of a CIL policy', () => {
    expect(selectCilConstraintLines(cil).split('\n')).toHaveLength(2);
  });

  it('reads prefix expressions into the same trees the evaluator uses', () => {
    const parsed = parseCilConstraints(cil);
    expect(parsed.unparsedLines).toEqual([]);
    expect(parsed.rules.map((r) => [r.kind, r.tclass, r.perms, r.reading.ok ? formatConstraintTree(r.reading.tree) : r.reading.reason])).toEqual([
      ['mlsconstrain', 'file', ['ioctl', 'read', 'write'], '(((h1 dom h2) and (l2 == h2)) or (t1 != mcs_constrained_type))'],
      ['constrain', 'process', ['transition'], '((r1 == r2) or ((t1 == { a_t b_t }) and not (r2 == system_r)))'],
    ]);
  });

  it('keeps statements it cannot read', () => {
    const parsed = parseCilConstraints('(constrain (file (read)) (eq u1))\n(constrain file_perms (eq u1 u2))\n(constrain (file (read)) (eq u1 u2)');
    expect(parsed.rules).toEqual([]);
    expect(parsed.unparsedLines).toHaveLength(3);
  });
});
