/**
 * The seclabel rules the root helper enforces on every start, whatever the UI already checked: the
 * helper is the privilege boundary between local users, and a label is a privilege.
 *
 * - Types come from the installed policy. The VM domains are the types of virtual_domain_context plus
 *   the types the policy groups with them: the smallest attribute that holds every one of them
 *   (`virt_domain` in the reference policy and Fedora's), kept to MCS-constrained members when the policy
 *   has `mcs_constrained_type`, since a VM domain outside the MCS constraint reaches every VM's images.
 *   Image types are found the same way from virtual_image_context (`virt_image_type`). A generic
 *   attribute (`domain`, `file_type`) is never taken for a grouping: above a handful of members it is
 *   ignored. Without the policy's attributes only the context files' own types are allowed.
 * - Levels sit at the range's sensitivity with categories inside the helper's category range.
 * - A static process label is one MCS pair, exactly as a dynamic one: a static VM then reserves one
 *   pair of the 523,776, as a dynamic VM does. A wider clearance would reserve every pair it dominates
 *   (c0.c1023 dominates all of them, which stopped every other start), a single category would make its
 *   images readable by the 1,023 pairs containing it, and no category at all means no MCS separation.
 *   Its images carry that same pair; shared data belongs on shared (s0) disks.
 * - Custom disk labels are image or content types at s0 (shared) or at one pair.
 * - No label may reach, or be reached by, another user's live VM: MCS would let one open the other's files.
 * - `seclabel none` runs qemu in the helper's own (unconfined) domain: only an administrator may allow it.
 *
 * Pure: the caller passes the policy's attribute listing (seinfo), the profile and the levels in use.
 */
import { ContextSyntaxError, dominates, formatLevel, formatRange, parseContext, type Level, type MlsRange, type SecurityContext } from './context';
import type { CategoryRange, PolicyProfile } from './policy-profile';
import type { SeclabelSpec } from '../vm-spec';

/** An attribute with more members than this is a generic one (domain, file_type), not a VM grouping. */
export const MAX_GROUP_SIZE = 16;
/** The attribute the policy's MCS constraints exempt nothing of: `(h1 dom h2 or t1 != mcs_constrained_type)`. */
const MCS_CONSTRAINED = 'mcs_constrained_type';

export interface VmTypeSets {
  /** Process types a VM may run as. */
  readonly domainTypes: ReadonlySet<string>;
  /** File types a VM's images and content may carry. */
  readonly imageTypes: ReadonlySet<string>;
  /** Where the sets came from, for status and error messages. */
  readonly note: string;
}

/** `seinfo POLICY -x -a` output: attribute name to its member types. */
export function parseSeinfoAttributes(text: string): Map<string, string[]> {
  const attributes = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    const header = /^\s+attribute (\S+);$/.exec(line);
    if (header) {
      current = [];
      attributes.set(header[1] as string, current);
    } else if (current && /^\t\S+$/.test(line)) {
      current.push(line.trim());
    } else if (line.trim() !== '' && !/^Type Attributes: \d+$/.test(line.trim())) {
      current = undefined;
    }
  }
  return attributes;
}

/** The named types plus the members of the smallest attribute holding all of them (when it is small). */
function grouped(types: readonly string[], attributes: ReadonlyMap<string, readonly string[]>): { types: Set<string>; attribute?: string } {
  let best: [string, readonly string[]] | undefined;
  for (const [name, members] of attributes) {
    // The MCS attribute filters the grouping; it is no grouping itself (it holds peer labels too).
    if (name === MCS_CONSTRAINED || members.length > MAX_GROUP_SIZE || !types.every((t) => members.includes(t))) continue;
    if (best === undefined || members.length < best[1].length) best = [name, members];
  }
  const set = new Set(types);
  if (best === undefined) return { types: set };
  for (const member of best[1]) set.add(member);
  return { types: set, attribute: best[0] };
}

/**
 * The VM type sets of a policy. `attributes` is the parsed `seinfo -x -a` listing, or undefined when the
 * policy could not be read (`why` says why): then only the context files' types are allowed.
 */
