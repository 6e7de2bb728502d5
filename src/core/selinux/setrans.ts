/**
 * mcstrans translation tables (`/etc/selinux/<type>/setrans.conf`): the simple `raw=Name` lines that
 * give levels and ranges human names (`s0:c0.c1023=SystemHigh`), translated both ways. mcstrans'
 * advanced syntax (domains, base classifications with modifier groups, constraints) computes names
 * from category bits; it is recognised, skipped and reported, never half-implemented.
 */
import { canonicalContext, ContextSyntaxError, formatRange, parseContext, parseRange, type MlsRange } from './context';

/** A `raw=Name` line that defines a translation. */
export interface SetransEntry {
  readonly line: number;
  /** Canonical raw form (`s0:c0,c1,c2` in the file is held as `s0:c0.c2`). */
  readonly raw: string;
  readonly name: string;
  /** True for a range with distinct low and high levels, false for a single level. */
  readonly isRange: boolean;
}

/** A line that defines nothing here, with the reason. */
export interface SetransSkippedLine {
  readonly line: number;
  readonly text: string;
  readonly reason: string;
}

export class SetransSyntaxError extends Error {
  constructor(
    readonly line: number,
    readonly text: string,
    readonly reason: string,
  ) {
    super(`setrans.conf line ${line}: ${reason}: "${text}"`);
    this.name = 'SetransSyntaxError';
  }
}

export interface TranslationTable {
  /** `disable=1` in the file: mcstrans is switched off, so nothing translates. */
  readonly disabled: boolean;
  readonly entries: readonly SetransEntry[];
  /** Advanced-syntax lines, skipped. */
  readonly unsupported: readonly SetransSkippedLine[];
  /** Later definitions of a raw level or a name already defined; the first one wins, as in mcstrans. */
  readonly shadowed: readonly SetransSkippedLine[];
  /** A level or range to its name; anything without a name (or not a level) comes back unchanged. */
  toName(levelOrRange: string): string;
  /** A name (or `Low-High` of two names) to the canonical level or range; anything else unchanged. */
  fromName(text: string): string;
  /** A raw context with its range replaced by the range's name, when it has one. Throws ContextSyntaxError. */
  translateContext(context: string): string;
  /** A context whose range may be a name, in canonical raw form. Throws ContextSyntaxError. */
  untranslateContext(context: string): string;
}

// Keywords of mcstrans' advanced syntax (mcstrans.c process_trans). Lines after ModifierGroup= are
// modifier words of that group until the next Domain=, so they are skipped too.
const ADVANCED_KEYWORDS: ReadonlyMap<string, string> = new Map([
  ['Domain', 'translation domains are not supported; their simple lines are merged into one table'],
  ['Include', 'Include= is not followed; only this file is read'],
  ['Base', 'base classifications are not supported; the lines after it are read as plain translations'],
  ['ModifierGroup', 'modifier groups are not supported'],
  ['Whitespace', 'modifier groups are not supported'],
  ['Join', 'modifier groups are not supported'],
  ['Prefix', 'modifier groups are not supported'],
  ['Suffix', 'modifier groups are not supported'],
  ['Default', 'modifier groups are not supported'],
]);

function tryParseRange(text: string): MlsRange | undefined {
  try {
    return parseRange(text);
  } catch (e) {
    if (e instanceof ContextSyntaxError) return undefined;
    throw e;
  }
}

function canonicalOrUndefined(text: string): string | undefined {
  const range = tryParseRange(text);
  return range === undefined ? undefined : formatRange(range);
}

