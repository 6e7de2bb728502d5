/**
 * Live validation of a static label as the user types it: errors make it unusable, warnings deserve a
 * look. Pure: the caller passes the profile and every level in use elsewhere.
 */
import { ContextSyntaxError, dominates, formatContext, formatRange, parseContext } from './context';
import type { PolicyProfile } from './policy-profile';

export interface LevelInUse {
  /** Canonical range, e.g. `s0:c1,c2`. */
  readonly range: string;
  /** Who holds it: `VM web`, `pid 4242 (container_t)`. */
  readonly holder: string;
}

export interface StaticLabelVerdict {
  errors: string[];
  warnings: string[];
  /** The label private images get from it; null when errors, or when relabel is off. */
  imageLabel: string | null;
}

export function checkStaticLabel(label: string, relabel: boolean, profile: PolicyProfile, inUse: readonly LevelInUse[]): StaticLabelVerdict {
  const errors: string[] = [];
  const warnings: string[] = [];
  let context;
  try {
    context = parseContext(label.trim());
  } catch (err) {
    if (err instanceof ContextSyntaxError) return { errors: [err.message], warnings, imageLabel: null };
    throw err;
  }
  const range = context.range;
  if (!range) {
    errors.push('the label has no MLS/MCS level (add one such as s0:c1,c2)');
  } else {
    const { sensitivity, first, last } = profile.categoryRange;
    const outside = [...range.low.categories, ...range.high.categories].filter((c) => c < first || c > last);
    if (outside.length > 0) errors.push(`categories ${[...new Set(outside)].map((c) => `c${c}`).join(', ')} are outside the policy's range c${first}.c${last}`);
    if (range.high.sensitivity !== sensitivity || range.low.sensitivity !== sensitivity) errors.push(`sensitivity must be s${sensitivity}`);
    if (range.high.categories.length === 0) warnings.push('no categories: every confined VM could reach this VM\'s images');
    const own = formatRange(range);
    for (const other of inUse) {
      const otherRange = parseContext(`u:r:t:${other.range}`).range;
      if (!otherRange) continue;
      if (own === formatRange(otherRange)) warnings.push(`the pair ${own} is already used by ${other.holder}`);
      else if (dominates(otherRange.high, range.low) || dominates(range.high, otherRange.low)) {
        warnings.push(`${own} and ${other.holder}'s ${formatRange(otherRange)} overlap: one can reach the other's files`);
      }
    }
  }
  const types = [profile.processContext.type, profile.tcgProcessType].filter(Boolean);
  if (!types.includes(context.type)) warnings.push(`type ${context.type} is not this policy's VM domain (${types.join(' or ')})`);
  if (!relabel) warnings.push('relabel is off: the app will never touch this VM\'s files, so you must label them yourself');
  const imageLabel = errors.length === 0 && relabel && range ? formatContext({ ...profile.imageContext, range }) : null;
  return { errors, warnings, imageLabel };
}
