import { useEffect, useId, useMemo, useRef, useState, type ChangeEvent } from 'react';
import type { StaticLabelVerdict } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Notice } from '../common/Notice';
import { useDebouncedValue } from '../common/use-debounced-value';
import { ContextText } from '../mcs/ContextText';
import { McsChip } from '../mcs/McsChip';
import { levelOfContext } from '../mcs/mcs-level';

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

interface Fields {
  user: string;
  role: string;
  type: string;
  level: string;
}

const DEFAULT_FIELDS: Fields = { user: 'system_u', role: 'system_r', type: 'svirt_t', level: 's0:c' };

/** `user:role:type:level…` into its fields; the level keeps every further colon (s0:c1,c2). */
function splitLabel(label: string | undefined): Fields {
  if (!label) return DEFAULT_FIELDS;
  const [user = '', role = '', type = '', ...level] = label.split(':');
  return { user, role, type, level: level.join(':') };
}

const joinLabel = ({ user, role, type, level }: Fields) => [user, role, type, ...(level === '' ? [] : [level])].join(':');

const FIELD_HELP: Record<keyof Fields, string> = {
  user: 'SELinux user, normally system_u',
  role: 'role, normally system_r',
  type: "the VM's process type, e.g. svirt_t",
  level: 'sensitivity and the VM’s category pair, e.g. s0:c12,c345',
};

/**
 * A static seclabel, field by field, checked live by the main process: malformed contexts, categories
 * outside the policy's range, pairs that other VMs or processes hold, and what relabel=no leaves to the user.
 */
export function StaticLabelEditor({ vm, initialLabel, initialRelabel = false, onChange, debounceMs = 300 }: StaticLabelEditorProps) {
  const api = useApi();
  const idPrefix = useId();
  const [fields, setFields] = useState<Fields>(() => splitLabel(initialLabel));
  const [relabel, setRelabel] = useState(initialRelabel);
  const [verdict, setVerdict] = useState<StaticLabelVerdict | null>(null);
  const [checkError, setCheckError] = useState<string | null>(null);

  const label = joinLabel(fields);
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

  const setField = (name: keyof Fields) => (event: ChangeEvent<HTMLInputElement>) => setFields((f) => ({ ...f, [name]: event.target.value }));

  return (
    <fieldset className="label-editor">
      <legend>Static label</legend>
      <div className="label-editor__fields">
        {(Object.keys(FIELD_HELP) as (keyof Fields)[]).map((name) => (
          <label key={name} className={`field field--${name}`} htmlFor={`${idPrefix}-${name}`}>
            <span className="field__label">{name[0]?.toUpperCase() + name.slice(1)}</span>
            <input
              id={`${idPrefix}-${name}`}
              className="input input--mono"
              value={fields[name]}
              onChange={setField(name)}
              spellCheck={false}
              autoComplete="off"
              aria-describedby={`${idPrefix}-${name}-help`}
            />
            <span id={`${idPrefix}-${name}-help`} className="field__help">
              {FIELD_HELP[name]}
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
          <McsChip level={levelOfContext(label)} />
          <ContextText context={label} />
        </dd>
        <dt>Private images get</dt>
        <dd className="label-cell" data-testid="image-label">
          {current?.imageLabel ? (
            <>
              <McsChip level={levelOfContext(current.imageLabel)} />
              <ContextText context={current.imageLabel} />
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
