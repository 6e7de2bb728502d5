import { Readable } from 'node:stream';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { fixturePolicy, REFERENCE_POLICY } from '../../../test/support/access-policy-fixture';
import { loadAccessPolicy } from '../../security/selinux/policy-query';
import { registerAccessCommand, runAccess, type AccessCommandDeps } from './access-command';
import { CliError, EXIT } from './exit-codes';

const VM = 'system_u:system_r:svirt_t:s0:c1,c2';
const IMAGE = 'system_u:object_r:svirt_image_t:s0:c1,c2';

function fixtureDeps(stdin = ''): AccessCommandDeps & { output: () => string } {
  let written = '';
  const policy = fixturePolicy();
  return {
    loadPolicy: async () => ({ policy }),
    input: () => Readable.from([stdin]),
    write: (text) => {
      written += text;
    },
    output: () => written,
  };
}

const line = (request: object): string => JSON.stringify(request);

describe('svirt access', () => {
  afterEach(() => {
    process.exitCode = undefined;
  });

  it('exits 0 allowed, 1 denied, 3 unknown, with the reason', async () => {
    const allowed = fixtureDeps();
    expect(await runAccess([VM, IMAGE, 'file', 'read,open'], {}, allowed)).toBe(EXIT.ok);
    expect(allowed.output()).toMatch(/^allowed: TE allows svirt_t → svirt_image_t:file \{ read open \}/);
    expect(allowed.output()).toContain('(policy:fixture)');

    const denied = fixtureDeps();
    expect(await runAccess([VM, 'system_u:object_r:svirt_image_t:s0:c3', 'file', 'read'], {}, denied)).toBe(EXIT.negative);
    expect(denied.output()).toMatch(/^denied: constraint denied: mlsconstrain file \{ read \}/);

    const unknown = fixtureDeps();
    expect(await runAccess(['system_u:system_r:nosuch_t:s0:c1,c2', IMAGE, 'file', 'read'], { json: true }, unknown)).toBe(EXIT.unknown);
    expect(JSON.parse(unknown.output())).toMatchObject({ decision: 'unknown', reason: expect.stringMatching(/^scontext .* is not valid in the policy/), source: 'policy:fixture' });
  });

  it('treats a misspelled class or permission as bad input (exit 2), naming the known ones nearest first', async () => {
    const badClass = runAccess([VM, IMAGE, 'fiel', 'read'], {}, fixtureDeps());
    await expect(badClass).rejects.toMatchObject({ exitCode: EXIT.badInput, message: expect.stringMatching(/^CLASS: "fiel" is not a class of this policy \(did you mean file\?\); its classes are: file, /) });
    const badPerm = runAccess([VM, IMAGE, 'file', 'read,frob'], {}, fixtureDeps());
    await expect(badPerm).rejects.toMatchObject({
      exitCode: EXIT.badInput,
      message: 'PERM: "frob" is not a permission of class file (did you mean open?); its permissions are: entrypoint, getattr, open, read, write',
    });
    const batch = fixtureDeps(`${line({ scontext: VM, tcontext: IMAGE, tclass: 'file', perms: ['raed'] })}\n`);
    expect(await runAccess([], { batch: true }, batch)).toBe(EXIT.ok);
    expect(JSON.parse(batch.output()).error).toMatch(/^PERM: "raed" is not a permission of class file \(did you mean read\?\)/);
  });

  it('names the malformed field in bad input (exit 2)', async () => {
    await expect(runAccess(['system_u:system_r:svirt_t:s0:c1,cX', IMAGE, 'file', 'read'], {}, fixtureDeps())).rejects.toThrow(
      /^scontext: invalid categories in .*"cX" is not a category cN/,
    );
    await expect(runAccess([VM, 'system_u:object_r', 'file', 'read'], {}, fixtureDeps())).rejects.toThrow(/^tcontext: invalid context/);
    await expect(runAccess([VM, IMAGE, 'file', 'read,,open'], {}, fixtureDeps())).rejects.toThrow(/^PERM: "" is not a permission name/);
    await expect(runAccess([VM, IMAGE, 'file'], {}, fixtureDeps())).rejects.toMatchObject({ exitCode: EXIT.badInput });
    await expect(runAccess([VM], { batch: true }, fixtureDeps())).rejects.toBeInstanceOf(CliError);
  });

  it('answers a batch line by line in order, and a malformed line in the middle does not stop it', async () => {
    const stdin = [
      line({ scontext: VM, tcontext: IMAGE, tclass: 'file', perms: ['read'] }),
      '{"scontext": "not json',
      line({ scontext: VM, tcontext: IMAGE, tclass: 'file' }),
      line({ scontext: VM, tcontext: 'system_u:object_r:svirt_image_t:s0:c1.x', tclass: 'file', perms: ['read'] }),
      line({ scontext: VM, tcontext: IMAGE, tclass: 'file', perms: ['read'], extra: 1 }),
      '',
      line({ scontext: VM, tcontext: 'system_u:object_r:svirt_image_t:s0:c3', tclass: 'file', perms: ['read'] }),
    ].join('\n');
    const deps = fixtureDeps(`${stdin}\n`);
    expect(await runAccess([], { batch: true }, deps)).toBe(EXIT.ok);
    const out = deps.output().trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(out).toHaveLength(7);
    expect(out[0]).toMatchObject({ decision: 'allowed' });
    expect(Object.keys(out[0] ?? {})).toEqual(['decision', 'reason']);
    expect(out[1]?.error).toMatch(/^not JSON/);
    expect(out[2]?.error).toBe("request must have required property 'perms'");
    expect(out[3]?.error).toMatch(/^tcontext: invalid categories/);
    expect(out[4]?.error).toBe('request must NOT have additional properties (extra)');
    expect(out[5]).toEqual({ error: 'empty line' });
    expect(out[6]).toMatchObject({ decision: 'denied' });
  });

  it('is wired into commander, setting the exit code from the decision', async () => {
    const program = new Command('svirt').exitOverride();
    const deps = fixtureDeps();
    registerAccessCommand(program, deps);
    await program.parseAsync(['node', 'svirt', 'access', VM, 'system_u:object_r:etc_t:s0', 'file', 'write']);
    expect(process.exitCode).toBe(EXIT.negative);
    expect(deps.output()).toMatch(/^denied: missing TE allow rule: svirt_t → etc_t:file \{ write \}; dontaudit rule/);
  });

  it('reports a policy that cannot be loaded as unknown (exit 3)', async () => {
    const deps: AccessCommandDeps = {
      ...fixtureDeps(),
      loadPolicy: async () => {
        const { PolicyQueryError } = await import('../../security/selinux/policy-query');
        throw new PolicyQueryError('sesearch is not installed');
      },
    };
    await expect(runAccess([VM, IMAGE, 'file', 'read'], {}, deps)).rejects.toMatchObject({ exitCode: EXIT.unknown, message: 'cannot load the policy: sesearch is not installed' });
  });
});


