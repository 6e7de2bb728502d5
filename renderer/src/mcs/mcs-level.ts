import { formatLevel, formatRange, levelEquals, parseContext, parseLevel } from '../../../src/core/selinux/context';

/**
 * MCS levels as the UI compares and colours them, in canonical spelling (categories sorted, runs as
 * cA.cB), so that `s0:c345,c12` and `s0:c12,c345` are one pair everywhere.
 */

/** The level part of a context (`s0:c12,c345`, or a range for unconfined processes); null when absent or malformed. */
export function levelOfContext(context: string | null | undefined): string | null {
  if (!context) return null;
  try {
    const { range } = parseContext(context);
    if (!range) return null;
    return levelEquals(range.low, range.high) ? formatLevel(range.low) : formatRange(range);
  } catch {
    return null;
  }
}

/** The canonical pair of a single level with categories; null for `s0` (shared), ranges and malformed text. */
export function pairOf(level: string | null | undefined): string | null {
  if (!level || level.includes('-')) return null;
  try {
    const parsed = parseLevel(level);
    return parsed.categories.length === 0 ? null : formatLevel(parsed);
  } catch {
    return null;
  }
}

/** The SELinux type of a context, for short display; null when malformed. */
export function typeOfContext(context: string | null | undefined): string | null {
  if (!context) return null;
  try {
    return parseContext(context).type;
  } catch {
    return null;
  }
}
