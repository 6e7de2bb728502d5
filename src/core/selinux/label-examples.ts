/**
 * Concrete SELinux labels for help texts and hints. A user learns a label's shape fastest from a real one,
 * so the examples are the labels the built-in profile (Fedora's targeted policy, the fallback when a host's
 * policy files are absent) gives a VM with the pair c1,c2: the CLI shows these and spells no type itself,
 * and a change of the model's defaults changes its help with it.
 */
import { formatContext, formatLevel, type Level, type SecurityContext } from './context';
import { buildPolicyProfile } from './policy-profile';

const PROFILE = buildPolicyProfile({});
const BARE: Level = { sensitivity: PROFILE.categoryRange.sensitivity, categories: [] };
const PAIR = `${formatLevel(BARE)}:c1,c2`;

/** A label as a user types it: the level is given as written (the canonical form may join a run as c1.c2). */
function atLevel(context: SecurityContext, level: string): string {
  return `${formatContext({ user: context.user, role: context.role, type: context.type })}:${level}`;
}

/** `type:level`, the short form that says which of the model's labels a file gets. */
function typeAtLevel(context: SecurityContext, level: Level): string {
  return `${context.type}:${formatLevel(level)}`;
}

export const SELINUX_EXAMPLES = {
  /** A VM's process label (a static seclabel, an access question's subject). */
  processLabel: atLevel(PROFILE.processContext, PAIR),
  /** That VM's private image label (an access question's object). */
  imageLabel: atLevel(PROFILE.imageContext, PAIR),
  /** An image label as a user may type it, categories out of order: `svirt context` writes it canonically. */
  unorderedImageLabel: atLevel(PROFILE.imageContext, `${formatLevel(BARE)}:c2,c1,c0`),
  /** What shared read-write images get. */
  sharedImage: typeAtLevel(PROFILE.imageContext, BARE),
  /** What shared read-only content gets. */
  readonlyContent: typeAtLevel(PROFILE.contentContext, BARE),
} as const;
