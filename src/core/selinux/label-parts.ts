/**
 * SELinux labels as the screens show them: a context split into its labelled parts (user, role, type,
 * level), the level that sets one VM apart, and the static label editor's fields. The SELinux driver's
 * describe() and the user side's views of stopped VMs and files both take their parts from here, so a
 * context is split in one place and the renderer and the CLI print parts, never a context they split.
 */
import type { ConfinementDescription, LabelPart } from '../security-description';
import { formatLevel, formatRange, levelEquals, parseContext, parseLevel, type SecurityContext } from './context';

/** One named piece of an SELinux label (user, role, type, level). */
export type SelinuxLabelPart = LabelPart;

/** A context's parts in the model's order; the level part says what it means for this label when there is something to say. */
export function contextParts(context: SecurityContext, levelMeaning?: string): SelinuxLabelPart[] {
  return [
    { name: 'user', value: context.user },
    { name: 'role', value: context.role },
    { name: 'type', value: context.type },
    ...(context.range ? [{ name: 'level', value: formatRange(context.range), ...(levelMeaning === undefined ? {} : { meaning: levelMeaning }) }] : []),
  ];
}

/** A label's parts; [] for text that is no context (a file without a label reads as such). */
export function labelParts(label: string | null | undefined, levelMeaning?: string): SelinuxLabelPart[] {
  if (!label) return [];
  try {
    return contextParts(parseContext(label), levelMeaning);
  } catch {
    return [];
  }
}

/**
 * What sets a label apart, as a chip shows it: its level in canonical spelling (categories sorted, runs as
 * cA.cB, a range when low and high differ) and the pair, which is the level when it is a single level with
 * categories (one VM's own) and null for `s0` (shared) and ranges. null when the label has no level.
 */
export function levelMark(label: string | null | undefined): { level: string; pair: string | null } | null {
  if (!label) return null;
  try {
    const { range } = parseContext(label);
    if (!range) return null;
    if (!levelEquals(range.low, range.high)) return { level: formatRange(range), pair: null };
    const level = formatLevel(range.low);
    return { level, pair: parseLevel(level).categories.length === 0 ? null : level };
  } catch {
    return null;
  }
}

/** A VM's SELinux label as a description shows it (the description less its model id, which the caller adds). */
export type SelinuxDescription = Omit<ConfinementDescription, 'model'>;

/**
 * A VM's label in words and parts: a running VM's (dynamic: the pair drawn for this start), a stopped
 * static VM's (the label its definition gives), or none (unconfined).
 */
export function describeSelinuxLabel(label: { process: string | null; image: string | null; dynamic: boolean; distinct: string | null }): SelinuxDescription {
  let process: SecurityContext | undefined;
  let image: SecurityContext | undefined;
  try {
    process = label.process === null ? undefined : parseContext(label.process);
    image = label.image === null ? undefined : parseContext(label.image);
  } catch {
    // A malformed static label is shown as it is written; the definition's checks name the problem.
  }
  const level = process?.range ? formatRange(process.range) : null;
  const summary = label.process === null
    ? 'qemu runs unconfined (seclabel none): SELinux keeps it from nothing'
    : process === undefined
      ? `the label ${label.process} is not a valid SELinux context`
      : label.dynamic
        ? `qemu runs as ${process.type} at ${level ?? 'no level'}, a pair drawn for this start: only this VM's files carry it`
        : `qemu runs as ${process.type} at ${level ?? 'no level'}, the static label its definition gives`;
  return {
    modelName: 'SELinux (sVirt)',
    processLabel: label.process,
    imageLabel: label.image,
    distinct: label.distinct,
    summary,
    processParts: process ? contextParts(process, label.dynamic ? 'the pair only this VM holds' : 'the level the definition gives') : [],
    imageParts: image ? contextParts(image, 'only a process at this pair may open these files') : [],
    layers: [],
  };
}

/** A field of the static label editor: the piece of a context it holds, in words, with its default. */
export interface StaticLabelField {
  readonly key: string;
  readonly label: string;
  readonly help: string;
  readonly value: string;
}

/** The static label editor's fields, filled from `label` (or the defaults), and how they join back into one label. */
export interface StaticLabelForm {
  readonly fields: readonly StaticLabelField[];
  /** Written between the fields, in order; an empty last field is left out with its separator. */
  readonly separator: string;
}

const FIELDS: readonly Omit<StaticLabelField, 'value'>[] = [
  { key: 'user', label: 'User', help: 'SELinux user, normally system_u' },
  { key: 'role', label: 'Role', help: 'role, normally system_r' },
  { key: 'type', label: 'Type', help: "the VM's process type, e.g. svirt_t" },
  { key: 'level', label: 'Level', help: 'sensitivity and the VM’s category pair, e.g. s0:c12,c345' },
];

/**
 * The editor's fields for a label: `user:role:type:level`, the level keeping every further colon
 * (s0:c1,c2). Without a label, the process context a static VM normally takes, with the level's
 * sensitivity written and the pair left to the user.
 */
export function staticLabelForm(label: string | undefined, processContext: SecurityContext): StaticLabelForm {
  const [user = '', role = '', type = '', ...level] = label ? label.split(':') : [processContext.user, processContext.role, processContext.type, 's0', 'c'];
  const values = [user, role, type, level.join(':')];
  return { fields: FIELDS.map((field, i) => ({ ...field, value: values[i] ?? '' })), separator: ':' };
}
