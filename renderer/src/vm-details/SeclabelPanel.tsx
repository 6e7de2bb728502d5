import { useState } from 'react';
import type { SeclabelDefinition, VmDetails } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Notice } from '../common/Notice';
import { StaticLabelEditor, type StaticLabelDraft } from '../label-editor/StaticLabelEditor';
import { ContextText } from '../mcs/ContextText';

type Mode = SeclabelDefinition['mode'];

const MODE_TEXT: Record<Mode, { title: string; detail: string }> = {
  dynamic: { title: 'Dynamic', detail: 'A fresh MCS pair, unique on this host, at every start; files are relabeled to match.' },
  static: { title: 'Static', detail: 'Always the label you give; files are relabeled only if you say so.' },
  none: { title: 'None', detail: 'qemu runs unconfined and nothing is relabeled.' },
};

/** The VM-wide seclabel: what it is, and a form to change it while the VM is stopped. */
export function SeclabelPanel({ details, onSaved }: { details: VmDetails; onSaved: () => void }) {
  const api = useApi();
  const current = details.definition.seclabel;
  const [mode, setMode] = useState<Mode>(current.mode);
  const [draft, setDraft] = useState<StaticLabelDraft | null>(null);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const stopped = details.summary.state === 'stopped';

  const next = (): SeclabelDefinition | null => {
    if (mode === 'dynamic') return current.mode === 'dynamic' ? current : { mode: 'dynamic' };
    if (mode === 'none') return { mode: 'none' };
    if (!draft?.verdict || draft.verdict.errors.length > 0) return null;
    return { mode: 'static', label: draft.label, relabel: draft.relabel };
  };
  const seclabel = next();
  // A label the checks warn about (a pair another VM holds, relabel off) is saved only once confirmed.
  const warnings = mode === 'static' ? (draft?.verdict?.warnings ?? []) : [];
  const [acceptedWarnings, setAcceptedWarnings] = useState<string | null>(null);
  const warningsAccepted = warnings.length === 0 || acceptedWarnings === warnings.join('\n');

  const save = () => {
    if (!seclabel) return;
    setSaving(true);
    setError(null);
    api
      .updateSeclabel({ vm: details.summary.name, seclabel })
      .then(onSaved, (e: unknown) => setError(errorMessage(e)))
      .finally(() => setSaving(false));
  };

  return (
    <section className="card" aria-label="Security label">
      <h2 className="card__title">Security label</h2>
      <dl className="facts">
        <dt>Mode</dt>
        <dd>
          {MODE_TEXT[current.mode].title}
          {current.mode === 'static' && (current.relabel ? ', relabel' : ', no relabel')}
        </dd>
        {current.mode === 'static' && (
          <>
            <dt>Label</dt>
            <dd>
              <ContextText label={current.label} parts={details.summary.security.processParts} />
            </dd>
          </>
        )}
        {current.mode === 'dynamic' && current.baseLabel && (
          <>
            <dt>Base label</dt>
            <dd>
              <ContextText label={current.baseLabel} />
            </dd>
          </>
        )}
      </dl>

      <fieldset className="mode-picker" disabled={!stopped}>
        <legend>Change to</legend>
        {(Object.keys(MODE_TEXT) as Mode[]).map((m) => (
          <label key={m} className={`mode-option${mode === m ? ' mode-option--selected' : ''}`}>
            <input type="radio" name="seclabel-mode" value={m} checked={mode === m} onChange={() => setMode(m)} />
            <span className="mode-option__title">{MODE_TEXT[m].title}</span>
            <span className="mode-option__detail">{MODE_TEXT[m].detail}</span>
          </label>
        ))}
      </fieldset>
      {!stopped && <p className="muted">Stop the VM to change its label.</p>}

      {mode === 'static' && stopped && (
        <StaticLabelEditor
          vm={details.summary.name}
          initialLabel={current.mode === 'static' ? current.label : undefined}
          initialRelabel={current.mode === 'static' ? current.relabel : true}
          onChange={setDraft}
        />
      )}
      {mode === 'none' && current.mode !== 'none' && (
        <Notice tone="warning" title="The VM will run unconfined">
          Nothing keeps a guest that takes over qemu away from other VMs’ images or the host’s files but the qemu user’s own rights.
        </Notice>
      )}
      {error && <Notice tone="error">{error}</Notice>}
      {stopped && warnings.length > 0 && (
        <label className="checkbox">
          <input type="checkbox" checked={warningsAccepted} onChange={(e) => setAcceptedWarnings(e.target.checked ? warnings.join('\n') : null)} />
          Save this label despite the warnings above
        </label>
      )}
      <div className="button-row">
        <button type="button" className="button button--primary" disabled={!stopped || saving || seclabel === null || !warningsAccepted} onClick={save}>
          Save label
        </button>
      </div>
    </section>
  );
}
