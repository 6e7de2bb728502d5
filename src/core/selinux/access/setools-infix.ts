/**
 * Reads the infix text setools prints for an expression stored in postfix (constraints, boolean
 * conditions) back into a tree, exactly or not at all.
 *
 * setools builds the infix with a walk that decides parentheses from the operator it processed just
 * before, not from the tree, so one printed text can come from several trees: `a or b and c` is
 * printed for both `(a or b) and c` and `a or (b and c)`. A plain precedence parser would silently pick one. Instead every tree whose
 * setools printing is token-for-token the input is collected; the reading is accepted when they all
 * agree as boolean functions of their leaves, and refused otherwise.
 */

export type ExprTree<L> =
  | { readonly kind: 'leaf'; readonly leaf: L }
  | { readonly kind: 'not'; readonly operand: ExprTree<L> }
  | { readonly kind: 'binary'; readonly op: string; readonly left: ExprTree<L>; readonly right: ExprTree<L> };

/** What differs between setools' constraint and conditional printers. */
export interface InfixDialect<L> {
  /** Binary operator tokens. */
  readonly binaryOps: ReadonlySet<string>;
  /** The leaf spelled by exactly tokens[from..to), if any. */
  readLeaf(tokens: readonly string[], from: number, to: number): L | undefined;
  /** Identity of a leaf, for comparing trees. */
  leafKey(leaf: L): string;
  /** How the leaf is stored in postfix (a constraint leaf is `operand operand comparison`). */
  leafPostfix(leaf: L): PostfixItem[];
  readonly printer: SetoolsPrinterRules;
  /**
   * Whether setools wraps this subtree in parentheses of its own: true, false, or undefined when that
   * depends on what surrounds it. Only prunes the search; the exact re-printing check decides.
   */
  parenthesized(tree: ExprTree<L>): boolean | undefined;
  /** Truth of a binary operator, for checking that candidate trees agree. */
  applyBinary(op: string, left: boolean, right: boolean): boolean;
}

export type InfixReading<L> = { readonly ok: true; readonly tree: ExprTree<L> } | { readonly ok: false; readonly reason: string };

// Bounds keep a pathological input from exploding; real policies stay far below (8 leaves at most).
const MAX_TREES_PER_SPAN = 4096;
const MAX_LEAVES_FOR_EQUIVALENCE = 16;

class TooManyReadings extends Error {}

export function treeKey<L>(tree: ExprTree<L>, leafKey: (leaf: L) => string): string {
  switch (tree.kind) {
    case 'leaf':
      return `[${leafKey(tree.leaf)}]`;
    case 'not':
      return `not(${treeKey(tree.operand, leafKey)})`;
    case 'binary':
      return `(${treeKey(tree.left, leafKey)} ${tree.op} ${treeKey(tree.right, leafKey)})`;
  }
}

/** Splits printed text into tokens: parentheses and braces stand alone, the rest splits on blanks. */
export function tokenizeInfix(text: string): string[] {
  return text.match(/[(){}]|[^\s(){}]+/g) ?? [];
}

