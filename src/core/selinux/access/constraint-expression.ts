/**
 * `constrain` / `mlsconstrain` rules as `seinfo --constrain` prints them, read into trees and
 * evaluated the way the kernel's constraint_expr_eval does, with a third value for what the policy
 * data cannot settle (an unknown name, a role dominance, a validatetrans-only operand).
 */
import { dominates, levelEquals, type Level, type SecurityContext } from '../context';
import { readSetoolsInfix, tokenizeInfix, type ExprTree, type InfixDialect, type InfixReading, type SetoolsPrinterRules } from './setools-infix';

const SUBJECT_TARGET_OPERANDS = ['u1', 'u2', 'u3', 'r1', 'r2', 'r3', 't1', 't2', 't3', 'l1', 'l2', 'h1', 'h2'] as const;
export type ConstraintOperand = (typeof SUBJECT_TARGET_OPERANDS)[number];
const OPERANDS: ReadonlySet<string> = new Set(SUBJECT_TARGET_OPERANDS);

const COMPARISONS = ['==', '!=', 'dom', 'domby', 'incomp'] as const;
export type ConstraintComparison = (typeof COMPARISONS)[number];
const COMPARISON_SET: ReadonlySet<string> = new Set(COMPARISONS);

/** One comparison: `u1 == u2`, `h1 dom h2`, `t1 != { a b }`. */
export interface ConstraintLeaf {
  readonly left: ConstraintOperand;
  readonly op: ConstraintComparison;
  readonly right: ConstraintOperand | { readonly names: readonly string[] };
}

export type ConstraintTree = ExprTree<ConstraintLeaf>;

export interface ConstraintRule {
  readonly kind: 'constrain' | 'mlsconstrain';
  readonly tclass: string;
  readonly perms: readonly string[];
  /** The expression as seinfo printed it. */
  readonly text: string;
  readonly reading: InfixReading<ConstraintLeaf>;
}

const CONSTRAINT_PRINTER: SetoolsPrinterRules = {
  precedence: { not: 4, and: 2, or: 1, '==': 3, '!=': 3, dom: 3, domby: 3, incomp: 3 },
  startPrecedence: 4,
  notToken: 'not',
  swapBinaryOperands: false,
  notAlwaysParenthesized: true,
};

function readLeaf(tokens: readonly string[], from: number, to: number): ConstraintLeaf | undefined {
  const left = tokens[from];
  const op = tokens[from + 1];
  if (left === undefined || op === undefined || !OPERANDS.has(left) || !COMPARISON_SET.has(op)) return undefined;
  const rest = tokens.slice(from + 2, to);
  const [first] = rest;
  if (first === undefined) return undefined;
  if (rest.length === 1) {
    if (first === '(' || first === ')' || first === '{' || first === '}') return undefined;
    const right = OPERANDS.has(first) ? (first as ConstraintOperand) : { names: [first] };
    return { left: left as ConstraintOperand, op: op as ConstraintComparison, right };
  }
  if (first !== '{' || rest[rest.length - 1] !== '}' || rest.length < 3) return undefined;
  const names = rest.slice(1, -1);
  if (names.some((name) => /[(){}]/.test(name))) return undefined;
  return { left: left as ConstraintOperand, op: op as ConstraintComparison, right: { names } };
}

function rightTokens(right: ConstraintLeaf['right']): string[] {
  if (typeof right === 'string') return [right];
  // setools prints a one-name set without braces.
  return right.names.length === 1 ? [right.names[0] as string] : ['{', ...right.names, '}'];
}

export function leafText(leaf: ConstraintLeaf): string {
  return `${leaf.left} ${leaf.op} ${rightTokens(leaf.right).join(' ')}`;
}

function rootPrecedence(tree: ConstraintTree): number {
  if (tree.kind === 'leaf') return CONSTRAINT_PRINTER.precedence[tree.leaf.op] as number;
  if (tree.kind === 'not') return CONSTRAINT_PRINTER.precedence.not as number;
  return CONSTRAINT_PRINTER.precedence[tree.op] as number;
}

