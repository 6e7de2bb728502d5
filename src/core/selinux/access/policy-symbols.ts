/**
 * The policy's symbols as one `seinfo POLICY -x -t -a -b -c -u -r --common --constrain --sensitivity
 * --category --permissive` run prints them, section by section (`Types: 3936`, then one line per type).
 * Every section's announced count is checked against what was read, so a format change in seinfo
 * shows up as a problem instead of as silently missing symbols.
 */
import { ContextSyntaxError, parseRange, type MlsRange } from '../context';

export interface PolicyUser {
  readonly roles: ReadonlySet<string>;
  /** Absent on policies without MLS. */
  readonly range?: MlsRange;
}

export interface PolicySymbols {
  /** Primary type name to the attributes it has. */
  readonly types: ReadonlyMap<string, readonly string[]>;
  /** Alias to primary type name. */
  readonly aliases: ReadonlyMap<string, string>;
  readonly attributes: ReadonlySet<string>;
  /** Boolean states as stored in the policy (its defaults). */
  readonly booleans: ReadonlyMap<string, boolean>;
  /** Class to all its permissions, the inherited common ones included. */
  readonly classes: ReadonlyMap<string, ReadonlySet<string>>;
  readonly users: ReadonlyMap<string, PolicyUser>;
  /** Role to the types it is authorized for. */
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>;
  readonly sensitivities: ReadonlySet<number>;
  readonly categories: ReadonlySet<number>;
  readonly permissiveTypes: ReadonlySet<string>;
  /** What could not be read; a policy with problems answers nothing but `unknown`. */
  readonly problems: readonly string[];
}

const SECTION_HEADER = /^(Booleans|Categories|Classes|Commons|Permissive Types|Roles|Sensitivities|Types|Type Attributes|Users|Constraints): (\d+)$/;

const REQUIRED_SECTIONS = ['Booleans', 'Categories', 'Classes', 'Commons', 'Permissive Types', 'Roles', 'Sensitivities', 'Types', 'Type Attributes', 'Users'];

function splitSections(text: string): Map<string, { announced: number; lines: string[] }> {
  const sections = new Map<string, { announced: number; lines: string[] }>();
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    const header = SECTION_HEADER.exec(line);
    if (header) {
      current = [];
      sections.set(header[1] as string, { announced: Number(header[2]), lines: current });
    } else if (current && line.trim() !== '') {
      current.push(line);
    }
  }
  return sections;
}

/** `{ a b }` or `a` (as seinfo prints name lists) to the names. */
function nameList(text: string): string[] {
  const trimmed = text.trim();
  return trimmed.startsWith('{') ? trimmed.slice(1, -1).trim().split(/\s+/).filter(Boolean) : [trimmed];
}

function numbered(name: string, prefix: 's' | 'c'): number | undefined {
  const match = new RegExp(`^${prefix}(0|[1-9][0-9]*)$`).exec(name);
  return match ? Number(match[1]) : undefined;
}

