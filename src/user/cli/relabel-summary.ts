/**
 * What `svirt relabel` tells the user, in a sentence: how many files changed and under which path,
 * what was skipped and why, and a restore that found nothing to restore says so. The helper's
 * result object is printed as is with --json.
 */
export type RelabelMode = 'shared' | 'readonly' | 'restore';

interface TreeResultShape {
  labeled?: number;
  skippedSymlinksAndSpecial?: readonly string[];
}

interface RestoreResultShape {
  restored?: number;
  skipped?: readonly { path: string; reason: string }[];
}

const files = (n: number): string => `${n} file${n === 1 ? '' : 's'}`;

const KIND: Record<Exclude<RelabelMode, 'restore'>, string> = {
  shared: 'shared read-write VM content (every VM may read and write it)',
  readonly: 'read-only VM content (every VM may read it)',
};

/** Up to three examples, then a count of the rest. */
function examples(items: readonly string[]): string {
  const shown = items.slice(0, 3).join('; ');
  return items.length > 3 ? `${shown}; and ${items.length - 3} more` : shown;
}

export function describeRelabel(path: string, mode: RelabelMode, result: unknown): string {
  if (mode === 'restore') {
    const { restored = 0, skipped = [] } = (result ?? {}) as RestoreResultShape;
    if (restored === 0 && skipped.length === 0) {
      return `nothing to restore under ${path}: the app has no original labels recorded there`;
    }
    const lines = [`restored the original labels of ${files(restored)} under ${path}`];
    if (skipped.length > 0) {
      lines.push(`left ${files(skipped.length)} alone (changed or gone since they were labeled): ${examples(skipped.map((s) => `${s.path} (${s.reason})`))}`);
    }
    return lines.join('\n');
  }
  const { labeled = 0, skippedSymlinksAndSpecial = [] } = (result ?? {}) as TreeResultShape;
  const lines = [`labeled ${files(labeled)} under ${path} as ${KIND[mode]}; \`svirt relabel ${path} --restore\` puts the old labels back`];
  if (skippedSymlinksAndSpecial.length > 0) {
    lines.push(`skipped ${skippedSymlinksAndSpecial.length} symlink(s) and special file(s): ${examples(skippedSymlinksAndSpecial)}`);
  }
  return lines.join('\n');
}
