/**
 * Type-enforcement rules as `sesearch POLICY -A --dontaudit` prints them:
 * `allow svirt_t svirt_image_t:file { getattr open read };` and, for conditional rules,
 * `allow virtd_t nfs_t:file { read }; [ virt_use_nfs ]:True` (the rule is in effect while the
 * condition has that value).
 */

export interface TeRule {
  readonly kind: 'allow' | 'dontaudit';
  /** A type or an attribute. */
  readonly source: string;
  /** A type, an attribute, or `self`. */
  readonly target: string;
  readonly tclass: string;
  readonly perms: readonly string[];
  readonly condition?: { readonly text: string; readonly whenTrue: boolean };
}

export interface ParsedTeRules {
  readonly rules: readonly TeRule[];
  /** allow/dontaudit lines that did not parse: any of them could grant or silence anything. */
  readonly unparsedLines: readonly string[];
}

// The shape a binary policy always prints: one source, one target, one class.
const SIMPLE_RULE = /^(allow|dontaudit) ([A-Za-z_][\w.-]*) ([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*) (?:\{ ([^}]*) \}|([^\s{}:;]+));(?: \[ (.+) \]:(True|False))?$/;
const NAME_OR_SET = String.raw`(\{[^}]*\}|[^\s{}:;]+)`;
const RULE_WITH_SETS = new RegExp(
  String.raw`^(allow|dontaudit) ${NAME_OR_SET} ${NAME_OR_SET}:${NAME_OR_SET} (?:\{ ([^}]*) \}|([^\s{}:;]+));(?: \[ (.+) \]:(True|False))?$`,
);
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** `{ a b }` or `a` to its names; undefined for what a binary policy never prints (`~`, `*`, `-x`). */
function names(field: string): string[] | undefined {
  const list = field.startsWith('{') ? field.slice(1, -1).trim().split(/\s+/).filter(Boolean) : [field];
  return list.length > 0 && list.every((name) => NAME.test(name)) ? list : undefined;
}

export function parseTeRules(text: string): ParsedTeRules {
  const rules: TeRule[] = [];
  const unparsedLines: string[] = [];
  // About a thousand distinct permission lists serve a hundred thousand rules: share them.
  const permLists = new Map<string, string[] | undefined>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('allow ') && !line.startsWith('dontaudit ')) continue;
    const simple = SIMPLE_RULE.exec(line);
    const match = simple ?? RULE_WITH_SETS.exec(line);
    const permText = match ? (match[5] ?? match[6] ?? '') : '';
    let perms = permLists.get(permText);
    if (!permLists.has(permText)) {
      perms = names(`{ ${permText} }`);
      permLists.set(permText, perms);
    }
    const sources = match && (simple ? [match[2] as string] : names(match[2] as string));
    const targets = match && (simple ? [match[3] as string] : names(match[3] as string));
    const classes = match && (simple ? [match[4] as string] : names(match[4] as string));
    if (!match || !sources || !targets || !classes || !perms) {
      unparsedLines.push(line);
      continue;
    }
    const kind = match[1] as TeRule['kind'];
    const conditionText = match[7];
    const condition = conditionText === undefined ? undefined : { text: conditionText.trim(), whenTrue: match[8] === 'True' };
    for (const source of sources) {
      for (const target of targets) {
        for (const tclass of classes) {
          rules.push(condition ? { kind, source, target, tclass, perms, condition } : { kind, source, target, tclass, perms });
        }
      }
    }
  }
  return { rules, unparsedLines };
}