export function parseSetrans(text: string): TranslationTable {
  const entries: SetransEntry[] = [];
  const unsupported: SetransSkippedLine[] = [];
  const shadowed: SetransSkippedLine[] = [];
  const nameByRaw = new Map<string, string>();
  const rawByName = new Map<string, string>();
  let disabled = false;
  let inModifierGroup = false;

  text.split('\n').forEach((rawLine, index) => {
    const line = index + 1;
    // mcstrans cuts the line at the first `#`, wherever it is.
    const hash = rawLine.indexOf('#');
    const content = (hash < 0 ? rawLine : rawLine.slice(0, hash)).trim();
    if (content === '') return;

    const delimiterAt = content.search(/[=!>]/);
    if (delimiterAt < 0) throw new SetransSyntaxError(line, content, 'expected raw=Name');
    const op = content[delimiterAt];
    const key = content.slice(0, delimiterAt).trim();
    const value = content.slice(delimiterAt + 1).trim();
    if (key === '' || value === '') throw new SetransSyntaxError(line, content, key === '' ? 'nothing before the "="' : 'nothing after the "="');

    if (op !== '=') {
      unsupported.push({ line, text: content, reason: 'category constraints are not supported' });
      return;
    }
    if (key === 'disable') {
      disabled = value !== '0';
      return;
    }
    const advanced = ADVANCED_KEYWORDS.get(key);
    if (advanced !== undefined) {
      unsupported.push({ line, text: content, reason: advanced });
      if (key === 'ModifierGroup') inModifierGroup = true;
      if (key === 'Domain') inModifierGroup = false;
      return;
    }
    if (inModifierGroup) {
      unsupported.push({ line, text: content, reason: 'modifier word of a modifier group, not supported' });
      return;
    }

    let range: MlsRange;
    try {
      range = parseRange(key);
    } catch (e) {
      if (e instanceof ContextSyntaxError) throw new SetransSyntaxError(line, content, e.message);
      throw e;
    }
    // A name spelled like a level would make the two directions ambiguous.
    if (tryParseRange(value) !== undefined) throw new SetransSyntaxError(line, content, `the name "${value}" is itself a level`);

    const raw = formatRange(range);
    const isRange = raw.includes('-');
    entries.push({ line, raw, name: value, isRange });
    const nameTaken = nameByRaw.get(raw);
    const rawTaken = rawByName.get(value);
    if (nameTaken !== undefined) shadowed.push({ line, text: content, reason: `${raw} is already named "${nameTaken}"` });
    else nameByRaw.set(raw, value);
    if (rawTaken !== undefined && rawTaken !== raw) shadowed.push({ line, text: content, reason: `"${value}" already names ${rawTaken}` });
    else rawByName.set(value, raw);
  });

  function toName(levelOrRange: string): string {
    if (disabled) return levelOrRange;
    const range = tryParseRange(levelOrRange);
    if (range === undefined) return levelOrRange;
    const canonical = formatRange(range);
    const whole = nameByRaw.get(canonical);
    if (whole !== undefined) return whole;
    if (!canonical.includes('-')) return levelOrRange;
    // As mcstrans does for a range it has no name for: name each side; one name when both agree.
    const [low, high] = canonical.split('-') as [string, string];
    const lowName = nameByRaw.get(low);
    const highName = nameByRaw.get(high);
    if (lowName === undefined || highName === undefined) return levelOrRange;
    return lowName === highName ? lowName : `${lowName}-${highName}`;
  }

  function fromName(text: string): string {
    if (disabled) return text;
    const whole = rawByName.get(text);
    if (whole !== undefined) return whole;
    // Names may contain "-" themselves (SystemLow-SystemHigh), so every split point is tried.
    for (let dash = text.indexOf('-'); dash >= 0; dash = text.indexOf('-', dash + 1)) {
      const low = rawByName.get(text.slice(0, dash));
      const high = rawByName.get(text.slice(dash + 1));
      if (low === undefined || high === undefined || low.includes('-') || high.includes('-')) continue;
      const canonical = canonicalOrUndefined(`${low}-${high}`);
      if (canonical !== undefined) return canonical;
    }
    return text;
  }

  function translateContext(context: string): string {
    const parsed = parseContext(context);
    const base = `${parsed.user}:${parsed.role}:${parsed.type}`;
    return parsed.range === undefined ? base : `${base}:${toName(formatRange(parsed.range))}`;
  }

  function untranslateContext(context: string): string {
    // user, role and type hold no ":", so whatever follows the third one is the (possibly named) range.
    const fields = context.split(':');
    if (fields.length <= 3) return canonicalContext(context);
    const rangeText = fields.slice(3).join(':');
    return canonicalContext(`${fields.slice(0, 3).join(':')}:${fromName(rangeText)}`);
  }

  return { disabled, entries, unsupported, shadowed, toName, fromName, translateContext, untranslateContext };
}

/** A table that translates nothing, for hosts without setrans.conf. */
export const EMPTY_TRANSLATION_TABLE: TranslationTable = parseSetrans('');