function candidateTrees<L>(tokens: readonly string[], dialect: InfixDialect<L>): ExprTree<L>[] {
  const n = tokens.length;
  const bareMemo = new Map<number, ExprTree<L>[]>();
  const fullMemo = new Map<number, ExprTree<L>[]>();

  const collect = (): { add(tree: ExprTree<L>): void; result(): ExprTree<L>[] } => {
    const found = new Map<string, ExprTree<L>>();
    return {
      add(tree) {
        found.set(treeKey(tree, dialect.leafKey), tree);
        if (found.size > MAX_TREES_PER_SPAN) throw new TooManyReadings();
      },
      result: () => [...found.values()],
    };
  };

  // Trees printed as tokens[from..to) including any parentheses of their own.
  const full = (from: number, to: number): ExprTree<L>[] => {
    const key = from * (n + 1) + to;
    const cached = fullMemo.get(key);
    if (cached) return cached;
    const trees = collect();
    for (const tree of bare(from, to)) if (dialect.parenthesized(tree) !== true) trees.add(tree);
    if (to - from >= 3 && tokens[from] === '(' && tokens[to - 1] === ')') {
      for (const tree of bare(from + 1, to - 1)) if (dialect.parenthesized(tree) !== false) trees.add(tree);
    }
    const result = trees.result();
    fullMemo.set(key, result);
    return result;
  };

  // Trees whose printing without parentheses of their own is tokens[from..to).
  const bare = (from: number, to: number): ExprTree<L>[] => {
    const key = from * (n + 1) + to;
    const cached = bareMemo.get(key);
    if (cached) return cached;
    const trees = collect();
    const leaf = dialect.readLeaf(tokens, from, to);
    if (leaf !== undefined) trees.add({ kind: 'leaf', leaf });
    const { notToken, notAlwaysParenthesized } = dialect.printer;
    if (tokens[from] === notToken) {
      if (to - from >= 4 && tokens[from + 1] === '(' && tokens[to - 1] === ')') {
        for (const operand of full(from + 2, to - 1)) {
          if (notAlwaysParenthesized || operand.kind !== 'leaf') trees.add({ kind: 'not', operand });
        }
      }
      if (!notAlwaysParenthesized) {
        const operand = dialect.readLeaf(tokens, from + 1, to);
        if (operand !== undefined) trees.add({ kind: 'not', operand: { kind: 'leaf', leaf: operand } });
      }
    }
    for (let k = from + 1; k < to - 1; k++) {
      const op = tokens[k] as string;
      if (!dialect.binaryOps.has(op)) continue;
      const lefts = full(from, k);
      if (lefts.length === 0) continue;
      const rights = full(k + 1, to);
      for (const left of lefts) for (const right of rights) trees.add({ kind: 'binary', op, left, right });
    }
    const result = trees.result();
    bareMemo.set(key, result);
    return result;
  };

  return full(0, n);
}

function leavesOf<L>(tree: ExprTree<L>, dialect: InfixDialect<L>, into: Map<string, number>): void {
  if (tree.kind === 'leaf') {
    const key = dialect.leafKey(tree.leaf);
    if (!into.has(key)) into.set(key, into.size);
  } else if (tree.kind === 'not') {
    leavesOf(tree.operand, dialect, into);
  } else {
    leavesOf(tree.left, dialect, into);
    leavesOf(tree.right, dialect, into);
  }
}

function truth<L>(tree: ExprTree<L>, dialect: InfixDialect<L>, index: Map<string, number>, assignment: number): boolean {
  switch (tree.kind) {
    case 'leaf':
      return ((assignment >> (index.get(dialect.leafKey(tree.leaf)) as number)) & 1) === 1;
    case 'not':
      return !truth(tree.operand, dialect, index, assignment);
    case 'binary':
      return dialect.applyBinary(tree.op, truth(tree.left, dialect, index, assignment), truth(tree.right, dialect, index, assignment));
  }
}

/** True when the trees compute the same function of their leaves, each leaf taken as a free variable. */
function allEquivalent<L>(trees: readonly ExprTree<L>[], dialect: InfixDialect<L>): boolean {
  const index = new Map<string, number>();
  for (const tree of trees) leavesOf(tree, dialect, index);
  if (index.size > MAX_LEAVES_FOR_EQUIVALENCE) return false;
  const [first, ...rest] = trees;
  if (!first) return true;
  for (let assignment = 0; assignment < 1 << index.size; assignment++) {
    const expected = truth(first, dialect, index, assignment);
    if (rest.some((tree) => truth(tree, dialect, index, assignment) !== expected)) return false;
  }
  return true;
}

function sameTokens(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((token, i) => token === b[i]);
}

