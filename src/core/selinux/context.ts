/**
 * SELinux security contexts `user:role:type[:level[-level]]` and MLS/MCS levels `sN[:cats]`:
 * parsing with precise errors, canonical formatting (as the kernel and libsepol write them), and the
 * dominance relations the MCS constraints are built from.
 */

/** A malformed context, level or category list; `field` says which part is wrong. */
export class ContextSyntaxError extends Error {
  constructor(
    readonly input: string,
    readonly field: 'context' | 'user' | 'role' | 'type' | 'range' | 'level' | 'sensitivity' | 'categories',
    readonly reason: string,
  ) {
    super(`invalid ${field} in "${input}": ${reason}`);
    this.name = 'ContextSyntaxError';
  }
}

/** A sensitivity with a set of categories, held as a sorted array of distinct category numbers. */
export interface Level {
  readonly sensitivity: number;
  readonly categories: readonly number[];
}

/** An MLS range: `low` is the current (effective) level, `high` the clearance. low == high for objects. */
export interface MlsRange {
  readonly low: Level;
  readonly high: Level;
}

export interface SecurityContext {
  readonly user: string;
  readonly role: string;
  readonly type: string;
  /** Absent on policies without MLS/MCS. */
  readonly range?: MlsRange;
}

// The policy language's identifier: a letter or underscore, then letters, digits, `_`, `.` or `-`.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const SENSITIVITY = /^s(0|[1-9][0-9]*)$/;
const CATEGORY = /^c(0|[1-9][0-9]*)$/;
// Far above any real policy (1024 categories is the norm); keeps a typo like c99999999 from allocating.
const MAX_CATEGORY = 65535;
const MAX_SENSITIVITY = 65535;

function parseIdentifier(input: string, field: 'user' | 'role' | 'type', value: string): string {
  if (value === '') throw new ContextSyntaxError(input, field, 'is empty');
  if (!IDENTIFIER.test(value)) {
    throw new ContextSyntaxError(input, field, `"${value}" is not an identifier (letters, digits, _ . -, not starting with a digit)`);
  }
  return value;
}

function parseNumbered(input: string, field: 'sensitivity' | 'categories', token: string, pattern: RegExp, max: number): number {
  const what = field === 'sensitivity' ? 'sensitivity sN' : 'category cN';
  if (!pattern.test(token)) throw new ContextSyntaxError(input, field, `"${token}" is not a ${what}`);
  const n = Number(token.slice(1));
  if (n > max) throw new ContextSyntaxError(input, field, `"${token}" is out of range (at most ${max})`);
  return n;
}

/** Parses a category list such as `c0.c5,c9` into a sorted array of distinct numbers. */
export function parseCategories(text: string, input: string = text): number[] {
  if (text === '') throw new ContextSyntaxError(input, 'categories', 'the category list after ":" is empty');
  const seen = new Set<number>();
  for (const item of text.split(',')) {
    if (item === '') throw new ContextSyntaxError(input, 'categories', 'empty item in the category list (stray comma)');
    const bounds = item.split('.');
    if (bounds.length > 2) throw new ContextSyntaxError(input, 'categories', `"${item}" has more than one "."`);
    const from = parseNumbered(input, 'categories', bounds[0] ?? '', CATEGORY, MAX_CATEGORY);
    const to = bounds.length === 2 ? parseNumbered(input, 'categories', bounds[1] ?? '', CATEGORY, MAX_CATEGORY) : from;
    if (to < from) throw new ContextSyntaxError(input, 'categories', `range "${item}" runs backwards`);
    for (let c = from; c <= to; c++) seen.add(c);
  }
  return [...seen].sort((a, b) => a - b);
}

/** Parses a level `sN` or `sN:cats`. */
export function parseLevel(text: string, input: string = text): Level {
  if (text === '') throw new ContextSyntaxError(input, 'level', 'is empty');
  const colon = text.indexOf(':');
  const sensText = colon < 0 ? text : text.slice(0, colon);
  const sensitivity = parseNumbered(input, 'sensitivity', sensText, SENSITIVITY, MAX_SENSITIVITY);
  const categories = colon < 0 ? [] : parseCategories(text.slice(colon + 1), input);
  return { sensitivity, categories };
}

/** Parses `low[-high]`; `high` must dominate `low`. */
export function parseRange(text: string, input: string = text): MlsRange {
  if (text === '') throw new ContextSyntaxError(input, 'range', 'is empty');
  const parts = text.split('-');
  if (parts.length > 2) throw new ContextSyntaxError(input, 'range', 'has more than one "-"');
  const low = parseLevel(parts[0] ?? '', input);
  const high = parts.length === 2 ? parseLevel(parts[1] ?? '', input) : low;
  if (!dominates(high, low)) {
    throw new ContextSyntaxError(input, 'range', `high level ${formatLevel(high)} does not dominate low level ${formatLevel(low)}`);
  }
  return { low, high };
}

