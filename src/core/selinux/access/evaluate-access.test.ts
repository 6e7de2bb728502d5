import { describe, expect, it } from 'vitest';
import { fixturePolicy, FIXTURE_SEINFO, FIXTURE_SESEARCH } from '../../../../test/support/access-policy-fixture';
import { parseContext } from '../context';
import { evaluateAccess, type AccessAnswer, type EvaluateOptions } from './evaluate-access';

const policy = fixturePolicy();
const VM = 'system_u:system_r:svirt_t:s0:c1,c2';

function ask(scontext: string, tcontext: string, tclass: string, perms: string[], options?: EvaluateOptions, p = policy): AccessAnswer {
  return evaluateAccess(p, { scontext: parseContext(scontext), tcontext: parseContext(tcontext), tclass, perms }, options);
}

describe('evaluateAccess', () => {
  it('allows what a TE rule on an attribute grants and the MCS constraint permits', () => {
    const answer = ask(VM, 'system_u:object_r:svirt_image_t:s0:c1,c2', 'file', ['read', 'write']);
    expect(answer).toMatchObject({ decision: 'allowed', source: 'policy:fixture' });
    expect(answer.reason).toContain('allow svirt_t virt_image_type:file');
    expect(ask(VM, 'system_u:object_r:svirt_image_t:s0', 'file', ['read']).decision).toBe('allowed');
  });

  it('denies another VM\'s pair by the mlsconstrain, naming it', () => {
    const answer = ask(VM, 'system_u:object_r:svirt_image_t:s0:c3', 'file', ['read']);
    expect(answer.decision).toBe('denied');
    expect(answer.reason).toBe('constraint denied: mlsconstrain file { read } ((h1 dom h2) or (t1 != mcs_constrained_type))');
    expect(answer.details?.failedConstraints).toHaveLength(1);
  });

  it('applies constraints only to the permissions they list', () => {
    // getattr is not in the mlsconstrain, so another pair's image can still be stat'ed.
    expect(ask(VM, 'system_u:object_r:svirt_image_t:s0:c3', 'file', ['getattr']).decision).toBe('allowed');
  });

  it('leaves domains without the constrained attribute alone', () => {
    expect(ask('system_u:system_r:virtd_t:s0', 'system_u:object_r:etc_t:s0:c3', 'file', ['read']).decision).toBe('allowed');
  });

  it('denies a permission no rule grants, saying a dontaudit silences it', () => {
    const answer = ask(VM, 'system_u:object_r:etc_t:s0', 'file', ['read', 'write']);
    expect(answer.decision).toBe('denied');
    expect(answer.reason).toMatch(/^missing TE allow rule: svirt_t → etc_t:file \{ write \}; dontaudit rule: the denial of \{ write \} is not logged$/);
    expect(answer.details).toMatchObject({ missingTe: ['write'], dontaudited: ['write'] });
  });

  it('follows conditional rules by the boolean state, and names a boolean that would allow it', () => {
    const off = ask(VM, 'system_u:object_r:nfs_t:s0', 'file', ['read']);
    expect(off.decision).toBe('denied');
    expect(off.details?.enablingBooleans).toEqual([{ name: 'virt_use_nfs', value: true }]);
    expect(off.reason).toContain('allowed if boolean virt_use_nfs were on');
    const on = ask(VM, 'system_u:object_r:nfs_t:s0', 'file', ['read'], { booleanStates: new Map([['virt_use_nfs', true]]) });
    expect(on.decision).toBe('allowed');
    expect(on.reason).toContain('[ virt_use_nfs ]:True');
  });

  it('honours rules in the False branch of a condition', () => {
    const user = 'user_u:user_r:user_t:s0';
    expect(ask(user, 'system_u:object_r:etc_t:s0', 'file', ['write']).decision).toBe('denied');
    expect(ask(user, 'system_u:object_r:etc_t:s0', 'file', ['write'], { booleanStates: new Map([['secure_mode', true]]) }).decision).toBe('allowed');
  });

  it('answers unknown when the rule that would decide depends on a boolean of unknown state', () => {
    const answer = ask('user_u:user_r:user_t:s0', 'system_u:object_r:nfs_t:s0', 'file', ['read']);
    expect(answer.decision).toBe('unknown');
    expect(answer.reason).toContain('boolean nfs_home_dirs is not known');
    // A definite denial of another permission still decides the request.
    expect(ask('user_u:user_r:user_t:s0', 'system_u:object_r:nfs_t:s0', 'file', ['read', 'write']).decision).toBe('denied');
  });

  it('matches `self` rules only on the subject\'s own type', () => {
    expect(ask(VM, VM, 'process', ['signal']).decision).toBe('allowed');
    expect(ask(VM, 'system_u:system_r:virtd_t:s0', 'process', ['signal']).decision).toBe('denied');
  });

  it('evaluates user constraints on process transitions', () => {
    expect(ask('system_u:system_r:virtd_t:s0', 'unconfined_u:system_r:svirt_t:s0', 'process', ['transition']).decision).toBe('allowed');
  });

  it('resolves type aliases to the primary type', () => {
    expect(ask(VM, 'system_u:object_r:old_image_t:s0:c1,c2', 'file', ['read']).decision).toBe('allowed');
  });

  it('allows in permissive domains, saying what the policy alone would do', () => {
    const answer = ask('system_u:system_r:permissive_t:s0', 'system_u:object_r:svirt_image_t:s0', 'file', ['write']);
    expect(answer.decision).toBe('allowed');
    expect(answer.reason).toMatch(/^permissive domain permissive_t: .*missing TE allow rule/);
    expect(answer.details?.permissive).toBe(true);
  });

  it.each([
    ['an undefined class', VM, 'system_u:object_r:etc_t:s0', 'socket', ['read'], /class socket is not defined/],
    ['an undefined permission', VM, 'system_u:object_r:etc_t:s0', 'file', ['frob'], /permission \{ frob \} is not defined for class file/],
    ['an undefined type', VM, 'system_u:object_r:nosuch_t:s0', 'file', ['read'], /type nosuch_t is not defined/],
    ['an attribute as type', VM, 'system_u:object_r:file_type:s0', 'file', ['read'], /file_type is an attribute/],
    ['a role not authorized for the type', 'system_u:system_r:etc_t:s0', 'system_u:object_r:etc_t:s0', 'file', ['read'], /role system_r is not authorized for type etc_t/],
    ['a user not authorized for the role', 'user_u:system_r:svirt_t:s0', 'system_u:object_r:etc_t:s0', 'file', ['read'], /user user_u is not authorized for role system_r/],
    ['a level outside the user range', 'user_u:user_r:user_t:s0:c1', 'system_u:object_r:etc_t:s0', 'file', ['read'], /outside user user_u's range/],
    ['an undefined category', VM, 'system_u:object_r:etc_t:s0:c9', 'file', ['read'], /category c9 is not defined/],
    ['a context without level', 'system_u:system_r:svirt_t', 'system_u:object_r:etc_t:s0', 'file', ['read'], /has MLS, but the context has no level/],
  ])('answers unknown for %s', (_what, scontext, tcontext, tclass, perms, reason) => {
    const answer = ask(scontext, tcontext, tclass, perms);
    expect(answer.decision).toBe('unknown');
    expect(answer.reason).toMatch(reason);
  });

  it('checks no user range for object_r contexts, as libsepol does', () => {
    expect(ask(VM, 'user_u:object_r:svirt_image_t:s0:c1', 'file', ['read']).decision).toBe('allowed');
  });

  it('does not deny on TE when a rule line could not be read', () => {
    const p = fixturePolicy({ teRules: `${FIXTURE_SESEARCH}allow svirt_t ~etc_t:file read;\n` });
    const answer = ask(VM, 'system_u:object_r:etc_t:s0', 'file', ['write'], {}, p);
    expect(answer.decision).toBe('unknown');
    expect(answer.reason).toContain('1 sesearch line(s) could not be read');
  });

  it('answers unknown for everything when seinfo output is incomplete', () => {
    const p = fixturePolicy({ symbols: FIXTURE_SEINFO.replace('Types: 7', 'Types: 8') });
    const answer = ask(VM, 'system_u:object_r:svirt_image_t:s0:c1,c2', 'file', ['read'], {}, p);
    expect(answer.decision).toBe('unknown');
    expect(answer.reason).toContain('seinfo announced 8 types but 7 were read');
  });

  it('answers unknown when a deciding constraint cannot be read', () => {
    // A constraint over a level compared with names is not something seinfo prints; it stays undecided.
    const symbols = FIXTURE_SEINFO.replace('(h1 dom h2 or ( t1 != mcs_constrained_type ))', '(h1 dom h2 and ( l2 == h2 ) or ( t1 != mcs_constrained_type ) and ( t2 == file_type ) or ( u1 == u2 ) and ( r1 == r2 ))');
    const p = fixturePolicy({ symbols });
    const answer = ask(VM, 'system_u:object_r:svirt_image_t:s0:c3', 'file', ['read'], {}, p);
    expect(answer.decision).toBe('unknown');
    expect(answer.reason).toMatch(/could not be read: ambiguous as printed by setools/);
  });

  it('prefers CIL constraints, which have one reading', () => {
    const cil = [
      '(constrain (process (transition)) (or (eq u1 u2) (eq t1 can_change_process_identity)))',
      '(mlsconstrain (file (read write open)) (or (and (dom h1 h2) (eq l2 h2)) (neq t1 mcs_constrained_type)))',
    ].join('\n');
    const p = fixturePolicy({ cilConstraints: cil });
    expect(p.constraintSource).toBe('cil');
    expect(ask(VM, 'system_u:object_r:svirt_image_t:s0-s0:c1', 'file', ['read'], {}, p).decision).toBe('denied');
    expect(ask(VM, 'system_u:object_r:svirt_image_t:s0:c1', 'file', ['read'], {}, p).decision).toBe('allowed');
  });

  it('treats a checkpolicy/seinfo constraint count mismatch as a problem', () => {
    const p = fixturePolicy({ cilConstraints: '(constrain (process (transition)) (eq u1 u2))' });
    expect(ask(VM, VM, 'process', ['signal'], {}, p).reason).toContain('checkpolicy gave 1 constraints where seinfo announced 2');
  });
});