describe('svirt access --batch on the installed reference policy', () => {
  it('answers a few lines, going on past a malformed one', async () => {
    let written = '';
    const stdin = [
      line({ scontext: VM, tcontext: IMAGE, tclass: 'file', perms: ['read', 'write'] }),
      line({ scontext: VM, tcontext: 'system_u:object_r:svirt_image_t:s0:c3,c4', tclass: 'file', perms: ['read'] }),
      'garbage',
      line({ scontext: VM, tcontext: 'system_u:object_r:shadow_t:s0', tclass: 'file', perms: ['read'] }),
    ].join('\n');
    const deps: AccessCommandDeps = {
      loadPolicy: (policyPath) => loadAccessPolicy({ policyPath: policyPath ?? REFERENCE_POLICY }),
      input: () => Readable.from([stdin]),
      write: (text) => {
        written += text;
      },
    };
    expect(await runAccess([], { batch: true, policy: REFERENCE_POLICY }, deps)).toBe(EXIT.ok);
    const out = written.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(out.map((o) => o.decision ?? 'error')).toEqual(['allowed', 'denied', 'error', 'denied']);
    expect(out[1]?.reason).toBe('constraint denied: mlsconstrain file { read } ((h1 dom h2) or (t1 != mcs_constrained_type))');
    expect(out[3]?.reason).toBe('missing TE allow rule: svirt_t → shadow_t:file { read }');
  });
});
