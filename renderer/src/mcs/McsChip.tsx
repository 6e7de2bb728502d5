import type { CSSProperties } from 'react';
import { pairColour } from './pair-colour';
import { pairOf } from './mcs-level';

interface McsChipProps {
  /** An MCS level (`s0:c12,c345`), `s0`, a range, or null when there is none (then no chip). */
  level: string | null;
  /** The setrans.conf name of the level, when one is defined. */
  name?: string | null;
  /** Why this chip deserves a second look (pair shared with another VM, image pair differs …). */
  warning?: string | null;
  /** The VM runs unconfined: the pair is only a label on files, so it gets no pair colour (never a reassuring one). */
  unenforced?: boolean;
}

/** A pair's colour chip; levels without categories (shared images, unconfined ranges) are neutral. */
export function McsChip({ level, name, warning, unenforced = false }: McsChipProps) {
  if (level === null) return null;
  const pair = pairOf(level);
  const colour = pair === null || unenforced ? null : pairColour(pair);
  const text = name ? name : level;
  const description = [pair ? `MCS pair ${pair}` : `level ${level}`, name ? `named “${name}”` : null, warning, unenforced ? 'not enforced: the VM runs unconfined' : null].filter(Boolean).join(' · ');
  return (
    <span
      className={`chip${pair === null || unenforced ? ' chip--neutral' : ''}${warning ? ' chip--warning' : ''}${unenforced ? ' chip--unenforced' : ''}`}
      data-testid="mcs-chip"
      data-pair={pair ?? undefined}
      data-colour={colour ?? undefined}
      data-warning={warning ? 'true' : undefined}
      data-unenforced={unenforced ? 'true' : undefined}
      style={colour ? ({ '--chip-colour': colour } as CSSProperties) : undefined}
      title={description}
      aria-label={description}
    >
      <span className="chip__swatch" aria-hidden="true" />
      <span className="chip__text">{text}</span>
      {name && <span className="chip__level">{level}</span>}
    </span>
  );
}