export const CONSTRAINT_DIALECT: InfixDialect<ConstraintLeaf> = {
  binaryOps: new Set(['and', 'or']),
  readLeaf,
  leafKey: leafText,
  leafPostfix: (leaf) => [{ operand: [leaf.left] }, { operand: rightTokens(leaf.right) }, { operator: leaf.op }],
  printer: CONSTRAINT_PRINTER,
  // An operator is printed in parentheses unless it binds looser than its right operand's root,
  // the operator setools processed just before it; a comparison's own parentheses depend on context.
  parenthesized: (tree) => {
    if (tree.kind === 'leaf') return undefined;
    if (tree.kind === 'not') return false;
    return rootPrecedence(tree) >= rootPrecedence(tree.right);
  },
  applyBinary: (op, left, right) => (op === 'and' ? left && right : left || right),
};

export function readConstraintExpression(text: string): InfixReading<ConstraintLeaf> {
  return readSetoolsInfix(tokenizeInfix(text), CONSTRAINT_DIALECT);
}

/** Fully parenthesized, for reasons: `((h1 dom h2) or (t1 != mcs_constrained_type))`. */
export function formatConstraintTree(tree: ConstraintTree): string {
  switch (tree.kind) {
    case 'leaf':
      return `(${leafText(tree.leaf)})`;
    case 'not':
      return `not ${formatConstraintTree(tree.operand)}`;
    case 'binary':
      return `(${formatConstraintTree(tree.left)} ${tree.op} ${formatConstraintTree(tree.right)})`;
  }
}

const CONSTRAINT_LINE = /^\s*(constrain|mlsconstrain)\s+(\S+)\s+(?:\{([^}]*)\}|(\S+))\s+\((.*)\);\s*$/;

export interface ParsedConstraints {
  readonly rules: readonly ConstraintRule[];
  /** Lines that looked like constraints but did not parse. */
  readonly unparsedLines: readonly string[];
  /** The count seinfo announced in its `Constraints: N` header, if seen. */
  readonly announced?: number;
}

/** The count seinfo announces for its `Constraints:` section and how many constraint lines it printed. */
export function countSeinfoConstraints(text: string): { readonly announced?: number; readonly printed: number } {
  const header = /^Constraints:\s+(\d+)\s*$/m.exec(text);
  const printed = text.split('\n').filter((line) => /^\s*(mls)?constrain\s/.test(line)).length;
  return header ? { announced: Number(header[1]), printed } : { printed };
}

/** Parses the `Constraints:` section of seinfo output (`seinfo POLICY --constrain`). */
export function parseConstraints(text: string): ParsedConstraints {
  const rules: ConstraintRule[] = [];
  const unparsedLines: string[] = [];
  let announced: number | undefined;
  for (const line of text.split('\n')) {
    const header = /^Constraints:\s+(\d+)\s*$/.exec(line);
    if (header) {
      announced = Number(header[1]);
      continue;
    }
    if (!/^\s*(mls)?constrain\s/.test(line)) continue;
    const match = CONSTRAINT_LINE.exec(line);
    if (!match) {
      unparsedLines.push(line.trim());
      continue;
    }
    const [, kind, tclass, permSet, singlePerm, expression] = match;
    const perms = permSet !== undefined ? permSet.trim().split(/\s+/).filter(Boolean) : [singlePerm as string];
    const text = (expression as string).trim();
    rules.push({ kind: kind as ConstraintRule['kind'], tclass: tclass as string, perms, text, reading: readConstraintExpression(text) });
  }
  return announced === undefined ? { rules, unparsedLines } : { rules, unparsedLines, announced };
}

/** What an expression needs from the policy to name users, roles and types. */
export interface ConstraintNames {
  hasUser(name: string): boolean;
  hasRole(name: string): boolean;
  /** The types a type, alias or attribute name stands for; undefined when the name is not in the policy. */
  typesOf(name: string): ReadonlySet<string> | undefined;
}

/** Subject and target with their type already resolved from aliases to the primary name. */
export interface ConstraintSubjects {
  readonly source: SecurityContext;
  readonly target: SecurityContext;
}

