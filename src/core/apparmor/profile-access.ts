/**
 * "May this profile open that file with that mode?", answered from a profile's text the way the kernel
 * answers it from the compiled profile: the union of the profile's allow rules whose path glob matches,
 * minus what its deny rules that match take away (a deny rule always wins, whatever the order). This is
 * what the audit reads under AppArmor, where no file carries a label: the rules are the whole answer,
 * and the answer names the rule that grants (or denies) so that a person can check it.
 *
 * What is read: the rules of one profile's own block (not its hats or child profiles), with the
 * `include`s it names spliced in (their texts given by the caller: the core reads no files), the
 * qualifiers `deny`, `allow`, `audit`, `owner` and the `file` keyword, both rule orders (`PATH PERMS` and
 * `PERMS PATH`), and `@{VAR}` variables defined in the profile or its includes (tunables). A glob follows
 * apparmor.d(5) and the parser's conversion: `*` is any run of characters but `/`, `**` any run at all,
 * both matching at least one character right after a `/` (so `/d/**` does not match `/d/` itself), `?`
 * one character but `/`, `[...]` a class, `{a,b}` alternatives, and a backslash makes the next character
 * plain: that is how profile-path.ts writes a file name, so a name full of glob characters matches only
 * itself. Other rules (network, signal, ptrace, capability, link, mount…) grant no file and are skipped.
 *
 * Modes are the letters of apparmor.d: r, w, a, k, l, m, and x for any exec mode; `w` holds `a` (the
 * kernel lets a write permission append). An `owner` rule counts only when the caller says the file is
 * owned by the process's uid.
 */

/** A file rule as read from a profile. */
export interface FileRule {
  /** The rule as written, without its trailing comma. */
  readonly text: string;
  /** Where it was read: the profile itself or an include's name. */
  readonly source: string;
  readonly deny: boolean;
  readonly owner: boolean;
  /** The path glob as written (quotes and escapes kept). */
  readonly glob: string;
  /** Permission letters (r w a k l m x). */
  readonly perms: ReadonlySet<string>;
}

export interface ProfileQuery {
  readonly path: string;
  /** Letters of r w a k l m x, e.g. "r" or "rw". */
  readonly mode: string;
  /** The file is owned by the confined process's uid (owner rules apply). */
  readonly owned?: boolean;
}

export interface ProfileAccessAnswer {
  readonly granted: boolean;
  /** The allow rules that match the path and give at least one asked letter, in profile order. */
  readonly allowedBy: readonly FileRule[];
  /** The deny rules that match and take away an asked letter. */
  readonly deniedBy: readonly FileRule[];
  /** Asked letters that no rule leaves granted. */
  readonly missing: readonly string[];
  /** One sentence: the rule that grants, or why not. */
  readonly reason: string;
}

/** A profile ready to be asked: its file rules and the regexes of their globs. */
export interface ParsedProfile {
  readonly name: string;
  readonly rules: readonly FileRule[];
  /** Rules whose glob could not be read (an undefined variable, a bad class): they match nothing. */
  readonly unreadable: readonly { rule: string; problem: string }[];
}

export class ProfileSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProfileSyntaxError';
  }
}

/** An include's text by its name (`abstractions/base`, `tunables/global`); undefined when not found. */
export type IncludeTexts = ReadonlyMap<string, string>;

const MAX_INCLUDE_DEPTH = 16;
const PERM_LETTERS = /^[rwaklmixuUpPcC]+$/;
const QUALIFIERS = new Set(['audit', 'deny', 'allow', 'owner', 'other', 'quiet', 'priority']);
const INCLUDE = /^#?include\s+(if\s+exists\s+)?(?:<([^>\n]+)>|"([^"\n]+)")/;
const VARIABLE = /^@\{([A-Za-z_][A-Za-z0-9_]*)\}\s*(\+?=)\s*([^\n]*)/;

type Statement =
  | { kind: 'rule'; text: string; depth: number; source: string }
  | { kind: 'open'; header: string; depth: number };

interface Scan {
  readonly statements: Statement[];
  readonly variables: Map<string, string[]>;
  readonly includes: string[];
}

/** The include names a text refers to (to fetch before asking), outside comments. */
export function profileIncludes(text: string): string[] {
  const names: string[] = [];
  for (const line of text.split('\n')) {
    const m = INCLUDE.exec(line.trim());
    if (m) names.push((m[2] ?? m[3]) as string);
  }
  return names;
}