/** Reads setools-printed infix tokens into the one tree they can mean, or says why not. */
export function readSetoolsInfix<L>(tokens: readonly string[], dialect: InfixDialect<L>): InfixReading<L> {
  if (tokens.length === 0) return { ok: false, reason: 'empty expression' };
  let candidates: ExprTree<L>[];
  try {
    candidates = candidateTrees(tokens, dialect);
  } catch (err) {
    if (err instanceof TooManyReadings) return { ok: false, reason: 'too many possible readings to check' };
    throw err;
  }
  const exact = candidates.filter((tree) => sameTokens(renderAsSetools(tree, dialect), tokens));
  const [first] = exact;
  if (!first) return { ok: false, reason: `not a setools-printed expression: "${tokens.join(' ')}"` };
  if (exact.length > 1 && !allEquivalent(exact, dialect)) {
    return { ok: false, reason: `ambiguous as printed by setools (${exact.length} different readings): "${tokens.join(' ')}"` };
  }
  return { ok: true, tree: first };
}

/** The postfix a tree is stored as, in the order setools' printer needs to print it as the tree reads. */
export function toPostfix<L>(tree: ExprTree<L>, dialect: Pick<InfixDialect<L>, 'leafPostfix' | 'printer'>): PostfixItem[] {
  switch (tree.kind) {
    case 'leaf':
      return dialect.leafPostfix(tree.leaf);
    case 'not':
      return [...toPostfix(tree.operand, dialect), { operator: dialect.printer.notToken }];
    case 'binary': {
      const left = toPostfix(tree.left, dialect);
      const right = toPostfix(tree.right, dialect);
      const ordered = dialect.printer.swapBinaryOperands ? [...right, ...left] : [...left, ...right];
      return [...ordered, { operator: tree.op }];
    }
  }
}

export function renderAsSetools<L>(tree: ExprTree<L>, dialect: Pick<InfixDialect<L>, 'leafPostfix' | 'printer'>): string[] {
  return printSetoolsInfix(toPostfix(tree, dialect), dialect.printer);
}

/**
 * setools' postfix-to-infix walk, shared by both printers: an operator's result is parenthesized
 * unless its precedence is below that of the operator processed just before it (in postfix order).
 */
export type PostfixItem = { readonly operand: readonly string[] } | { readonly operator: string };

export interface SetoolsPrinterRules {
  readonly precedence: Readonly<Record<string, number>>;
  readonly startPrecedence: number;
  readonly notToken: string;
  /** Conditionals pop the operands in reverse, so `a b &&` prints as `b && a`. */
  readonly swapBinaryOperands: boolean;
  /** Constraints print `not ( x )` even around a single operand. */
  readonly notAlwaysParenthesized: boolean;
}

type Printed = { readonly tokens: readonly string[]; readonly compound: boolean };

export function printSetoolsInfix(postfix: readonly PostfixItem[], rules: SetoolsPrinterRules): string[] {
  const stack: Printed[] = [];
  let previous = rules.startPrecedence;
  for (const item of postfix) {
    if ('operand' in item) {
      stack.push({ tokens: item.operand, compound: false });
      continue;
    }
    const op = item.operator;
    const precedence = rules.precedence[op];
    if (precedence === undefined) throw new Error(`unknown operator ${op}`);
    if (op === rules.notToken) {
      const operand = stack.pop();
      if (!operand) throw new Error('operator without operand');
      const parenthesize = rules.notAlwaysParenthesized || operand.compound;
      stack.push({ tokens: parenthesize ? [op, '(', ...operand.tokens, ')'] : [op, ...operand.tokens], compound: true });
    } else {
      const second = stack.pop();
      const first = stack.pop();
      if (!first || !second) throw new Error('operator without operands');
      const [left, right] = rules.swapBinaryOperands ? [second, first] : [first, second];
      const body = [...left.tokens, op, ...right.tokens];
      stack.push({ tokens: precedence < previous ? body : ['(', ...body, ')'], compound: true });
    }
    previous = precedence;
  }
  return stack.flatMap((printed) => printed.tokens);
}
