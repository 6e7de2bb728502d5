/**
 * The access decision the kernel's security server would make for a subject context, a target
 * context, a class and permissions: every permission needs a TE allow rule in effect (conditional
 * rules per their boolean's state), and every constrain/mlsconstrain of the class that covers a
 * requested permission must hold. Where the policy data cannot settle it, the answer is `unknown`
 * with the reason, never a guess.
 */
import { formatContext, type SecurityContext } from '../context';
import type { AccessPolicy } from './access-policy';
import { teIndexKey } from './access-policy';
import { conditionBooleans, evaluateCondition } from './conditional-expression';
import { evaluateConstraint, formatConstraintTree, type ConstraintNames } from './constraint-expression';
import { checkContext } from './context-validity';
import type { TeRule } from './te-rules';

export type AccessDecision = 'allowed' | 'denied' | 'unknown';

export interface AccessRequest {
  readonly scontext: SecurityContext;
  readonly tcontext: SecurityContext;
  readonly tclass: string;
  readonly perms: readonly string[];
}

export interface FailedConstraint {
  readonly kind: 'constrain' | 'mlsconstrain';
  /** The requested permissions the constraint covers. */
  readonly perms: readonly string[];
  /** Fully parenthesized expression. */
  readonly expression: string;
}

/** How the policy decided; present whenever the decision is allowed or denied. */
export interface AccessDetails {
  /** Requested permissions no TE allow rule in effect grants. */
  readonly missingTe: readonly string[];
  /** Requested permissions a dontaudit rule in effect covers (denials of them are not logged). */
  readonly dontaudited: readonly string[];
  readonly failedConstraints: readonly FailedConstraint[];
  /** Single boolean changes that would allow the whole request (as audit2why reports them). */
  readonly enablingBooleans: readonly { readonly name: string; readonly value: boolean }[];
  /** The subject type is permissive: the kernel allows and only logs. */
  readonly permissive: boolean;
}

export interface AccessAnswer {
  readonly decision: AccessDecision;
  readonly reason: string;
  /** `policy:<path or name>` */
  readonly source: string;
  readonly details?: AccessDetails;
}

export interface EvaluateOptions {
  /** Boolean states that override the policy's stored defaults (e.g. the running system's). */
  readonly booleanStates?: ReadonlyMap<string, boolean>;
}

type BooleanState = (name: string) => boolean | undefined;

interface Computation {
  /** Permission to the rules granting it. */
  readonly granted: Map<string, string[]>;
  readonly missing: string[];
  /** Permission to why its TE state is open. */
  readonly teOpen: Map<string, string>;
  readonly dontaudited: Set<string>;
  readonly failed: FailedConstraint[];
  readonly constraintOpen: string[];
  readonly constraintsChecked: number;
  /** Booleans in the conditions of rules that cover a requested permission. */
  readonly booleansSeen: Set<string>;
}

const braces = (perms: Iterable<string>): string => `{ ${[...perms].join(' ')} }`;

function describeRule(rule: TeRule): string {
  const base = `${rule.kind} ${rule.source} ${rule.target}:${rule.tclass}`;
  return rule.condition ? `${base} [ ${rule.condition.text} ]:${rule.condition.whenTrue ? 'True' : 'False'}` : base;
}

function namesOf(policy: AccessPolicy): ConstraintNames {
  const { users, roles, types, aliases } = policy.symbols;
  return {
    hasUser: (name) => users.has(name),
    hasRole: (name) => roles.has(name),
    typesOf: (name) => {
      const primary = aliases.get(name) ?? name;
      return types.has(primary) ? new Set([primary]) : policy.membersOfAttribute.get(name);
    },
  };
}

