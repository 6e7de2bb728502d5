/**
 * `constrain` / `mlsconstrain` statements in CIL, as `checkpolicy -b -C` writes them from a binary
 * policy: `(mlsconstrain (file (read write)) (or (dom h1 h2) (neq t1 mcs_constrained_type)))`.
 * CIL is prefix notation, so unlike seinfo's printed infix it has exactly one reading.
 */
import type { ConstraintComparison, ConstraintLeaf, ConstraintOperand, ConstraintRule, ConstraintTree, ParsedConstraints } from './constraint-expression';

type SExpr = string | SExpr[];

class CilSyntaxError extends Error {}

function readSExpr(text: string): SExpr {
  const tokens = text.match(/[()]|[^\s()]+/g) ?? [];
  let at = 0;
  const read = (): SExpr => {
    const token = tokens[at++];
    if (token === undefined) throw new CilSyntaxError('unexpected end');
    if (token === ')') throw new CilSyntaxError('unexpected ")"');
    if (token !== '(') return token;
    const list: SExpr[] = [];
    while (tokens[at] !== ')') {
      if (at >= tokens.length) throw new CilSyntaxError('missing ")"');
      list.push(read());
    }
    at++;
    return list;
  };
  const expr = read();
  if (at !== tokens.length) throw new CilSyntaxError('text after the statement');
  return expr;
}

function writeSExpr(expr: SExpr): string {
  return Array.isArray(expr) ? `(${expr.map(writeSExpr).join(' ')})` : expr;
}

const OPERATORS: Readonly<Record<string, ConstraintComparison>> = { eq: '==', neq: '!=', dom: 'dom', domby: 'domby', incomp: 'incomp' };
const OPERANDS: ReadonlySet<string> = new Set(['u1', 'u2', 'u3', 'r1', 'r2', 'r3', 't1', 't2', 't3', 'l1', 'l2', 'h1', 'h2']);

function isName(expr: SExpr | undefined): expr is string {
  return typeof expr === 'string' && /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(expr);
}

function toTree(expr: SExpr): ConstraintTree {
  if (!Array.isArray(expr)) throw new CilSyntaxError(`"${expr}" is not an expression`);
  const [head, ...args] = expr;
  if (head === 'and' || head === 'or') {
    const [left, right] = args;
    if (args.length !== 2 || left === undefined || right === undefined) throw new CilSyntaxError(`${head} takes two operands`);
    return { kind: 'binary', op: head, left: toTree(left), right: toTree(right) };
  }
  if (head === 'not') {
    const [operand] = args;
    if (args.length !== 1 || operand === undefined) throw new CilSyntaxError('not takes one operand');
    return { kind: 'not', operand: toTree(operand) };
  }
  const op = typeof head === 'string' ? OPERATORS[head] : undefined;
  const [left, right] = args;
  if (op === undefined || args.length !== 2 || typeof left !== 'string' || !OPERANDS.has(left) || right === undefined) {
    throw new CilSyntaxError(`unsupported expression (${[head, ...args].map(String).join(' ')})`);
  }
  let rightSide: ConstraintLeaf['right'];
  if (typeof right === 'string' && OPERANDS.has(right)) rightSide = right as ConstraintOperand;
  else if (isName(right)) rightSide = { names: [right] };
  else if (Array.isArray(right) && right.length > 0 && right.every(isName)) rightSide = { names: right };
  else throw new CilSyntaxError(`unsupported name set in (${head} ${left} …)`);
  return { kind: 'leaf', leaf: { left: left as ConstraintOperand, op, right: rightSide } };
}

/** Keeps only the constraint statements of a (large) CIL policy; each is written on one line. */
export function selectCilConstraintLines(cil: string): string {
  return cil
    .split('\n')
    .filter((line) => line.startsWith('(constrain ') || line.startsWith('(mlsconstrain '))
    .join('\n');
}

export function parseCilConstraints(cil: string): ParsedConstraints {
  const rules: ConstraintRule[] = [];
  const unparsedLines: string[] = [];
  for (const raw of cil.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('(constrain ') && !line.startsWith('(mlsconstrain ')) continue;
    try {
      const statement = readSExpr(line);
      const [kind, classPerms, expression] = Array.isArray(statement) ? statement : [];
      if (!Array.isArray(statement) || statement.length !== 3 || (kind !== 'constrain' && kind !== 'mlsconstrain')) {
        throw new CilSyntaxError('not a constraint statement');
      }
      const [tclass, perms] = Array.isArray(classPerms) ? classPerms : [];
      if (!isName(tclass) || !Array.isArray(perms) || perms.length === 0 || !perms.every(isName) || expression === undefined) {
        throw new CilSyntaxError('expected (CLASS (PERM …)) before the expression');
      }
      rules.push({ kind, tclass, perms, text: writeSExpr(expression), reading: { ok: true, tree: toTree(expression) } });
    } catch (err) {
      if (!(err instanceof CilSyntaxError)) throw err;
      unparsedLines.push(line);
    }
  }
  return { rules, unparsedLines };
}
