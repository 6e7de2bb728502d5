/**
 * Differential test of the access evaluator against libsepol on the real policy: audit2why computes
 * each AVC's decision with sepol_compute_av_reason. One audit2why process answers every case; its
 * answers are mapped back to cases by the audit serial in `msg=audit(…:N)`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadAccessPolicy } from '../../../security/selinux/policy-query';
import { parseContext } from '../context';
import type { AccessPolicy } from './access-policy';
import { parseCilConstraints } from './cil-constraints';
import { readCondition } from './conditional-expression';
import { parseConstraints, type ConstraintTree } from './constraint-expression';
import { evaluateAccess, type AccessAnswer } from './evaluate-access';
import type { ExprTree } from './setools-infix';
import { seededUnit } from '../../../../test/support/seeded-random';
// The oracle's tools (setools, audit2why, checkpolicy) and the policy are installed by .ci/run: missing, the test fails.
import { REFERENCE_POLICY } from '../../../../test/support/access-policy-fixture';

const run = promisify(execFile);


/** audit2why's classification of one AVC (audit2why.c: ALLOW, DONTAUDIT, TERULE, BOOLEAN, CONSTRAINT, RBAC). */
type Verdict = 'allowed' | 'dontaudit' | 'te' | 'boolean' | 'constraint' | 'rbac' | 'bounds';

interface OracleAnswer {
  readonly verdict: Verdict;
  readonly booleans: readonly string[];
}

interface AccessCase {
  readonly scontext: string;
  readonly tcontext: string;
  readonly tclass: string;
  readonly perms: readonly string[];
}

function verdictOf(answer: AccessAnswer): Verdict | 'unknown' {
  if (answer.decision === 'unknown') return 'unknown';
  if (answer.decision === 'allowed') return 'allowed';
  const details = answer.details;
  if (!details) return 'unknown';
  // audit2why's order: TE first (a boolean that would allow it, else dontaudit, else TE), then constraints.
  if (details.missingTe.length > 0) {
    if (details.enablingBooleans.length > 0) return 'boolean';
    return details.dontaudited.length > 0 ? 'dontaudit' : 'te';
  }
  return 'constraint';
}

