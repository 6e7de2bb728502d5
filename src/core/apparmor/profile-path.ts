/**
 * A file name as an AppArmor profile rule, matching that one file and nothing else.
 *
 * A profile rule's path is a glob: `*`, `**`, `?`, `[...]`, `{a,b}` and `^` widen it, `@{NAME}` expands a
 * variable, a `"` ends the quoted string, a `\` starts an escape (`\n`, `\a`, `\x41`, `\012` turn into other
 * bytes). A file name copied into a rule as it is could grant more than that file: a disk named
 * `/home/u/*.img` would grant every image of the directory, `@{HOME}/x` a file in every home. So the
 * name is always written in double quotes, with a backslash before each of `\ " * ? [ ] { } ^`, the only
 * characters the parser reads specially inside quotes (a `{` escaped also ends any `@{`). Every other
 * byte, whitespace, `,`, `#`, `(`, `|`, `.` and non-ASCII included, stands for itself there: the
 * property tests compile random names with the real apparmor_parser and read back a DFA that accepts
 * exactly the name.
 *
 * What cannot be written so is refused rather than approximated: control characters (a newline would
 * end the rule; the parser's own escapes for them are the ones that rewrite bytes), a trailing backslash
 * (the lexer takes the backslash and the closing quote for an escaped quote), relative paths and
 * paths that are not in the kernel's canonical form (`//`, `/./`, `/../`, a trailing `/`): the kernel
 * matches the canonical path, so such a rule would never match what it names.
 */

/** The characters the profile parser reads specially inside a quoted path. */
const SPECIAL = /[\\"*?[\]{}^]/g;
// Control characters have no safe spelling (the parser's escapes for them rewrite bytes).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

export class ProfilePathError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`${JSON.stringify(path)} cannot be written in an AppArmor profile: ${reason}`);
    this.name = 'ProfilePathError';
  }
}

/** Why a path cannot be a profile rule, or undefined when it can. */
export function profilePathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'it is not an absolute path';
  if (CONTROL.test(path)) return 'it contains a control character (a newline, a tab, …)';
  if (path.length > 1 && path.endsWith('/')) return 'it ends with "/"';
  // The parser's lexer reads `\"` inside quotes as an escaped quote and keeps going, so a closing quote
  // right after the escaped backslash would be read as part of the name, and the rule would run on.
  if (path.endsWith('\\')) return 'it ends with a backslash';
  if (path.includes('//')) return 'it contains "//"';
  if (path.split('/').some((part) => part === '.' || part === '..')) return 'it contains a "." or ".." component';
  return undefined;
}

/** The path as a quoted profile path that matches exactly it. Throws ProfilePathError when it cannot. */
export function quoteProfilePath(path: string): string {
  const problem = profilePathProblem(path);
  if (problem !== undefined) throw new ProfilePathError(path, problem);
  return `"${path.replace(SPECIAL, (c) => `\\${c}`)}"`;
}

/**
 * A directory and everything below it: the quoted directory, then an unquoted glob that only goes
 * down (`dir/` itself and `dir/**`). The glob is ours; the name before it is escaped like any path.
 */
export function quoteProfileTree(dir: string): { dir: string; below: string } {
  const quoted = quoteProfilePath(dir);
  const inner = quoted.slice(1, -1);
  return { dir: `"${inner}/"`, below: `"${inner}/**"` };
}

/**
 * The path a quoted profile path stands for: the inverse of quoteProfilePath, for rules this module
 * wrote (the audit reads them back). Returns undefined for anything quoteProfilePath never writes
 * (an unescaped glob character, a stray escape).
 */
export function unquoteProfilePath(quoted: string): string | undefined {
  if (quoted.length < 2 || !quoted.startsWith('"') || !quoted.endsWith('"')) return undefined;
  let out = '';
  const inner = quoted.slice(1, -1);
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i] as string;
    if (c === '\\') {
      const next = inner[i + 1];
      if (next === undefined || !'\\"*?[]{}^'.includes(next)) return undefined;
      out += next;
      i++;
    } else if ('"*?[]{}^'.includes(c)) {
      return undefined;
    } else {
      out += c;
    }
  }
  return profilePathProblem(out) === undefined ? out : undefined;
}
