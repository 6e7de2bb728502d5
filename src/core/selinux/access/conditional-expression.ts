/**
 * Boolean conditions of conditional TE rules, as sesearch prints them after a rule
 * (`allow a b:c p; [ virt_use_nfs && ! secure_mode ]:True`), read into trees and evaluated against
 * boolean states.
 */
import { readSetoolsInfix, tokenizeInfix, type ExprTree, type InfixDialect, type InfixReading, type SetoolsPrinterRules } from './setools-infix';

export type ConditionTree = ExprTree<string>;

const BOOLEAN_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

const CONDITION_PRINTER: SetoolsPrinterRules = {
  precedence: { '!': 5, '==': 4, '!=': 4, '&&': 3, '^': 2, '||': 1 },
  startPrecedence: 5,
  notToken: '!',
  swapBinaryOperands: true,
  notAlwaysParenthesized: false,
};

function precedenceOf(tree: ConditionTree): number {
  const op = tree.kind === 'binary' ? tree.op : '!';
  return CONDITION_PRINTER.precedence[op] as number;
}

export const CONDITION_DIALECT: InfixDialect<string> = {
  binaryOps: new Set(['&&', '||', '^', '==', '!=']),
  readLeaf: (tokens, from, to) => {
    const token = tokens[from];
    return to === from + 1 && token !== undefined && BOOLEAN_NAME.test(token) ? token : undefined;
  },
  leafKey: (name) => name,
  leafPostfix: (name) => [{ operand: [name] }],
  printer: CONDITION_PRINTER,
  // setools prints `L op R` from postfix `R L op`, so the operator processed just before `op` is the
  // root of L, or of R when L is a bare boolean; with both bare it depends on the surroundings.
  parenthesized: (tree) => {
    if (tree.kind !== 'binary') return false;
    const before = tree.left.kind !== 'leaf' ? tree.left : tree.right.kind !== 'leaf' ? tree.right : undefined;
    if (!before) return undefined;
    return precedenceOf(tree) >= precedenceOf(before);
  },
  applyBinary: (op, left, right) => {
    switch (op) {
      case '&&': return left && right;
      case '||': return left || right;
      case '^': return left !== right;
      case '==': return left === right;
      default: return left !== right; // '!='
    }
  },
};

export function readCondition(text: string): InfixReading<string> {
  return readSetoolsInfix(tokenizeInfix(text), CONDITION_DIALECT);
}

export function conditionBooleans(tree: ConditionTree, into: Set<string> = new Set()): Set<string> {
  if (tree.kind === 'leaf') into.add(tree.leaf);
  else if (tree.kind === 'not') conditionBooleans(tree.operand, into);
  else {
    conditionBooleans(tree.left, into);
    conditionBooleans(tree.right, into);
  }
  return into;
}

/** The condition's value, or undefined when a boolean it reads has no known state. */
export function evaluateCondition(tree: ConditionTree, stateOf: (name: string) => boolean | undefined): boolean | undefined {
  switch (tree.kind) {
    case 'leaf':
      return stateOf(tree.leaf);
    case 'not': {
      const inner = evaluateCondition(tree.operand, stateOf);
      return inner === undefined ? undefined : !inner;
    }
    case 'binary': {
      const left = evaluateCondition(tree.left, stateOf);
      const right = evaluateCondition(tree.right, stateOf);
      if (tree.op === '&&' && (left === false || right === false)) return false;
      if (tree.op === '||' && (left === true || right === true)) return true;
      if (left === undefined || right === undefined) return undefined;
      return CONDITION_DIALECT.applyBinary(tree.op, left, right);
    }
  }
}