export function parseSeinfoSymbols(text: string): PolicySymbols {
  const problems: string[] = [];
  const sections = splitSections(text);
  for (const name of REQUIRED_SECTIONS) {
    if (!sections.has(name)) problems.push(`seinfo printed no "${name}" section`);
  }
  const section = (name: string): string[] => sections.get(name)?.lines ?? [];
  const checkCount = (name: string, read: number): void => {
    const announced = sections.get(name)?.announced;
    if (announced !== undefined && announced !== read) problems.push(`seinfo announced ${announced} ${name.toLowerCase()} but ${read} were read`);
  };
  const unreadable = (name: string, line: string): void => {
    problems.push(`unreadable line in the ${name} section: "${line.trim()}"`);
  };

  const types = new Map<string, readonly string[]>();
  const aliases = new Map<string, string>();
  for (const line of section('Types')) {
    const match = /^\s*type (\S+)(?: alias (\{[^}]*\}|\S+?))?((?:, \S+)*);$/.exec(line);
    if (!match) {
      unreadable('Types', line);
      continue;
    }
    const name = match[1] as string;
    types.set(name, (match[3] ?? '').split(', ').filter(Boolean));
    if (match[2] !== undefined) for (const alias of nameList(match[2])) aliases.set(alias, name);
  }
  checkCount('Types', types.size);

  const attributes = new Set<string>();
  for (const line of section('Type Attributes')) {
    // Members follow on tab-indented lines; membership is taken from the Types section.
    if (line.startsWith('\t')) continue;
    const match = /^\s*attribute (\S+);$/.exec(line);
    if (match) attributes.add(match[1] as string);
    else unreadable('Type Attributes', line);
  }
  checkCount('Type Attributes', attributes.size);

  const booleans = new Map<string, boolean>();
  for (const line of section('Booleans')) {
    const match = /^\s*bool (\S+) (true|false);$/.exec(line);
    if (match) booleans.set(match[1] as string, match[2] === 'true');
    else unreadable('Booleans', line);
  }
  checkCount('Booleans', booleans.size);

  const commons = readPermissionBlocks('common', section('Commons'), problems);
  checkCount('Commons', commons.size);
  const classBlocks = readPermissionBlocks('class', section('Classes'), problems);
  checkCount('Classes', classBlocks.size);
  const classes = new Map<string, ReadonlySet<string>>();
  for (const [name, block] of classBlocks) {
    const perms = new Set(block.perms);
    if (block.inherits !== undefined) {
      const common = commons.get(block.inherits);
      if (!common) problems.push(`class ${name} inherits unknown common ${block.inherits}`);
      else for (const perm of common.perms) perms.add(perm);
    }
    classes.set(name, perms);
  }

  const users = new Map<string, PolicyUser>();
  for (const line of section('Users')) {
    const match = /^\s*user (\S+) roles (\{[^}]*\}|\S+)(?: level (\S+) range (.+?))?;$/.exec(line);
    if (!match) {
      unreadable('Users', line);
      continue;
    }
    const roles = new Set(nameList(match[2] as string));
    if (match[4] === undefined) {
      users.set(match[1] as string, { roles });
      continue;
    }
    try {
      users.set(match[1] as string, { roles, range: parseRange(match[4].replace(/\s*-\s*/, '-')) });
    } catch (err) {
      if (!(err instanceof ContextSyntaxError)) throw err;
      problems.push(`user ${match[1]} has an unreadable range "${match[4]}"`);
    }
  }
  checkCount('Users', users.size);

  const roles = new Map<string, ReadonlySet<string>>();
  for (const line of section('Roles')) {
    const match = /^\s*role (\S+)(?: types (\{[^}]*\}|\S+))?;$/.exec(line);
    if (match) roles.set(match[1] as string, new Set(match[2] === undefined ? [] : nameList(match[2])));
    else unreadable('Roles', line);
  }
  checkCount('Roles', roles.size);

  const sensitivities = readLevelNames('Sensitivities', 'sensitivity', 's', section('Sensitivities'), problems);
  checkCount('Sensitivities', sensitivities.size);
  const categories = readLevelNames('Categories', 'category', 'c', section('Categories'), problems);
  checkCount('Categories', categories.size);

  const permissiveTypes = new Set<string>();
  for (const line of section('Permissive Types')) {
    // Accepts a bare name as well as a `permissive NAME;` or `type NAME, …;` statement.
    const match = /^\s*(?:(?:permissive|type) )?([A-Za-z_][A-Za-z0-9_.-]*)[,;]?/.exec(line);
    if (match) permissiveTypes.add(match[1] as string);
    else unreadable('Permissive Types', line);
  }
  checkCount('Permissive Types', permissiveTypes.size);

  return { types, aliases, attributes, booleans, classes, users, roles, sensitivities, categories, permissiveTypes, problems };
}

/** `   class NAME` / `inherits COMMON` / `{` / `\tperm` / `}` blocks (commons have the same shape). */
function readPermissionBlocks(keyword: 'class' | 'common', lines: readonly string[], problems: string[]): Map<string, { inherits?: string; perms: string[] }> {
  const blocks = new Map<string, { inherits?: string; perms: string[] }>();
  let current: { inherits?: string; perms: string[] } | undefined;
  let inBraces = false;
  for (const line of lines) {
    const start = new RegExp(`^\\s*${keyword} (\\S+)$`).exec(line);
    if (start && !inBraces) {
      current = { perms: [] };
      blocks.set(start[1] as string, current);
      continue;
    }
    const trimmed = line.trim();
    const inherits = /^inherits (\S+)$/.exec(trimmed);
    if (current && inherits && !inBraces) current.inherits = inherits[1] as string;
    else if (current && trimmed === '{' && !inBraces) inBraces = true;
    else if (current && trimmed === '}' && inBraces) inBraces = false;
    else if (current && inBraces && /^[A-Za-z_][A-Za-z0-9_]*$/.test(trimmed)) current.perms.push(trimmed);
    else problems.push(`unreadable line among the ${keyword}es: "${trimmed}"`);
  }
  return blocks;
}

function readLevelNames(section: string, keyword: string, prefix: 's' | 'c', lines: readonly string[], problems: string[]): Set<number> {
  const values = new Set<number>();
  for (const line of lines) {
    const match = new RegExp(`^\\s*${keyword} (\\S+?)(?: alias .*)?;$`).exec(line);
    const value = match ? numbered(match[1] as string, prefix) : undefined;
    if (value === undefined) problems.push(`unreadable line in the ${section} section (levels are read as ${prefix}N): "${line.trim()}"`);
    else values.add(value);
  }
  return values;
}