function parseAudit2why(output: string): Map<number, OracleAnswer> {
  const answers = new Map<number, OracleAnswer>();
  const blocks = output.split(/^(?=type=AVC msg=audit\()/m).filter((b) => b.startsWith('type=AVC'));
  for (const block of blocks) {
    const serial = Number(/^type=AVC msg=audit\(\d+\.\d+:(\d+)\)/.exec(block)?.[1]);
    let verdict: Verdict | undefined;
    if (block.includes('Unknown - would be allowed by active policy')) verdict = 'allowed';
    else if (block.includes("Unknown - should be dontaudit'd by active policy")) verdict = 'dontaudit';
    else if (block.includes('Missing type enforcement (TE) allow rule')) verdict = 'te';
    else if (/boolean.* set incorrectly/.test(block)) verdict = 'boolean';
    else if (block.includes('Constraint DENIED')) verdict = 'constraint';
    else if (block.includes('Missing role allow rule')) verdict = 'rbac';
    else if (block.includes('Typebounds violation')) verdict = 'bounds';
    if (verdict === undefined) throw new Error(`unrecognized audit2why answer:\n${block}`);
    const booleans = [...block.matchAll(/setsebool -P (\S+) \d/g)].map((m) => m[1] as string).sort();
    answers.set(serial, { verdict, booleans });
  }
  return answers;
}

function avcLine(c: AccessCase, serial: number): string {
  return (
    `type=AVC msg=audit(1700000000.001:${serial}): avc:  denied  { ${c.perms.join(' ')} } for pid=1 comm="qemu" ` +
    `scontext=${c.scontext} tcontext=${c.tcontext} tclass=${c.tclass} permissive=0`
  );
}

async function avcFile(dir: string, ...cases: AccessCase[]): Promise<string> {
  const file = join(dir, 'avc.log');
  await writeFile(file, `${cases.map((c, i) => avcLine(c, i + 1)).join('\n')}\n`);
  return file;
}

async function audit2why(cases: readonly AccessCase[]): Promise<Map<number, OracleAnswer>> {
  const dir = await mkdtemp(join(tmpdir(), 'svirt-oracle-'));
  try {
    const file = await avcFile(dir, ...cases);
    const { stdout } = await run('audit2why', ['-p', REFERENCE_POLICY, '-i', file], { maxBuffer: 64 * 1024 * 1024 });
    return parseAudit2why(stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}


const FILE_PERMS = [
  'read', 'read', 'write', 'write', 'open', 'open', 'getattr', 'getattr', 'setattr', 'append', 'ioctl', 'lock', 'create', 'link',
  'unlink', 'rename', 'relabelfrom', 'relabelto', 'map', 'execute', 'watch',
];
const PERMS_BY_CLASS: Readonly<Record<string, readonly string[]>> = {
  file: [...FILE_PERMS, 'execute_no_trans', 'entrypoint'],
  dir: [...FILE_PERMS, 'search', 'add_name', 'remove_name', 'rmdir', 'reparent'],
  blk_file: FILE_PERMS,
  chr_file: FILE_PERMS,
  sock_file: FILE_PERMS,
  lnk_file: FILE_PERMS,
  fifo_file: FILE_PERMS,
  process: ['transition', 'sigkill', 'signal', 'ptrace', 'getattr', 'dyntransition', 'sigchld', 'setsched'],
};
const FILE_CLASSES = ['file', 'file', 'file', 'dir', 'blk_file', 'chr_file', 'sock_file', 'lnk_file', 'fifo_file'];
// Weighted towards what sVirt domains are granted, so allowed and constraint outcomes are common too.
const OBJECT_TYPES = [
  'svirt_image_t', 'svirt_image_t', 'svirt_image_t', 'virt_content_t', 'virt_content_t', 'virt_image_t', 'user_home_t', 'etc_t',
  'shadow_t', 'nfs_t', 'cifs_t', 'svirt_tmp_t', 'svirt_tmp_t', 'fixed_disk_device_t',
];
const OBJECT_USERS = ['system_u', 'unconfined_u', 'unconfined_u', 'staff_u', 'user_u'];

function generateCases(count: number, seed: number): AccessCase[] {
  const next = seededUnit(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  // A small category pool makes equal, dominating and disjoint pairs all common.
  const category = (): number => Math.floor(next() * 8);
  const pair = (): string => {
    const a = category();
    let b = category();
    while (b === a) b = category();
    return `c${Math.min(a, b)},c${Math.max(a, b)}`;
  };
  const mcsLevel = (): string => pick([`s0`, `s0:c${category()}`, `s0:${pair()}`, `s0:${pair()}`, 's0:c0.c1023']);
  const subjectLevel = (): string => pick([mcsLevel(), mcsLevel(), 's0-s0:c0.c1023', `s0-s0:${pair()}`]);
  const subject = (): string => {
    switch (pick(['svirt_t', 'svirt_t', 'svirt_t', 'svirt_t', 'virtd_t', 'unconfined_t', 'staff_t', 'user_t', 'qemu_t'])) {
      case 'svirt_t': return `system_u:system_r:svirt_t:${subjectLevel()}`;
      case 'virtd_t': return `system_u:system_r:virtd_t:${pick(['s0-s0:c0.c1023', subjectLevel()])}`;
      case 'unconfined_t': return pick([`unconfined_u:unconfined_r:unconfined_t:${subjectLevel()}`, `system_u:system_r:unconfined_t:${subjectLevel()}`]);
      case 'staff_t': return `staff_u:staff_r:staff_t:${subjectLevel()}`;
      case 'user_t': return 'user_u:user_r:user_t:s0'; // user_u's range is s0 only
      default: return `system_u:system_r:qemu_t:${subjectLevel()}`;
    }
  };
  const cases: AccessCase[] = [];
  while (cases.length < count) {
    if (next() < 0.25) {
      // The sVirt core: a VM's process on images of its own, another or no pair.
      const tclass = pick(['file', 'file', 'blk_file', 'chr_file']);
      const perms = [pick(['read', 'write', 'open', 'getattr', 'append', 'ioctl', 'lock', 'setattr'])];
      const image = `system_u:object_r:${pick(['svirt_image_t', 'svirt_image_t', 'virt_content_t'])}:${mcsLevel()}`;
      cases.push({ scontext: `system_u:system_r:${pick(['svirt_t', 'qemu_t'])}:${mcsLevel()}`, tcontext: image, tclass, perms });
      continue;
    }
    const scontext = subject();
    const processCase = next() < 0.1;
    const tclass = processCase ? 'process' : pick(FILE_CLASSES);
    let tcontext: string;
    if (processCase) {
      tcontext = subject();
    } else {
      // Often the subject's own level, as sVirt labels a VM's image with its pair.
      const ownLevel = scontext.split(':').slice(3).join(':').split('-')[0] as string;
      tcontext = `${pick(OBJECT_USERS)}:object_r:${pick(OBJECT_TYPES)}:${next() < 0.3 ? ownLevel : mcsLevel()}`;
    }
    const choices = PERMS_BY_CLASS[tclass] as readonly string[];
    const perms = new Set<string>();
    const wanted = pick([1, 1, 1, 2, 3]);
    while (perms.size < wanted) perms.add(pick(choices));
    cases.push({ scontext, tcontext, tclass, perms: [...perms] });
  }
  return cases;
}

const VM = 'system_u:system_r:svirt_t:s0:c1,c2';
const HAND_PICKED: readonly (AccessCase & { readonly expected: 'allowed' | 'te' | 'constraint' | 'dontaudit' })[] = [
  { scontext: VM, tcontext: 'system_u:object_r:svirt_image_t:s0:c1,c2', tclass: 'file', perms: ['read'], expected: 'allowed' },
  { scontext: VM, tcontext: 'system_u:object_r:svirt_image_t:s0:c3,c4', tclass: 'file', perms: ['read'], expected: 'constraint' },
  { scontext: VM, tcontext: 'system_u:object_r:svirt_image_t:s0', tclass: 'file', perms: ['read'], expected: 'allowed' },
  // Denied by TE; the policy also dontaudits it, so the kernel denies without a log record.
  { scontext: VM, tcontext: 'system_u:object_r:virt_content_t:s0', tclass: 'file', perms: ['write'], expected: 'dontaudit' },
  { scontext: VM, tcontext: 'system_u:object_r:shadow_t:s0', tclass: 'file', perms: ['read'], expected: 'te' },
];

describe('access evaluator against audit2why (libsepol) on the reference policy', () => {
  let policy: AccessPolicy;
  beforeAll(async () => {
    policy = (await loadAccessPolicy({ policyPath: REFERENCE_POLICY })).policy;
  });

  const evaluate = (c: AccessCase): AccessAnswer =>
    evaluateAccess(policy, { scontext: parseContext(c.scontext), tcontext: parseContext(c.tcontext), tclass: c.tclass, perms: c.perms });

  it('agrees on every generated and hand-picked case, with no unknowns', async () => {
    const cases: AccessCase[] = [...HAND_PICKED, ...generateCases(1200, 20241126)];
    const oracle = await audit2why(cases);
    const disagreements: string[] = [];
    const tally = new Map<string, number>();
    let unknown = 0;
    cases.forEach((c, i) => {
      const mine = evaluate(c);
      const theirs = oracle.get(i + 1);
      const verdict = verdictOf(mine);
      tally.set(verdict, (tally.get(verdict) ?? 0) + 1);
      if (verdict === 'unknown') unknown++;
      const myBooleans = (mine.details?.enablingBooleans ?? []).map((b) => b.name).sort();
      if (!theirs || theirs.verdict !== verdict || theirs.booleans.join() !== myBooleans.join()) {
        disagreements.push(`${JSON.stringify(c)}: audit2why ${JSON.stringify(theirs)}, evaluator ${verdict} ${myBooleans.join()} (${mine.reason})`);
      }
    });
    console.info(`access oracle: ${cases.length} cases, ${cases.length - disagreements.length} agree, ${unknown} unknown; ${JSON.stringify(Object.fromEntries(tally))}`);
    expect(disagreements).toEqual([]);
    expect(unknown).toBe(0);
    // Every verdict kind the cases are meant to reach is reached, so the agreement is not vacuous.
    for (const kind of ['allowed', 'te', 'constraint', 'dontaudit', 'boolean']) expect(tally.get(kind) ?? 0).toBeGreaterThan(0);
    for (const [i, c] of HAND_PICKED.entries()) expect(oracle.get(i + 1)?.verdict, JSON.stringify(c)).toBe(c.expected);
  }, 60_000);

  it('names the failing constraint and the missing rule as the reasons', () => {
    const [, otherPair, , content, shadow] = HAND_PICKED;
    expect(evaluate(otherPair as AccessCase).reason).toBe(
      'constraint denied: mlsconstrain file { read } ((h1 dom h2) or (t1 != mcs_constrained_type))',
    );
    expect(evaluate(shadow as AccessCase).reason).toBe('missing TE allow rule: svirt_t → shadow_t:file { read }');
    expect(evaluate(content as AccessCase).reason).toMatch(/^missing TE allow rule: svirt_t → virt_content_t:file \{ write \}; dontaudit/);
  });

  it('answers unknown, never a guess, for contexts libsepol refuses', async () => {
    const invalid: AccessCase[] = [
      { scontext: 'system_u:system_r:etc_t:s0', tcontext: 'system_u:object_r:etc_t:s0', tclass: 'file', perms: ['read'] },
      { scontext: 'user_u:user_r:user_t:s0:c1', tcontext: 'system_u:object_r:etc_t:s0', tclass: 'file', perms: ['read'] },
      { scontext: VM, tcontext: 'system_u:object_r:no_such_t:s0', tclass: 'file', perms: ['read'] },
      { scontext: VM, tcontext: 'system_u:object_r:mcs_constrained_type:s0', tclass: 'file', perms: ['read'] },
      { scontext: VM, tcontext: 'system_u:object_r:etc_t:s0:c1024', tclass: 'file', perms: ['read'] },
    ];
    const oracle = await audit2why(invalid);
    expect(oracle.size).toBe(0); // audit2why cannot map these contexts to SIDs and skips them
    for (const c of invalid) expect(evaluate(c).decision, JSON.stringify(c)).toBe('unknown');
  });

  it('allows in a permissive domain, where audit2why still reports the policy denial', async () => {
    // The reference policy has no permissive types; rebuild it with one.
    const dir = await mkdtemp(join(tmpdir(), 'svirt-permissive-'));
    try {
      const conf = join(dir, 'policy.conf');
      const rebuilt = join(dir, 'policy.33');
      await run('checkpolicy', ['-M', '-b', '-F', REFERENCE_POLICY, '-o', conf]);
      const text = await readFile(conf, 'utf8');
      const firstRule = text.indexOf('\nallow ');
      await writeFile(conf, `${text.slice(0, firstRule)}\npermissive svirt_t;${text.slice(firstRule)}`);
      await run('checkpolicy', ['-M', '-c', '33', '-o', rebuilt, conf]);
      const permissive = (await loadAccessPolicy({ policyPath: rebuilt, cacheDir: null })).policy;
      expect([...permissive.symbols.permissiveTypes]).toEqual(['svirt_t']);
      const shadow = HAND_PICKED[4] as AccessCase;
      const answer = evaluateAccess(permissive, { scontext: parseContext(shadow.scontext), tcontext: parseContext(shadow.tcontext), tclass: 'file', perms: ['read'] });
      expect(answer.decision).toBe('allowed');
      expect(answer.reason).toMatch(/^permissive domain svirt_t: .*missing TE allow rule/);
      expect(answer.details?.missingTe).toEqual(['read']);
      const { stdout } = await run('audit2why', ['-p', rebuilt, '-i', await avcFile(dir, shadow)]);
      expect(stdout).toContain('Missing type enforcement (TE) allow rule');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('resolves type aliases as libsepol does', async () => {
    const viaAlias: AccessCase = { scontext: VM, tcontext: 'system_u:object_r:systemd_run_exec_t:s0', tclass: 'file', perms: ['execute'] };
    const oracle = await audit2why([viaAlias]);
    expect(verdictOf(evaluate(viaAlias))).toBe(oracle.get(1)?.verdict);
  });
});

/** Flattens nested `and`/`or` chains and orders their operands, so equivalent spellings compare equal. */
function canonical<L>(tree: ExprTree<L>, leafKey: (leaf: L) => string, commutative: ReadonlySet<string>): string {
  if (tree.kind === 'leaf') return leafKey(tree.leaf);
  if (tree.kind === 'not') return `not(${canonical(tree.operand, leafKey, commutative)})`;
  if (!commutative.has(tree.op)) return `(${canonical(tree.left, leafKey, commutative)} ${tree.op} ${canonical(tree.right, leafKey, commutative)})`;
  const operands: string[] = [];
  const collect = (node: ExprTree<L>): void => {
    if (node.kind === 'binary' && node.op === tree.op) {
      collect(node.left);
      collect(node.right);
    } else {
      operands.push(canonical(node, leafKey, commutative));
    }
  };
  collect(tree);
  return `${tree.op}(${operands.sort().join(', ')})`;
}

const constraintLeafKey = (leaf: ConstraintTree extends ExprTree<infer L> ? L : never): string =>
  `${leaf.left} ${leaf.op} ${typeof leaf.right === 'string' ? leaf.right : [...leaf.right.names].sort().join('|')}`;

describe("seinfo/sesearch printed expressions against checkpolicy's CIL", () => {
  let seinfoText: string;
  let cilText: string;
  let sesearchText: string;
  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'svirt-cil-'));
    try {
      await run('checkpolicy', ['-M', '-b', '-C', REFERENCE_POLICY, '-o', join(dir, 'policy.cil')]);
      cilText = await readFile(join(dir, 'policy.cil'), 'utf8');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    seinfoText = (await run('seinfo', [REFERENCE_POLICY, '--constrain'], { maxBuffer: 64 * 1024 * 1024 })).stdout;
    sesearchText = (await run('sesearch', [REFERENCE_POLICY, '-A'], { maxBuffer: 256 * 1024 * 1024 })).stdout;
  });

  it('reads every unambiguous seinfo constraint as CIL has it, and refuses only ambiguous ones', () => {
    const fromSeinfo = parseConstraints(seinfoText);
    const fromCil = parseCilConstraints(cilText);
    expect(fromCil.unparsedLines).toEqual([]);
    expect(fromSeinfo.rules).toHaveLength(fromCil.rules.length);
    const statement = (kind: string, tclass: string, perms: readonly string[], tree: ConstraintTree): string =>
      `${kind} ${tclass} {${[...perms].sort().join(' ')}} ${canonical(tree, constraintLeafKey, new Set(['and', 'or']))}`;
    const cilStatements = fromCil.rules.map((r) => (r.reading.ok ? statement(r.kind, r.tclass, r.perms, r.reading.tree) : '')).sort();
    const readable = fromSeinfo.rules.filter((r) => r.reading.ok);
    for (const rule of readable) {
      if (!rule.reading.ok) continue;
      expect(cilStatements, rule.text).toContain(statement(rule.kind, rule.tclass, rule.perms, rule.reading.tree));
    }
    // The printed infix loses parentheses; these few have several readings and are left to CIL.
    const ambiguous = fromSeinfo.rules.filter((r) => !r.reading.ok);
    for (const rule of ambiguous) expect(rule.reading.ok ? '' : rule.reading.reason).toMatch(/^ambiguous/);
    expect(ambiguous.length).toBeLessThan(10);
  });

  it('reads every sesearch boolean condition as CIL has it', () => {
    const printed = new Set([...sesearchText.matchAll(/ \[ (.+) \]:(?:True|False)$/gm)].map((m) => m[1] as string));
    const cilConditions = new Set<string>();
    for (const m of cilText.matchAll(/^\(booleanif (.+)$/gm)) {
      cilConditions.add(canonicalCilCondition(m[1] as string));
    }
    const ops = new Set(['&&', '||', '^', '==', '!=']);
    for (const text of printed) {
      const reading = readCondition(text);
      expect(reading.ok, text).toBe(true);
      if (reading.ok) expect(cilConditions, text).toContain(canonical(reading.tree, (b) => b, ops));
    }
    expect(printed.size).toBeGreaterThan(100);
  });
});

/** A CIL boolean expression `(and (not a) b)` in the canonical form used above. */
function canonicalCilCondition(text: string): string {
  const tokens = text.match(/[()]|[^\s()]+/g) ?? [];
  let at = 0;
  const names: Record<string, string> = { and: '&&', or: '||', xor: '^', eq: '==', neq: '!=' };
  const read = (): ExprTree<string> => {
    const token = tokens[at++] as string;
    if (token !== '(') return { kind: 'leaf', leaf: token };
    const head = tokens[at++] as string;
    if (head === 'not') {
      const operand = read();
      at++;
      return { kind: 'not', operand };
    }
    const left = read();
    const right = read();
    at++;
    return { kind: 'binary', op: names[head] ?? head, left, right };
  };
  return canonical(read(), (b) => b, new Set(['&&', '||', '^', '==', '!=']));
}
