import type { CSSProperties } from 'react';
import type { McsLevel } from '../../../src/contracts/ipc-contract';
import { pairColour } from './pair-colour';

interface McsChipProps {
  /**
   * What sets the label apart, as the main process gives it: an MCS level (`s0:c12,c345`, `s0`, a range)
   * with its setrans name, or an AppArmor profile; null when there is none (then no chip).
   */
  mark: McsLevel | null | undefined;
  /** Why this chip deserves a second look (pair shared with another VM, image pair differs …). */
  warning?: string | null;
  /** The VM runs unconfined: the pair is only a label on files, so it gets no pair colour (never a reassuring one). */
  unenforced?: boolean;
}

/** A pair's colour chip; levels without categories (shared images, unconfined ranges) are neutral. */
export function McsChip({ mark, warning, unenforced = false }: McsChipProps) {
  if (!mark) return null;
  const { level, name, pair } = mark;
  const colour = pair === null || unenforced ? null : pairColour(pair);
  const text = name ? name : level;
  const description = [pair ? `this VM's own ${pair}` : `shared ${level}`, name ? `named “${name}”` : null, warning, unenforced ? 'not enforced: the VM runs unconfined' : null].filter(Boolean).join(' · ');
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
