import type { ReactNode } from 'react';

/** A labeled form control with optional help below it (the label wraps the control). */
export function Field({ label, help, children }: { label: string; help?: string; children: ReactNode }) {
  return (
    <div className="field">
      <label className="field">
        <span className="field__label">{label}</span>
        {children}
      </label>
      {help && <span className="field__help">{help}</span>}
    </div>
  );
}