/** Splits a variable's value into its words (quoted words keep their spaces). */
function valueWords(value: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  const v = value.replace(/#.*$/, '');
  while ((m = re.exec(v)) !== null) words.push((m[1] ?? m[2]) as string);
  return words;
}

/**
 * Cuts a text into statements: rules end at a comma outside quotes and glob braces, a `{` after a space
 * opens a block and `}` closes one, includes and variable assignments end with their line.
 */
function scan(text: string, source: string, includes: IncludeTexts, into: Scan, depth0: number, seen: readonly string[]): void {
  let depth = depth0;
  let current = '';
  let inQuote = false;
  let braces = 0;
  const flush = (kind: 'rule' | 'open') => {
    const t = current.trim();
    current = '';
    if (kind === 'open') into.statements.push({ kind, header: t, depth });
    else if (t !== '') into.statements.push({ kind, text: t, depth, source });
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (inQuote) {
      current += c;
      if (c === '\\' && i + 1 < text.length) current += text[++i];
      else if (c === '"') inQuote = false;
      continue;
    }
    if (current.trim() === '' && braces === 0) {
      const rest = text.slice(i, text.indexOf('\n', i) === -1 ? undefined : text.indexOf('\n', i));
      const inc = INCLUDE.exec(rest);
      if (inc) {
        const name = (inc[2] ?? inc[3]) as string;
        into.includes.push(name);
        const body = includes.get(name);
        if (body === undefined && !inc[1]) throw new ProfileSyntaxError(`${source}: include <${name}> was not given`);
        if (body !== undefined) {
          if (seen.includes(name) || seen.length >= MAX_INCLUDE_DEPTH) throw new ProfileSyntaxError(`${source}: include <${name}> loops or nests too deep`);
          scan(body, name, includes, into, depth, [...seen, name]);
        }
        i += rest.length - 1;
        current = '';
        continue;
      }
      if (c === '#') {
        const end = text.indexOf('\n', i);
        i = end === -1 ? text.length : end;
        continue;
      }
      const v = VARIABLE.exec(rest);
      if (v) {
        const name = v[1] as string;
        const words = valueWords(v[3] as string);
        into.variables.set(name, v[2] === '+=' ? [...(into.variables.get(name) ?? []), ...words] : words);
        i += rest.length - 1;
        continue;
      }
    }
    if (c === '"') {
      inQuote = true;
      current += c;
    } else if (c === '#' && braces === 0 && /\s$/.test(current)) {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end;
      current += ' ';
    } else if (c === '{') {
      // A block opens after a space (`profile x {`); a glob's or variable's brace follows a path character.
      if (braces === 0 && (current === '' || /\s$/.test(current) || /\)$/.test(current.trimEnd()))) {
        flush('open');
        depth++;
      } else {
        braces++;
        current += c;
      }
    } else if (c === '}') {
      if (braces > 0) {
        braces--;
        current += c;
      } else {
        flush('rule');
        depth--;
        if (depth < depth0) throw new ProfileSyntaxError(`${source}: a "}" closes more blocks than were opened`);
      }
    } else if (c === ',' && braces === 0) {
      flush('rule');
    } else {
      current += c;
    }
  }
  if (inQuote) throw new ProfileSyntaxError(`${source}: a quoted string is not closed`);
  if (depth !== depth0) throw new ProfileSyntaxError(`${source}: a block is not closed`);
  if (current.trim() !== '' && !/^abi\s/.test(current.trim())) into.statements.push({ kind: 'rule', text: current.trim(), depth, source });
}

/** The words of a rule, with quoted strings and glob braces kept whole. */
function ruleWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inQuote = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (inQuote) {
      word += c;
      if (c === '\\' && i + 1 < text.length) word += text[++i];
      else if (c === '"') inQuote = false;
    } else if (/\s/.test(c)) {
      if (word !== '') words.push(word);
      word = '';
    } else {
      if (c === '"') inQuote = true;
      word += c;
    }
  }
  if (word !== '') words.push(word);
  return words;
}

