import { useVirtualizer } from '@tanstack/react-virtual';
import { memo, useEffect, useRef, useState } from 'react';
import type { RelabelPreview, RelabelResult, RelabelTarget, VmResource } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi, useSvirtEvent } from '../api';
import { Dialog } from '../common/Dialog';
import { Notice } from '../common/Notice';
import { ContextText } from '../mcs/ContextText';
import { relabelTarget } from './relabel-targets';
import { PathText } from '../common/PathText';
import { observeRectOrWindow } from '../common/virtual';

type Phase =
  | { kind: 'previewing' }
  | { kind: 'confirm'; preview: RelabelPreview }
  | { kind: 'applying'; preview: RelabelPreview; done: number; total: number }
  | { kind: 'failed-files'; result: RelabelResult }
  | { kind: 'error'; message: string };

interface RelabelDialogProps {
  vm: string;
  resource: VmResource;
  to: RelabelTarget;
  onClose: () => void;
  /** Called after a relabel that changed the resource (fully or in part). */
  onApplied: (result: RelabelResult) => void;
}

/**
 * Confirms a sharing change with the exact files whose label changes (from previewRelabel), then applies
 * it, showing progress for directory trees.
 */
export function RelabelDialog({ vm, resource, to, onClose, onApplied }: RelabelDialogProps) {
  const api = useApi();
  const [phase, setPhase] = useState<Phase>({ kind: 'previewing' });
  const target = relabelTarget(to);
  const request = { vm, path: resource.path, to };

  useEffect(() => {
    let current = true;
    api.previewRelabel({ vm, path: resource.path, to }).then(
      (preview) => current && setPhase({ kind: 'confirm', preview }),
      (e: unknown) => current && setPhase({ kind: 'error', message: errorMessage(e) }),
    );
    return () => {
      current = false;
    };
  }, [api, vm, resource.path, to]);

  useSvirtEvent('relabelProgress', (progress) => {
    if (progress.vm !== vm || progress.path !== resource.path) return;
    // total 0: the helper does not know it during its one walk; the preview's count stands in.
    setPhase((p) => (p.kind === 'applying' ? { ...p, done: progress.done, total: progress.total > 0 ? progress.total : Math.max(p.total, progress.done) } : p));
  });

  const apply = (preview: RelabelPreview) => {
    setPhase({ kind: 'applying', preview, done: 0, total: preview.count });
    api.applyRelabel(request).then(
      (result) => {
        onApplied(result);
        if (result.failed.length > 0) setPhase({ kind: 'failed-files', result });
        else onClose();
      },
      (e: unknown) => setPhase({ kind: 'error', message: errorMessage(e) }),
    );
  };

  const busy = phase.kind === 'applying';
  const title = `Make ${resource.target ?? resource.path.split('/').pop()} ${target.button.toLowerCase()}?`;
  const actions =
    phase.kind === 'confirm' ? (
      <>
        <button type="button" className="button" onClick={onClose}>
          Cancel
        </button>
        <button type="button" className="button button--primary" onClick={() => apply(phase.preview)}>
          {phase.preview.count === 0 ? 'Apply' : `Relabel ${phase.preview.count} ${phase.preview.count === 1 ? 'file' : 'files'}`}
        </button>
      </>
    ) : busy ? (
      // The walk stops and puts back what it changed; applyRelabel then answers with the failure.
      <button type="button" className="button" onClick={() => api.cancelRelabel({ vm, path: resource.path }).catch(() => undefined)}>
        Cancel
      </button>
    ) : (
      <button type="button" className="button" onClick={onClose}>
        {phase.kind === 'previewing' ? 'Cancel' : 'Close'}
      </button>
    );

  return (
    <Dialog title={title} onClose={onClose} busy={busy} actions={actions} wide>
      <p className="dialog__path">
        <PathText path={resource.path} />
      </p>
      <p data-testid="relabel-meaning">
        {target.meaning} <span className="muted">Label: {target.exact}.</span>
      </p>
      {phase.kind === 'previewing' && <p className="muted">Working out which files change label…</p>}
      {phase.kind === 'error' && <Notice tone="error" title="Nothing was changed">{phase.message}</Notice>}
      {(phase.kind === 'confirm' || phase.kind === 'applying') && <ChangeList preview={phase.preview} />}
      {(phase.kind === 'confirm' || phase.kind === 'applying') && (
        // One slot for both phases, so confirming swaps its text for the bar without moving anything.
        <div className="progress" data-testid="relabel-status">
          <progress aria-label="Relabel progress" value={phase.kind === 'applying' ? phase.done : 0} max={Math.max(phase.kind === 'applying' ? phase.total : phase.preview.count, 1)} />
          <span className="progress__text">
            {phase.kind === 'applying' ? `${phase.done} of ${phase.total} files relabeled` : 'Nothing changes until you confirm.'}
          </span>
        </div>
      )}
      {phase.kind === 'failed-files' && (
        <Notice tone="error" title={`${phase.result.changed} relabeled, ${phase.result.failed.length} failed`}>
          <ul>
            {phase.result.failed.map((f) => (
              <li key={f.path}>
                <PathText path={f.path} />: {f.error}
              </li>
            ))}
          </ul>
        </Notice>
      )}
    </Dialog>
  );
}

