/**
 * The policy as the access evaluator needs it: the tool outputs parsed once and indexed for lookups
 * by (source type-or-attribute, target type-or-attribute, class).
 */
import { parseCilConstraints } from './cil-constraints';
import { readCondition } from './conditional-expression';
import { countSeinfoConstraints, parseConstraints, type ConstraintRule } from './constraint-expression';
import { parseSeinfoSymbols, type PolicySymbols } from './policy-symbols';
import type { InfixReading } from './setools-infix';
import { parseTeRules, type TeRule } from './te-rules';

/** The text the policy tools printed; src/security/selinux/policy-query.ts runs them. */
export interface PolicyToolOutputs {
  /** `sesearch POLICY -A --dontaudit` */
  readonly teRules: string;
  /** `seinfo POLICY -x -t -a -b -c -u -r --common --constrain --sensitivity --category --permissive` */
  readonly symbols: string;
  /**
   * The constrain/mlsconstrain lines of `checkpolicy -M -b -C POLICY` (CIL). Preferred over seinfo's
   * printing of constraints, which is ambiguous for some expressions; absent without checkpolicy.
   */
  readonly cilConstraints?: string;
}

export interface AccessPolicy {
  /** `policy:<path or name>`, carried into every answer. */
  readonly source: string;
  readonly symbols: PolicySymbols;
  readonly mls: boolean;
  /** Rules by `source\ttarget\tclass`. */
  readonly teIndex: ReadonlyMap<string, readonly TeRule[]>;
  readonly conditions: ReadonlyMap<string, InfixReading<string>>;
  readonly constraintsByClass: ReadonlyMap<string, readonly ConstraintRule[]>;
  /** Where the constraints were read from. */
  readonly constraintSource: 'cil' | 'seinfo';
  readonly unparsedTeLines: readonly string[];
  readonly unparsedConstraintLines: readonly string[];
  /** Problems that make every answer unknown. */
  readonly problems: readonly string[];
  /** Attribute to member types, for constraint names. */
  readonly membersOfAttribute: ReadonlyMap<string, ReadonlySet<string>>;
}

export function teIndexKey(source: string, target: string, tclass: string): string {
  return `${source}\t${target}\t${tclass}`;
}

export function buildAccessPolicy(outputs: PolicyToolOutputs, source: string): AccessPolicy {
  const symbols = parseSeinfoSymbols(outputs.symbols);
  const problems = [...symbols.problems];

  const te = parseTeRules(outputs.teRules);
  const teIndex = new Map<string, TeRule[]>();
  const conditions = new Map<string, InfixReading<string>>();
  for (const rule of te.rules) {
    const key = teIndexKey(rule.source, rule.target, rule.tclass);
    const list = teIndex.get(key);
    if (list) list.push(rule);
    else teIndex.set(key, [rule]);
    if (rule.condition && !conditions.has(rule.condition.text)) conditions.set(rule.condition.text, readCondition(rule.condition.text));
  }
  if (te.rules.length === 0) problems.push('sesearch printed no allow or dontaudit rules');

  // Both printings are counted against seinfo's announced total; CIL, when present, is the one read.
  const seinfoCount = countSeinfoConstraints(outputs.symbols);
  if (seinfoCount.announced === undefined) problems.push('seinfo printed no "Constraints" section');
  else if (seinfoCount.announced !== seinfoCount.printed) {
    problems.push(`seinfo announced ${seinfoCount.announced} constraints but printed ${seinfoCount.printed}`);
  }
  const constraintSource: AccessPolicy['constraintSource'] = outputs.cilConstraints === undefined ? 'seinfo' : 'cil';
  const constraints = outputs.cilConstraints === undefined ? parseConstraints(outputs.symbols) : parseCilConstraints(outputs.cilConstraints);
  const read = constraints.rules.length + constraints.unparsedLines.length;
  if (seinfoCount.announced !== undefined && read !== seinfoCount.announced) {
    problems.push(`${constraintSource === 'cil' ? 'checkpolicy' : 'seinfo'} gave ${read} constraints where seinfo announced ${seinfoCount.announced}`);
  }
  const constraintsByClass = new Map<string, ConstraintRule[]>();
  for (const rule of constraints.rules) {
    const list = constraintsByClass.get(rule.tclass);
    if (list) list.push(rule);
    else constraintsByClass.set(rule.tclass, [rule]);
  }

  const membersOfAttribute = new Map<string, Set<string>>();
  for (const attribute of symbols.attributes) membersOfAttribute.set(attribute, new Set());
  for (const [type, attributes] of symbols.types) {
    for (const attribute of attributes) membersOfAttribute.get(attribute)?.add(type);
  }

  return {
    source,
    symbols,
    mls: symbols.sensitivities.size > 0,
    teIndex,
    conditions,
    constraintsByClass,
    constraintSource,
    unparsedTeLines: te.unparsedLines,
    unparsedConstraintLines: constraints.unparsedLines,
    problems,
    membersOfAttribute,
  };
}