export function vmTypeSets(profile: PolicyProfile, attributes: ReadonlyMap<string, readonly string[]> | undefined, why = 'the policy was not read'): VmTypeSets {
  const domainBase = [profile.processContext.type, ...(profile.tcgProcessType === undefined ? [] : [profile.tcgProcessType])];
  const imageBase = [profile.imageContext.type, profile.contentContext.type];
  if (attributes === undefined) {
    return {
      domainTypes: new Set(domainBase),
      imageTypes: new Set(imageBase),
      note: `${why}; only the types of virtual_domain_context and virtual_image_context are allowed`,
    };
  }
  const domains = grouped(domainBase, attributes);
  const constrained = attributes.get(MCS_CONSTRAINED);
  if (constrained !== undefined) {
    for (const t of domains.types) if (!domainBase.includes(t) && !constrained.includes(t)) domains.types.delete(t);
  }
  const images = grouped(imageBase, attributes);
  const from = (g: { attribute?: string }) => (g.attribute === undefined ? 'the context file alone' : `attribute ${g.attribute}`);
  return {
    domainTypes: domains.types,
    imageTypes: images.types,
    note: `VM domains from ${from(domains)}, image types from ${from(images)}`,
  };
}

/** What the rules need besides the definition. */
export interface SeclabelRules {
  readonly types: VmTypeSets;
  readonly categoryRange: CategoryRange;
  /** helper.json's allowSeclabelNone. */
  readonly allowSeclabelNone: boolean;
  /** Where the setting lives, for the message. */
  readonly configPath: string;
}

/** A level held by another user's live VM (or another program's confined process). */
export interface ForeignLevel {
  readonly range: MlsRange;
  /** A process clearance (`subject`) or a file label (`object`). */
  readonly kind: 'subject' | 'object';
  /** For messages: `VM 4343/web (uid 4343)`, `pid 812 (container_t)`. */
  readonly holder: string;
}

/** The label-bearing parts of a definition, with each one's field name as the user wrote it. */
export interface LabeledDefinition {
  readonly seclabel: SeclabelSpec;
  readonly disks: readonly { readonly label?: string }[];
}

const STATIC_HINT = 'e.g. system_u:system_r:svirt_t:s0:c1,c2 (--seclabel static:LABEL)';

function sorted(set: ReadonlySet<string>): string {
  return [...set].sort().join(', ');
}

function parsed(field: string, text: string, problems: string[]): SecurityContext | undefined {
  try {
    return parseContext(text);
  } catch (err) {
    if (!(err instanceof ContextSyntaxError)) throw err;
    problems.push(`${field}: ${err.message}`);
    return undefined;
  }
}

/** Sensitivity and categories inside the helper's range; one level (low == high). */
function levelProblem(range: MlsRange | undefined, rules: SeclabelRules): string | undefined {
  if (range === undefined) return 'it has no MCS level (add one such as s0:c1,c2)';
  const { sensitivity, first, last } = rules.categoryRange;
  if (formatLevel(range.low) !== formatLevel(range.high)) return `its level ${formatRange(range)} is a range; give one level such as s${sensitivity}:c1,c2`;
  if (range.low.sensitivity !== sensitivity) return `its sensitivity must be s${sensitivity}`;
  const outside = range.low.categories.filter((c) => c < first || c > last);
  if (outside.length > 0) return `categories ${outside.map((c) => `c${c}`).join(', ')} are outside this host's range c${first}.c${last}`;
  return undefined;
}

function pairOnly(level: Level): string | undefined {
  const n = level.categories.length;
  return n === 2 ? undefined : `its level ${formatLevel(level)} has ${n === 0 ? 'no categories' : `${n} categories`}; one static VM may hold exactly one pair of two categories, as a dynamic VM does`;
}

/** Whether MCS lets a holder of `a` and a holder of `b` reach each other's files. */
function reaches(a: { level: Level; kind: 'subject' | 'object' }, b: ForeignLevel): boolean {
  const other = b.range.high;
  if (a.kind === 'subject' && b.kind === 'subject') return dominates(a.level, b.range.low) || dominates(other, a.level);
  if (a.kind === 'subject') return other.categories.length > 0 && dominates(a.level, other);
  // A file at s0 is shared with every VM by design; at a pair only its pair's holder should reach it.
  return a.level.categories.length > 0 && b.kind === 'subject' && dominates(other, a.level);
}

function foreignProblem(level: Level, kind: 'subject' | 'object', foreign: readonly ForeignLevel[]): string | undefined {
  const hit = foreign.find((f) => reaches({ level, kind }, f));
  if (hit === undefined) return undefined;
  const same = formatLevel(hit.range.high) === formatLevel(level) ? 'is the pair of' : 'overlaps';
  return `its level ${formatLevel(level)} ${same} ${hit.holder} (${formatRange(hit.range)}): MCS would let one open the other's files; choose another pair`;
}