const isPathWord = (w: string) => /^(\/|@\{|"\/|"@\{|\{)/.test(w);

/** The letters a permission word grants (any exec mode is x; w holds a). */
function permLetters(word: string): Set<string> {
  const letters = new Set<string>();
  const exec = /[ixuUpPcC]/.test(word) && word.includes('x');
  for (const c of word) if ('rwaklm'.includes(c)) letters.add(c);
  if (exec) letters.add('x');
  if (letters.has('w')) letters.add('a');
  return letters;
}

/** A file rule from a statement, or undefined when the statement is not one. */
function fileRule(text: string, source: string): FileRule | undefined {
  const words = ruleWords(text);
  let deny = false;
  let owner = false;
  let k = 0;
  for (; k < words.length; k++) {
    const w = words[k] as string;
    if (!QUALIFIERS.has(w) && !/^priority=/.test(w)) break;
    if (w === 'deny') deny = true;
    if (w === 'owner') owner = true;
  }
  if (words[k] === 'file') k++;
  const rest = words.slice(k);
  const arrow = rest.indexOf('->');
  const main = arrow === -1 ? rest : rest.slice(0, arrow);
  let glob: string | undefined;
  let perms: string | undefined;
  if (main.length === 2 && isPathWord(main[0] as string) && PERM_LETTERS.test(main[1] as string)) [glob, perms] = main as [string, string];
  else if (main.length === 2 && PERM_LETTERS.test(main[0] as string) && isPathWord(main[1] as string)) [perms, glob] = main as [string, string];
  if (glob === undefined || perms === undefined) return undefined;
  // The text with its spacing folded (quoted names kept whole): it is shown as the reason.
  return { text: words.join(' '), source, deny, owner, glob, perms: permLetters(perms) };
}

/** The profile's own block: the statements one level inside its header, includes spliced. */
function profileBlock(scanned: Scan, name: string | undefined): { name: string; rules: Statement[] } {
  const opens = scanned.statements.map((s, i) => ({ s, i })).filter((x) => x.s.kind === 'open' && x.s.depth === 0);
  const headerName = (h: string) => {
    const words = ruleWords(h.replace(/\bflags\s*=\s*\([^)]*\)/, '').trim());
    const w = words[0] === 'profile' ? words[1] : words[0];
    return w?.replace(/^"|"$/g, '');
  };
  const chosen = name === undefined ? opens[0] : opens.find((x) => headerName((x.s as { header: string }).header) === name);
  if (!chosen) throw new ProfileSyntaxError(name === undefined ? 'the text holds no profile' : `the text holds no profile ${name}`);
  const rules: Statement[] = [];
  for (let i = chosen.i + 1; i < scanned.statements.length; i++) {
    const s = scanned.statements[i] as Statement;
    if (s.depth === 0) break;
    if (s.depth === 1 && s.kind === 'rule') rules.push(s);
  }
  return { name: headerName((chosen.s as { header: string }).header) ?? '', rules };
}

/** Expands `@{VAR}` into `{a,b}` alternatives (values may refer to other variables). */
function expandVariables(glob: string, variables: ReadonlyMap<string, readonly string[]>, depth = 0): string {
  if (depth > 8) throw new ProfileSyntaxError('variables refer to each other in a loop');
  return glob.replace(/(?<!\\)@\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole: string, name: string, at: number) => {
    const values = variables.get(name);
    if (values === undefined || values.length === 0) throw new ProfileSyntaxError(`@{${name}} is not defined`);
    // `@{HOMEDIRS}/x` with values ending in "/": the slash is folded inside each alternative.
    const slashAfter = glob[at + whole.length] === '/';
    const expanded = values.map((v) => expandVariables(v, variables, depth + 1)).map((v) => (slashAfter && v.length > 1 ? v.replace(/\/+$/, '') : v));
    return expanded.length === 1 ? (expanded[0] as string) : `{${expanded.join(',')}}`;
  });
}

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|/-]/g;
const literal = (c: string) => c.replace(REGEX_SPECIAL, (x) => `\\${x}`);

/** An AppArmor path glob (quotes removed, variables expanded) as an anchored regex. */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  let alternatives = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    const prevSlash = i > 0 && glob[i - 1] === '/' && glob[i - 2] !== '\\';
    if (c === '\\') {
      const next = glob[i + 1];
      if (next === undefined) throw new ProfileSyntaxError(`${glob}: ends with a backslash`);
      out += literal(next);
      i++;
    } else if (c === '*') {
      if (prevSlash) out += '[^/\\x00]';
      if (glob[i + 1] === '*') {
        out += '[^\\x00]*';
        while (glob[i + 1] === '*') i++;
      } else {
        out += '[^/\\x00]*';
      }
    } else if (c === '?') {
      out += '[^/\\x00]';
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) throw new ProfileSyntaxError(`${glob}: a "[" class is not closed`);
      let body = glob.slice(i + 1, end);
      const negate = body.startsWith('^');
      if (negate) body = body.slice(1);
      out += `[${negate ? '^/' : ''}${body.replace(/[\\\]^]/g, (x) => `\\${x}`)}]`;
      i = end;
    } else if (c === '{') {
      out += '(?:';
      alternatives++;
    } else if (c === ',' && alternatives > 0) {
      out += '|';
    } else if (c === '}' && alternatives > 0) {
      out += ')';
      alternatives--;
    } else {
      out += literal(c);
    }
  }
  if (alternatives !== 0) throw new ProfileSyntaxError(`${glob}: a "{" is not closed`);
  return new RegExp(`^${out}$`);
}

