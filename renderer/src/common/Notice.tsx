import type { ReactNode } from 'react';

type Tone = 'error' | 'warning' | 'info' | 'ok';

/** A message block; errors are announced to screen readers as alerts. */
export function Notice({ tone, title, children }: { tone: Tone; title?: string; children?: ReactNode }) {
  return (
    <div className={`notice notice--${tone}`} role={tone === 'error' ? 'alert' : 'status'}>
      {title && <strong className="notice__title">{title}</strong>}
      {children && <div className="notice__body">{children}</div>}
    </div>
  );
}