function compute(policy: AccessPolicy, source: SecurityContext, target: SecurityContext, tclass: string, perms: readonly string[], stateOf: BooleanState): Computation {
  const granted = new Map<string, string[]>();
  const teOpen = new Map<string, string>();
  const dontaudited = new Set<string>();
  const booleansSeen = new Set<string>();

  const sourceKeys = [source.type, ...(policy.symbols.types.get(source.type) ?? [])];
  const targetKeys = [target.type, ...(policy.symbols.types.get(target.type) ?? [])];
  // `self` as a target means "the source's own type", so it matches only when both types are the same.
  if (source.type === target.type) targetKeys.push('self');

  for (const sourceKey of sourceKeys) {
    for (const targetKey of targetKeys) {
      const rules = policy.teIndex.get(teIndexKey(sourceKey, targetKey, tclass));
      if (!rules) continue;
      for (const rule of rules) {
        const covered = perms.filter((perm) => rule.perms.includes(perm));
        if (covered.length === 0) continue;
        if (rule.condition) {
          const reading = policy.conditions.get(rule.condition.text);
          let why: string | undefined;
          if (!reading || !reading.ok) {
            why = `condition "${rule.condition.text}" of ${describeRule(rule)} could not be read (${reading && !reading.ok ? reading.reason : 'missing'})`;
          } else {
            const booleans = conditionBooleans(reading.tree);
            for (const name of booleans) booleansSeen.add(name);
            const value = evaluateCondition(reading.tree, stateOf);
            if (value === undefined) {
              const unknownStates = [...booleans].filter((name) => stateOf(name) === undefined);
              why = `the state of boolean ${unknownStates.join(', ')} is not known, and ${describeRule(rule)} ${braces(covered)} depends on it`;
            } else if (value !== rule.condition.whenTrue) {
              continue;
            }
          }
          if (why !== undefined) {
            if (rule.kind === 'allow') for (const perm of covered) if (!teOpen.has(perm)) teOpen.set(perm, why);
            continue;
          }
        }
        if (rule.kind === 'dontaudit') {
          for (const perm of covered) dontaudited.add(perm);
          continue;
        }
        for (const perm of covered) {
          const list = granted.get(perm);
          if (list) list.push(describeRule(rule));
          else granted.set(perm, [describeRule(rule)]);
        }
      }
    }
  }
  for (const perm of granted.keys()) teOpen.delete(perm);
  const missing = perms.filter((perm) => !granted.has(perm) && !teOpen.has(perm));

  const failed: FailedConstraint[] = [];
  const constraintOpen: string[] = [];
  let constraintsChecked = 0;
  const names = namesOf(policy);
  for (const constraint of policy.constraintsByClass.get(tclass) ?? []) {
    const covered = perms.filter((perm) => constraint.perms.includes(perm));
    if (covered.length === 0) continue;
    constraintsChecked++;
    if (!constraint.reading.ok) {
      constraintOpen.push(`${constraint.kind} ${tclass} ${braces(covered)} could not be read: ${constraint.reading.reason}`);
      continue;
    }
    const result = evaluateConstraint(constraint.reading.tree, { source, target }, names);
    if (result.value === undefined) {
      constraintOpen.push(`${constraint.kind} ${tclass} ${braces(covered)} ${formatConstraintTree(constraint.reading.tree)} cannot be decided: ${result.why}`);
    } else if (!result.value) {
      failed.push({ kind: constraint.kind, perms: covered, expression: formatConstraintTree(constraint.reading.tree) });
    }
  }
  return { granted, missing, teOpen, dontaudited, failed, constraintOpen, constraintsChecked, booleansSeen };
}

const fullyAllowed = (c: Computation): boolean => c.missing.length === 0 && c.teOpen.size === 0 && c.failed.length === 0 && c.constraintOpen.length === 0;

function formatFailed(tclass: string, failed: readonly FailedConstraint[]): string {
  return failed.map((f) => `${f.kind} ${tclass} ${braces(f.perms)} ${f.expression}`).join('; ');
}