/** The glob a rule's path word stands for: quotes removed (escapes kept for the glob), variables expanded. */
function globOf(word: string, variables: ReadonlyMap<string, readonly string[]>): string {
  let glob = word;
  if (glob.startsWith('"')) {
    if (!glob.endsWith('"') || glob.length < 2) throw new ProfileSyntaxError(`${word}: a quoted path is not closed`);
    glob = glob.slice(1, -1);
  }
  // The parser folds repeated slashes (`@{PROC}/x` with @{PROC}=/proc/): the kernel's paths have none.
  return expandVariables(glob, variables).replace(/\/{2,}/g, '/');
}

const compiled = new WeakMap<FileRule, RegExp | null>();

/**
 * Reads a profile's text (and the texts of the includes it names, by name) into its file rules.
 * `name`: which profile of the text (default: the first). Throws ProfileSyntaxError on a text it
 * cannot read (an unclosed block or quote, a missing include that is not `if exists`).
 */
export function parseProfile(text: string, includes: IncludeTexts = new Map(), name?: string): ParsedProfile {
  const scanned: Scan = { statements: [], variables: new Map(), includes: [] };
  scan(text, 'profile', includes, scanned, 0, []);
  const block = profileBlock(scanned, name);
  const rules: FileRule[] = [];
  const unreadable: { rule: string; problem: string }[] = [];
  for (const s of block.rules) {
    if (s.kind !== 'rule') continue;
    const rule = fileRule(s.text, s.source);
    if (!rule) continue;
    try {
      compiled.set(rule, globToRegExp(globOf(rule.glob, scanned.variables)));
    } catch (err) {
      unreadable.push({ rule: rule.text, problem: (err as Error).message });
      compiled.set(rule, null);
    }
    rules.push(rule);
  }
  return { name: block.name, rules, unreadable };
}

/** Whether a rule's glob matches the path. */
export function ruleMatches(rule: FileRule, path: string): boolean {
  return compiled.get(rule)?.test(path) ?? false;
}

const describeRule = (r: FileRule) => `${r.source === 'profile' ? '' : `<${r.source}>: `}${r.text},`;

/** Does the profile grant every letter of `query.mode` on `query.path`? Deny rules win over allow rules. */
export function profileGrants(profile: ParsedProfile, query: ProfileQuery): ProfileAccessAnswer {
  const asked = [...new Set([...query.mode].filter((c) => 'rwaklmx'.includes(c)))];
  if (asked.length === 0 || asked.length !== [...query.mode].length) throw new ProfileSyntaxError(`mode ${JSON.stringify(query.mode)}: give letters of r w a k l m x`);
  const applies = (r: FileRule) => (!r.owner || query.owned === true) && ruleMatches(r, query.path);
  const matching = profile.rules.filter(applies);
  const allowedBy = matching.filter((r) => !r.deny && asked.some((c) => r.perms.has(c)));
  const deniedBy = matching.filter((r) => r.deny && asked.some((c) => r.perms.has(c)));
  const allowed = new Set(allowedBy.flatMap((r) => [...r.perms]));
  for (const r of deniedBy) for (const c of r.perms) allowed.delete(c);
  const missing = asked.filter((c) => !allowed.has(c));
  const granted = missing.length === 0;
  let reason: string;
  if (granted) {
    reason = `${profile.name} grants ${query.mode} by ${allowedBy.filter((r) => asked.some((c) => r.perms.has(c))).map(describeRule).join(' and ')}`;
  } else if (deniedBy.some((r) => missing.some((c) => r.perms.has(c)))) {
    reason = `${profile.name} denies ${missing.join('')} by ${deniedBy.map(describeRule).join(' and ')} (a deny rule wins)`;
  } else {
    reason = `no rule of ${profile.name} grants ${missing.join('')} on ${query.path}`;
  }
  return { granted, allowedBy, deniedBy, missing, reason };
}