/**
 * Every way the definition's labels break the rules, one message per problem naming the user's field;
 * empty when the start may go ahead.
 */
export function seclabelProblems(def: LabeledDefinition, rules: SeclabelRules, foreign: readonly ForeignLevel[]): string[] {
  const problems: string[] = [];
  const { domainTypes, imageTypes } = rules.types;
  const seclabel = def.seclabel;
  let vmLevel: Level | undefined;

  if (seclabel.mode === 'none' && !rules.allowSeclabelNone) {
    problems.push(
      `seclabel none (--seclabel none) runs qemu unconfined, in the helper's own domain, and is off on this host; ` +
        `use a dynamic or static seclabel, or ask an administrator to set "allowSeclabelNone": true in ${rules.configPath}`,
    );
  }
  if (seclabel.mode === 'dynamic' && seclabel.baseLabel !== undefined) {
    const base = parsed('seclabel.baseLabel', seclabel.baseLabel, problems);
    if (base && !domainTypes.has(base.type)) {
      problems.push(`seclabel.baseLabel: type ${base.type} is not a VM domain of this host's policy; use one of ${sorted(domainTypes)}`);
    }
  }
  if (seclabel.mode === 'static') {
    const field = `static label (seclabel.label) ${seclabel.label}`;
    const label = parsed('seclabel.label', seclabel.label, problems);
    if (label) {
      const wrong = [
        domainTypes.has(label.type) ? undefined : `type ${label.type} is not a VM domain of this host's policy (use one of ${sorted(domainTypes)})`,
        levelProblem(label.range, rules),
      ].filter((p): p is string => p !== undefined);
      if (wrong.length === 0 && label.range) {
        const bound = pairOnly(label.range.low);
        if (bound) wrong.push(bound);
        else vmLevel = label.range.low;
      }
      if (vmLevel) {
        const clash = foreignProblem(vmLevel, 'subject', foreign);
        if (clash) wrong.push(clash);
      }
      for (const w of wrong) problems.push(`${field}: ${w}; ${STATIC_HINT}`);
    }
    if (seclabel.imageLabel !== undefined) {
      const image = parsed('seclabel.imageLabel', seclabel.imageLabel, problems);
      if (image) {
        const what = `static image label (seclabel.imageLabel) ${seclabel.imageLabel}`;
        if (!imageTypes.has(image.type)) problems.push(`${what}: type ${image.type} is not a VM image type of this host's policy; use one of ${sorted(imageTypes)}`);
        const levelWrong = levelProblem(image.range, rules);
        if (levelWrong) problems.push(`${what}: ${levelWrong}`);
        else if (vmLevel && image.range && formatLevel(image.range.low) !== formatLevel(vmLevel)) {
          problems.push(`${what}: its level must be the static label's own pair ${formatLevel(vmLevel)}; use a shared disk for data other VMs may open`);
        }
      }
    }
  }
  def.disks.forEach((disk, i) => {
    if (disk.label === undefined) return;
    const what = `disk label (disks[${i}].label) ${disk.label}`;
    const label = parsed(`disks[${i}].label`, disk.label, problems);
    if (!label) return;
    if (!imageTypes.has(label.type)) problems.push(`${what}: type ${label.type} is not a VM image type of this host's policy; use one of ${sorted(imageTypes)}`);
    const levelWrong = levelProblem(label.range, rules);
    if (levelWrong) {
      problems.push(`${what}: ${levelWrong}`);
      return;
    }
    const level = (label.range as MlsRange).low;
    if (level.categories.length !== 0 && level.categories.length !== 2) {
      problems.push(`${what}: its level ${formatLevel(level)} must be s${rules.categoryRange.sensitivity} (shared by every VM) or one pair such as s${rules.categoryRange.sensitivity}:c1,c2`);
      return;
    }
    const clash = foreignProblem(level, 'object', foreign);
    if (clash) problems.push(`${what}: ${clash}`);
  });
  return problems;
}

/** Whether a static label fits the bound (one pair in range), so that it is worth reserving for its VM. */
export function isReservableStaticLabel(label: string, range: CategoryRange): boolean {
  try {
    const level = parseContext(label).range;
    if (!level || formatLevel(level.low) !== formatLevel(level.high) || level.low.sensitivity !== range.sensitivity) return false;
    const [a, b, ...rest] = level.low.categories;
    return rest.length === 0 && a !== undefined && b !== undefined && a >= range.first && b <= range.last;
  } catch (err) {
    if (err instanceof ContextSyntaxError) return false;
    throw err;
  }
}