// A compact row is about this tall; rows are not measured, and a taller row only makes the window overlap more.
const ROW_ESTIMATE = 28;
const COLUMNS = 3;

// Memoized: progress events re-render the dialog many times. Windowed: a tree's list can hold tens of
// thousands of rows, and only the ones in the scroll box are in the DOM (rows keep their ARIA indexes).
const ChangeList = memo(function ChangeList({ preview }: { preview: RelabelPreview }) {
  const scrollRef = useRef<HTMLDivElement>(null);
  const rows = useVirtualizer({
    count: preview.changes.length, getScrollElement: () => scrollRef.current, estimateSize: () => ROW_ESTIMATE, overscan: 8,
    observeElementRect: observeRectOrWindow, getItemKey: (index) => preview.changes[index]?.path ?? index,
  });
  const items = rows.getVirtualItems();
  const padTop = items[0]?.start ?? 0;
  const padBottom = items.length > 0 ? rows.getTotalSize() - (items[items.length - 1]?.end ?? 0) : 0;
  return (
    <>
      {preview.warnings.map((warning) => (
        <Notice key={warning} tone="warning">
          {warning}
        </Notice>
      ))}
      <p className="change-count" data-testid="change-count">
        {preview.count === 0
          ? 'No file changes label: every file already has it.'
          : `${preview.count} ${preview.count === 1 ? 'file changes' : 'files change'} label:`}
      </p>
      {preview.changes.length > 0 && (
        // Focusable: a long list scrolls, and a keyboard must be able to scroll it.
        <div className="change-list" ref={scrollRef} tabIndex={0} role="region" aria-label="Files that change label, scrollable">
          <table className="table table--compact" aria-label="Files that change label" aria-rowcount={preview.changes.length + 1}>
            <thead>
              <tr aria-rowindex={1}>
                <th scope="col">File</th>
                <th scope="col">From</th>
                <th scope="col">To</th>
              </tr>
            </thead>
            <tbody>
              {padTop > 0 && (
                <tr aria-hidden="true">
                  <td colSpan={COLUMNS} style={{ height: padTop, padding: 0 }} />
                </tr>
              )}
              {items.map((item) => {
                const change = preview.changes[item.index] as RelabelPreview['changes'][number];
                return (
                  <tr key={change.path} data-index={item.index} aria-rowindex={item.index + 2}>
                    <td>
                      <PathText path={change.path} />
                    </td>
                    <td>
                      <ContextText label={change.from} empty="unreadable" />
                    </td>
                    <td>
                      <ContextText label={change.to} />
                    </td>
                  </tr>
                );
              })}
              {padBottom > 0 && (
                <tr aria-hidden="true">
                  <td colSpan={COLUMNS} style={{ height: padBottom, padding: 0 }} />
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
});