/** true, false, or undefined with the reason it cannot be decided. */
export type Tristate = { readonly value: boolean } | { readonly value: undefined; readonly why: string };

const TRUE: Tristate = { value: true };
const FALSE: Tristate = { value: false };
const known = (value: boolean): Tristate => (value ? TRUE : FALSE);

function contextField(operand: ConstraintOperand, subjects: ConstraintSubjects): string | Level | undefined {
  const { source, target } = subjects;
  switch (operand) {
    case 'u1': return source.user;
    case 'u2': return target.user;
    case 'r1': return source.role;
    case 'r2': return target.role;
    case 't1': return source.type;
    case 't2': return target.type;
    case 'l1': return source.range?.low;
    case 'h1': return source.range?.high;
    case 'l2': return target.range?.low;
    case 'h2': return target.range?.high;
    default: return undefined; // u3/r3/t3 name a validatetrans' third context, absent from an access check
  }
}

function compareLevels(op: ConstraintComparison, a: Level, b: Level): boolean {
  switch (op) {
    case '==': return levelEquals(a, b);
    case '!=': return !levelEquals(a, b);
    case 'dom': return dominates(a, b);
    case 'domby': return dominates(b, a);
    case 'incomp': return !dominates(a, b) && !dominates(b, a);
  }
}

function evaluateLeaf(leaf: ConstraintLeaf, subjects: ConstraintSubjects, names: ConstraintNames): Tristate {
  const left = contextField(leaf.left, subjects);
  if (left === undefined) return { value: undefined, why: `operand ${leaf.left} has no value in an access check` };
  if (typeof left !== 'string') {
    if (typeof leaf.right !== 'string') return { value: undefined, why: `level operand ${leaf.left} compared with names` };
    const right = contextField(leaf.right, subjects);
    if (right === undefined || typeof right === 'string') return { value: undefined, why: `operand ${leaf.right} is not a level here` };
    return known(compareLevels(leaf.op, left, right));
  }
  if (leaf.op !== '==' && leaf.op !== '!=') {
    // Role dominance (`r1 dom r2`) needs the policy's role dominance tree, which seinfo does not print.
    return { value: undefined, why: `"${leafText(leaf)}" needs role dominance, which is not read` };
  }
  const equal = leaf.op === '==';
  if (typeof leaf.right === 'string') {
    const right = contextField(leaf.right, subjects);
    if (right === undefined || typeof right !== 'string') return { value: undefined, why: `operand ${leaf.right} is not comparable with ${leaf.left}` };
    return known((left === right) === equal);
  }
  const kind = leaf.left[0];
  let unresolved: string | undefined;
  for (const name of leaf.right.names) {
    if (kind === 't') {
      const types = names.typesOf(name);
      if (!types) unresolved ??= `constraint names "${name}", which is not a type or attribute of the policy`;
      else if (types.has(left)) return known(equal);
    } else {
      const exists = kind === 'u' ? names.hasUser(name) : names.hasRole(name);
      if (!exists) unresolved ??= `constraint names "${name}", which is not a ${kind === 'u' ? 'user' : 'role'} of the policy`;
      else if (name === left) return known(equal);
    }
  }
  return unresolved === undefined ? known(!equal) : { value: undefined, why: unresolved };
}

/** Kleene three-valued evaluation: a decided side can settle `and`/`or` even when the other is not. */
export function evaluateConstraint(tree: ConstraintTree, subjects: ConstraintSubjects, names: ConstraintNames): Tristate {
  switch (tree.kind) {
    case 'leaf':
      return evaluateLeaf(tree.leaf, subjects, names);
    case 'not': {
      const inner = evaluateConstraint(tree.operand, subjects, names);
      return inner.value === undefined ? inner : known(!inner.value);
    }
    case 'binary': {
      const left = evaluateConstraint(tree.left, subjects, names);
      const decisive = tree.op === 'or';
      if (left.value === decisive) return left;
      const right = evaluateConstraint(tree.right, subjects, names);
      if (right.value === decisive) return right;
      if (left.value === undefined) return left;
      if (right.value === undefined) return right;
      return known(!decisive);
    }
  }
}