export function evaluateAccess(policy: AccessPolicy, request: AccessRequest, options: EvaluateOptions = {}): AccessAnswer {
  const source = policy.source;
  const unknown = (reason: string): AccessAnswer => ({ decision: 'unknown', reason, source });

  if (policy.problems.length > 0) return unknown(`the policy could not be read completely: ${policy.problems.slice(0, 3).join('; ')}`);
  const { tclass, perms } = request;
  const classPerms = policy.symbols.classes.get(tclass);
  if (!classPerms) return unknown(`class ${tclass} is not defined in the policy`);
  if (perms.length === 0) return unknown('no permission was asked for');
  const undefinedPerms = perms.filter((perm) => !classPerms.has(perm));
  if (undefinedPerms.length > 0) return unknown(`permission ${braces(undefinedPerms)} is not defined for class ${tclass}`);

  const sourceCheck = checkContext(policy, request.scontext);
  if (!sourceCheck.ok) return unknown(`scontext ${formatContext(request.scontext)} is not valid in the policy: ${sourceCheck.why}`);
  const targetCheck = checkContext(policy, request.tcontext);
  if (!targetCheck.ok) return unknown(`tcontext ${formatContext(request.tcontext)} is not valid in the policy: ${targetCheck.why}`);
  const s = sourceCheck.context;
  const t = targetCheck.context;
  const wanted = [...new Set(perms)];

  const stateOf: BooleanState = (name) => options.booleanStates?.get(name) ?? policy.symbols.booleans.get(name);
  const result = compute(policy, s, t, tclass, wanted, stateOf);
  const arrow = `${s.type} → ${t.type}:${tclass}`;
  const permissive = policy.symbols.permissiveTypes.has(s.type);

  let decision: AccessDecision;
  let reason: string;
  let enablingBooleans: { name: string; value: boolean }[] = [];
  if (result.missing.length > 0) {
    decision = 'denied';
    const parts = [`missing TE allow rule: ${arrow} ${braces(result.missing)}`];
    const silenced = result.missing.filter((perm) => result.dontaudited.has(perm));
    if (silenced.length > 0) parts.push(`dontaudit rule: the denial of ${braces(silenced)} is not logged`);
    enablingBooleans = findEnablingBooleans(policy, s, t, tclass, wanted, stateOf, result.booleansSeen);
    if (enablingBooleans.length > 0) {
      parts.push(`allowed if ${enablingBooleans.map((b) => `boolean ${b.name} were ${b.value ? 'on' : 'off'}`).join(' or ')}`);
    }
    if (result.failed.length > 0) parts.push(`also constraint denied: ${formatFailed(tclass, result.failed)}`);
    reason = parts.join('; ');
    if (policy.unparsedTeLines.length > 0) {
      return unknown(`${reason}, but ${policy.unparsedTeLines.length} sesearch line(s) could not be read and might allow it`);
    }
  } else if (result.failed.length > 0) {
    decision = 'denied';
    reason = `constraint denied: ${formatFailed(tclass, result.failed)}`;
  } else if (result.teOpen.size > 0 || result.constraintOpen.length > 0) {
    const open = [...new Set(result.teOpen.values()), ...result.constraintOpen];
    return permissive ? permissiveAnswer(source, s.type, `undecided: ${open.join('; ')}`) : unknown(open.join('; '));
  } else if (policy.unparsedConstraintLines.length > 0) {
    return unknown(`TE allows ${arrow} ${braces(wanted)}, but ${policy.unparsedConstraintLines.length} constraint(s) could not be read and might deny it`);
  } else {
    decision = 'allowed';
    const grantingRules = [...new Set([...result.granted.values()].flat())];
    const shown = grantingRules.slice(0, 3).join(', ') + (grantingRules.length > 3 ? `, and ${grantingRules.length - 3} more` : '');
    reason = `TE allows ${arrow} ${braces(wanted)} (${shown}); ${result.constraintsChecked} constraint(s) on these permissions hold`;
  }

  const details: AccessDetails = {
    missingTe: result.missing,
    dontaudited: wanted.filter((perm) => result.dontaudited.has(perm)),
    failedConstraints: result.failed,
    enablingBooleans,
    permissive,
  };
  if (permissive && decision === 'denied') return { ...permissiveAnswer(source, s.type, reason), details };
  return { decision, reason, source, details };
}

function permissiveAnswer(source: string, type: string, policyReason: string): AccessAnswer {
  return { decision: 'allowed', reason: `permissive domain ${type}: the kernel allows and logs the denial (policy alone: ${policyReason})`, source };
}

/** Like audit2why: each boolean that, flipped on its own, would let the whole request through. */
function findEnablingBooleans(
  policy: AccessPolicy,
  s: SecurityContext,
  t: SecurityContext,
  tclass: string,
  perms: readonly string[],
  stateOf: BooleanState,
  candidates: ReadonlySet<string>,
): { name: string; value: boolean }[] {
  const enabling: { name: string; value: boolean }[] = [];
  for (const name of [...candidates].sort()) {
    const current = stateOf(name);
    if (current === undefined) continue;
    const flipped: BooleanState = (other) => (other === name ? !current : stateOf(other));
    if (fullyAllowed(compute(policy, s, t, tclass, perms, flipped))) enabling.push({ name, value: !current });
  }
  return enabling;
}