/** Parses `user:role:type[:range]`. */
export function parseContext(text: string): SecurityContext {
  if (typeof text !== 'string' || text.trim() === '') throw new ContextSyntaxError(String(text), 'context', 'is empty');
  if (text !== text.trim()) throw new ContextSyntaxError(text, 'context', 'has leading or trailing whitespace');
  const fields = text.split(':');
  if (fields.length < 3) {
    throw new ContextSyntaxError(text, 'context', `expected user:role:type[:level], found ${fields.length} field${fields.length === 1 ? '' : 's'}`);
  }
  const user = parseIdentifier(text, 'user', fields[0] ?? '');
  const role = parseIdentifier(text, 'role', fields[1] ?? '');
  const type = parseIdentifier(text, 'type', fields[2] ?? '');
  if (fields.length === 3) return { user, role, type };
  const range = parseRange(fields.slice(3).join(':'), text);
  return { user, role, type, range };
}

/** Writes categories the way the kernel does: runs of two or more consecutive numbers as `cA.cB`. */
export function formatCategories(categories: readonly number[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < categories.length) {
    const start = categories[i] as number;
    let end = start;
    while (i + 1 < categories.length && categories[i + 1] === end + 1) {
      end++;
      i++;
    }
    // The kernel's canonical form: a dot only for a run of three or more; two neighbours are listed (c3,c4).
    out.push(end === start ? `c${start}` : end === start + 1 ? `c${start},c${end}` : `c${start}.c${end}`);
    i++;
  }
  return out.join(',');
}

export function formatLevel(level: Level): string {
  return level.categories.length === 0 ? `s${level.sensitivity}` : `s${level.sensitivity}:${formatCategories(level.categories)}`;
}

/** A range with low == high is written once, as libsepol does. */
export function formatRange(range: MlsRange): string {
  const low = formatLevel(range.low);
  return levelEquals(range.low, range.high) ? low : `${low}-${formatLevel(range.high)}`;
}

export function formatContext(context: SecurityContext): string {
  const base = `${context.user}:${context.role}:${context.type}`;
  return context.range ? `${base}:${formatRange(context.range)}` : base;
}

/** The canonical spelling of a context; throws ContextSyntaxError when malformed. */
export function canonicalContext(text: string): string {
  return formatContext(parseContext(text));
}

/** What is wrong with a label as written (the parser's words), or undefined when it is a well-formed context. */
export function labelSyntaxProblem(text: string): string | undefined {
  try {
    parseContext(text);
    return undefined;
  } catch (e) {
    if (e instanceof ContextSyntaxError) return e.message;
    throw e;
  }
}

/**
 * The problem of a label the user gave in `field` (a definition's seclabel, an XML element, a helper
 * request's label), as a message that names the field; undefined when the label is usable. With
 * `needsLevel`, a label without an MCS/MLS level is refused: sVirt confines by level, and a process or
 * image label without one escapes the MCS constraint.
 */
export function staticLabelProblem(field: string, text: string, options: { needsLevel?: boolean } = {}): string | undefined {
  let context: SecurityContext;
  try {
    context = parseContext(text);
  } catch (e) {
    if (e instanceof ContextSyntaxError) return `${field}: ${e.message}`;
    throw e;
  }
  if (options.needsLevel && context.range === undefined) return `${field} must carry an MCS/MLS level (user:role:type:s0:cN,cM), found "${text}"`;
  return undefined;
}

export function canonicalLevel(text: string): string {
  return formatLevel(parseLevel(text));
}

export function canonicalRange(text: string): string {
  return formatRange(parseRange(text));
}

function isSubset(small: readonly number[], big: readonly number[]): boolean {
  // Both sorted: a single merge walk.
  let j = 0;
  for (const c of small) {
    while (j < big.length && (big[j] as number) < c) j++;
    if (j >= big.length || big[j] !== c) return false;
    j++;
  }
  return true;
}

/** `a dom b`: a's sensitivity is at least b's and a's categories include all of b's. */
export function dominates(a: Level, b: Level): boolean {
  return a.sensitivity >= b.sensitivity && isSubset(b.categories, a.categories);
}

/** `a domby b`. */
export function dominatedBy(a: Level, b: Level): boolean {
  return dominates(b, a);
}

export function levelEquals(a: Level, b: Level): boolean {
  return a.sensitivity === b.sensitivity && a.categories.length === b.categories.length && a.categories.every((c, i) => b.categories[i] === c);
}

/** `a incomp b`: neither dominates the other. */
export function incomparable(a: Level, b: Level): boolean {
  return !dominates(a, b) && !dominates(b, a);
}

export type LevelRelation = 'eq' | 'dom' | 'domby' | 'incomp';

/** The single relation that holds between two levels (eq wins over dom/domby). */
export function compareLevels(a: Level, b: Level): LevelRelation {
  if (levelEquals(a, b)) return 'eq';
  if (dominates(a, b)) return 'dom';
  if (dominates(b, a)) return 'domby';
  return 'incomp';
}

/** A context with its range replaced (e.g. a base label given a VM's MCS pair). */
export function withRange(context: SecurityContext, range: MlsRange): SecurityContext {
  return { ...context, range };
}

/** A single-level range (`low == high`), the shape of every object label and every sVirt process label. */
export function singleLevel(level: Level): MlsRange {
  return { low: level, high: level };
}

/** The level (range) a label carries, e.g. `s0:c1,c2`; null when there is none or the label is not a context. */
export function levelOfLabel(label: string | null): string | null {
  if (!label) return null;
  try {
    const range = parseContext(label).range;
    return range ? formatRange(range) : null;
  } catch {
    return null;
  }
}
