import { useEffect, useId, useMemo, useRef, useState, type ChangeEvent } from 'react';
import type { StaticLabelForm, StaticLabelVerdict } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Notice } from '../common/Notice';
import { useDebouncedValue } from '../common/use-debounced-value';
import { ContextText } from '../mcs/ContextText';
import { McsChip } from '../mcs/McsChip';

export interface StaticLabelDraft {
  label: string;
  relabel: boolean;
  /** The main process's verdict on exactly this label and relabel; null while it is being checked. */
  verdict: StaticLabelVerdict | null;
}

interface StaticLabelEditorProps {
  /** The VM being edited, so that its own pair is not reported as taken. */
  vm?: string;
  initialLabel?: string;
  initialRelabel?: boolean;
  onChange?: (draft: StaticLabelDraft) => void;
  debounceMs?: number;
}

type Fields = Record<string, string>;

/** The fields' values joined as the model writes a label; an empty last field is left out with its separator. */
function joinFields(form: StaticLabelForm, fields: Fields): string {
  const values = form.fields.map((f) => fields[f.key] ?? '');
  while (values.length > 1 && values.at(-1) === '') values.pop();
  return values.join(form.separator);
}

/**
 * A static seclabel, field by field, checked live by the main process: malformed contexts, categories
 * outside the policy's range, pairs that other VMs or processes hold, and what relabel=no leaves to the user.
 * The fields, their help and their defaults are the security model's (staticLabelForm), not this form's.
 */
export function StaticLabelEditor(props: StaticLabelEditorProps) {
  const api = useApi();
  const [form, setForm] = useState<StaticLabelForm | null>(null);
  const [formError, setFormError] = useState<string | null>(null);
  const { initialLabel } = props;
  useEffect(() => {
    let live = true;
    api.staticLabelForm(initialLabel === undefined ? {} : { label: initialLabel }).then(
      (answer) => live && setForm(answer),
      (e: unknown) => live && setFormError(errorMessage(e)),
    );
    return () => {
      live = false;
    };
  }, [api, initialLabel]);
  if (formError) return <Notice tone="error" title="Could not read the label's fields">{formError}</Notice>;
  if (!form) return <p className="muted">Reading the label’s fields…</p>;
  return <LabelFields {...props} form={form} />;
}

function LabelFields({ vm, form, initialRelabel = false, onChange, debounceMs = 300 }: StaticLabelEditorProps & { form: StaticLabelForm }) {
  const api = useApi();
  const idPrefix = useId();
  const [fields, setFields] = useState<Fields>(() => Object.fromEntries(form.fields.map((f) => [f.key, f.value])));
  const [relabel, setRelabel] = useState(initialRelabel);
  const [verdict, setVerdict] = useState<StaticLabelVerdict | null>(null);
  const [checkError, setCheckError] = useState<string | null>(null);

  const label = joinFields(form, fields);
  const request = useMemo(() => ({ label, relabel }), [label, relabel]);
  const settled = useDebouncedValue(request, debounceMs);
  const latestRequest = useRef(0);

  useEffect(() => {
    const id = ++latestRequest.current;
    setVerdict(null);
    setCheckError(null);
    api.validateStaticLabel({ ...(vm === undefined ? {} : { vm }), label: settled.label, relabel: settled.relabel }).then(
      (answer) => {
        if (id === latestRequest.current) setVerdict(answer);
      },
      (e: unknown) => {
        if (id === latestRequest.current) setCheckError(errorMessage(e));
      },
    );
  }, [api, vm, settled]);

  // A verdict belongs to the label it was asked about; while the user types on, there is none.
  const current = settled === request ? verdict : null;
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  useEffect(() => {
    onChangeRef.current?.({ label, relabel, verdict: current });
  }, [label, relabel, current]);

  const setField = (name: string) => (event: ChangeEvent<HTMLInputElement>) => setFields((f) => ({ ...f, [name]: event.target.value }));

  return (
    <fieldset className="label-editor">
      <legend>Static label</legend>
      <div className="label-editor__fields">
        {form.fields.map(({ key, label: title, help }) => (
          <label key={key} className={`field field--${key}`} htmlFor={`${idPrefix}-${key}`}>
            <span className="field__label">{title}</span>
            <input
              id={`${idPrefix}-${key}`}
              className="input input--mono"
              value={fields[key] ?? ''}
              onChange={setField(key)}
              spellCheck={false}
              autoComplete="off"
              aria-describedby={`${idPrefix}-${key}-help`}
            />
            <span id={`${idPrefix}-${key}-help`} className="field__help">
              {help}
            </span>
          </label>
        ))}
      </div>
      <label className="checkbox">
        <input type="checkbox" checked={relabel} onChange={(e) => setRelabel(e.target.checked)} />
        Relabel the VM’s files with a matching image label
      </label>

      <dl className="label-editor__result">
        <dt>Process label</dt>
        <dd className="label-cell">
          <McsChip mark={current?.processLevel} />
          <ContextText label={label} parts={current?.processParts} />
        </dd>
        <dt>Private images get</dt>
        <dd className="label-cell" data-testid="image-label">
          {current?.imageLabel ? (
            <>
              <McsChip mark={current.imageLevel} />
              <ContextText label={current.imageLabel} parts={current.imageParts} />
            </>
          ) : (
            <span className="muted">{current === null ? 'checking…' : relabel ? 'no image label (fix the errors)' : 'nothing: relabel is off'}</span>
          )}
        </dd>
      </dl>

      {checkError && (
        <Notice tone="error" title="Could not check the label">
          {checkError}
        </Notice>
      )}
      {current && current.errors.length > 0 && (
        <Notice tone="error" title="This label cannot be used">
          <ul aria-label="Label errors">
            {current.errors.map((error) => (
              <li key={error}>{error}</li>
            ))}
          </ul>
        </Notice>
      )}
      {current && current.warnings.length > 0 && (
        <Notice tone="warning" title="Check before using it">
          <ul aria-label="Label warnings">
            {current.warnings.map((warning) => (
              <li key={warning}>{warning}</li>
            ))}
          </ul>
        </Notice>
      )}
      {current && current.errors.length === 0 && current.warnings.length === 0 && <Notice tone="ok" title="The label is valid and its pair is free" />}
    </fieldset>
  );
}
