import { useMemo, useRef, useState, type KeyboardEvent } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { cellAt } from '../../../src/core/selinux/audit-report';
import type { AccessLevel, AuditCell, AuditProblem, AuditReport, Severity } from '../../../src/contracts/ipc-contract';
import { observeRectOrWindow } from '../common/virtual';
import { errorMessage, useApi } from '../api';
import type { VmTab } from '../navigation';
import { Notice } from '../common/Notice';
import { useAsync } from '../common/use-async';
import { McsChip } from '../mcs/McsChip';
import { PathText } from '../common/PathText';

const SOURCE_TEXT = { kernel: 'Answered by the kernel', evaluator: 'Answered by the policy evaluator', profiles: 'Answered by the loaded AppArmor profiles' } as const;
const SEVERITY_ORDER: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };
const ACCESS_TEXT: Record<AccessLevel, string> = { write: 'write', read: 'read', none: 'none', error: 'error' };

const baseName = (path: string) => path.split('/').pop() || path;

/** The action that fixes a problem, where the app has one; null for host-wide ones (SELinux off). */
function fixOf(problem: AuditProblem, report: AuditReport, act: FixActions): { label: string; run: () => void } | null {
  const owner = problem.vm ?? report.resources.find((r) => r.path === problem.path)?.usedBy[0];
  if (!owner) return null;
  switch (problem.kind) {
    case 'unconfined-vm':
      return { label: `Shut down ${owner}`, run: () => act.shutDown(owner) };
    case 'duplicate-pair':
      return { label: `Edit the label of ${owner}`, run: () => act.open(owner, 'seclabel') };
    case 'label-drift':
    case 'unintended-sharing':
      return { label: `Relabel ${baseName(problem.path ?? '')} in ${owner}`, run: () => act.open(owner, 'overview') };
    default:
      return null;
  }
}

interface FixActions {
  open: (vm: string, tab: VmTab) => void;
  shutDown: (vm: string) => void;
}

function Problems({ report, act }: { report: AuditReport; act: FixActions }) {
  const { problems } = report;
  if (problems.length === 0) return <Notice tone="ok" title="No problems found" />;
  const sorted = [...problems].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
  return (
    <ul className="problems" aria-label="Problems">
      {sorted.map((p, i) => {
        const fix = fixOf(p, report, act);
        return (
          <li key={`${p.kind}-${p.vm ?? ''}-${p.path ?? ''}-${i}`} className={`problem problem--${p.severity}`} data-kind={p.kind}>
            <span className="problem__severity">{p.severity}</span>
            <span className="problem__message">{p.message}</span>
            {(p.vm || p.path) && (
              <span className="problem__where">
                {p.vm && <span>VM {p.vm}</span>}
                {p.path && <PathText path={p.path} />}
              </span>
            )}
            {fix && (
              <button type="button" className="button button--small problem__fix" onClick={fix.run}>
                {fix.label}
              </button>
            )}
          </li>
        );
      })}
    </ul>
  );
}

// Fixed sizes: the matrix is windowed in both directions, so every row and column has a known extent.
const ROW_HEIGHT = 54;
const COLUMN_WIDTH = 124;
const HEADER_HEIGHT = 62;
const ROW_HEADER_WIDTH = 176;
const PAGE_ROWS = 10;

/**
 * Running VMs × files as an ARIA grid, windowed both ways (100 × 10,000 cells render as the few dozen in
 * view). One tab stop: arrow keys, Home/End and Page Up/Down move the active cell, which scrolls into
 * view; Enter or Space (or a click) shows the rule behind it.
 */
function Matrix({ report }: { report: AuditReport }) {
  const [selected, setSelected] = useState<AuditCell | null>(null);
  const [active, setActive] = useState({ i: 0, j: 0 });
  const scrollRef = useRef<HTMLDivElement>(null);
  const { vms, resources } = report;
  // Per column once, not per cell: which files carry a pair (another VM's private image when reached).
  const columnPairs = useMemo(() => resources.map((_, j) => (report.resourceLevels[j]?.pair ?? null) !== null), [resources, report.resourceLevels]);
  const rows = useVirtualizer({
    count: vms.length, getScrollElement: () => scrollRef.current, estimateSize: () => ROW_HEIGHT, overscan: 4,
    scrollPaddingStart: HEADER_HEIGHT, observeElementRect: observeRectOrWindow,
  });
  const columns = useVirtualizer({
    horizontal: true, count: resources.length, getScrollElement: () => scrollRef.current, estimateSize: () => COLUMN_WIDTH, overscan: 2,
    scrollPaddingStart: ROW_HEADER_WIDTH, observeElementRect: observeRectOrWindow,
  });
  if (vms.length === 0) return <p className="empty">No VM is running: there is no access to show.</p>;

  const cell = (i: number, j: number) => {
    const c = cellAt(report, i, j);
    const vm = vms[i] as AuditReport['vms'][number];
    const r = resources[j] as AuditReport['resources'][number];
    // Access to another VM's private image (a label with a pair) is what sVirt exists to prevent;
    // shared images at s0 are meant for every VM.
    const unintended = (c.access === 'read' || c.access === 'write') && vm.processLabel !== null && !r.usedBy.includes(vm.name) && columnPairs[j] === true;
    return { ...c, unintended };
  };
  const moveTo = (i: number, j: number) => {
    const next = { i: Math.max(0, Math.min(vms.length - 1, i)), j: Math.max(0, Math.min(resources.length - 1, j)) };
    setActive(next);
    rows.scrollToIndex(next.i);
    columns.scrollToIndex(next.j);
  };
  const choose = (i: number, j: number) => {
    const c = cell(i, j);
    setActive({ i, j });
    setSelected({ vm: c.vm, path: c.path, access: c.access, reason: c.reason });
  };
  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    const { i, j } = active;
    const moves: Record<string, () => void> = {
      ArrowDown: () => moveTo(i + 1, j), ArrowUp: () => moveTo(i - 1, j), ArrowRight: () => moveTo(i, j + 1), ArrowLeft: () => moveTo(i, j - 1),
      PageDown: () => moveTo(i + PAGE_ROWS, j), PageUp: () => moveTo(i - PAGE_ROWS, j),
      Home: () => (e.ctrlKey ? moveTo(0, 0) : moveTo(i, 0)), End: () => (e.ctrlKey ? moveTo(vms.length - 1, resources.length - 1) : moveTo(i, resources.length - 1)),
      Enter: () => choose(i, j), ' ': () => choose(i, j),
    };
    const move = moves[e.key];
    if (move) {
      e.preventDefault();
      move();
    }
  };
  const cellId = (i: number, j: number) => `access-cell-${i}-${j}`;
  const visibleColumns = columns.getVirtualItems();
  const visibleRows = rows.getVirtualItems();
  // Only a cell in the DOM may be named active (one scrolled away by the mouse is not).
  const activeShown = visibleRows.some((r) => r.index === active.i) && visibleColumns.some((c) => c.index === active.j);
  const width = ROW_HEADER_WIDTH + columns.getTotalSize();

  return (
    <>
    {/* One tab stop for the whole grid; the active cell is announced through aria-activedescendant. */}
    <div
      ref={scrollRef}
      className="matrix-scroll"
      tabIndex={0}
      role="grid"
      aria-label="Access matrix"
      aria-rowcount={vms.length + 1}
      aria-colcount={resources.length + 1}
      aria-activedescendant={activeShown ? cellId(active.i, active.j) : undefined}
      aria-describedby="access-matrix-keys"
      onKeyDown={onKeyDown}
      style={{ height: Math.min(HEADER_HEIGHT + vms.length * ROW_HEIGHT + 2, 520) }}
    >
      <div className="matrix" style={{ width, height: HEADER_HEIGHT + rows.getTotalSize() }}>
        <div role="row" aria-rowindex={1} className="matrix__row matrix__row--head" style={{ width, height: HEADER_HEIGHT }}>
          <div role="columnheader" aria-colindex={1} className="matrix__corner" style={{ width: ROW_HEADER_WIDTH }}>
            VM ↓ / file →
          </div>
          {visibleColumns.map((col) => {
            const r = resources[col.index] as AuditReport['resources'][number];
            return (
              <div
                key={col.key}
                role="columnheader"
                aria-colindex={col.index + 2}
                className="matrix__column"
                style={{ left: ROW_HEADER_WIDTH + col.start, width: col.size }}
                title={`${r.path}\n${r.label ?? 'no label'}\nused by ${r.usedBy.join(', ') || 'no running VM'}`}
              >
                <div className="matrix__file">{baseName(r.path)}</div>
                <McsChip mark={report.resourceLevels[col.index]} />
              </div>
            );
          })}
        </div>
        {visibleRows.map((row) => {
          const vm = vms[row.index] as AuditReport['vms'][number];
          return (
            <div key={row.key} role="row" aria-rowindex={row.index + 2} className="matrix__row" style={{ top: HEADER_HEIGHT + row.start, width, height: row.size }}>
              <div role="rowheader" aria-colindex={1} className="matrix__vm-head" style={{ width: ROW_HEADER_WIDTH }}>
                <span className="matrix__vm" title={vm.name}>{vm.name}</span>
                {vm.processLabel === null ? (
                  <span className="chip chip--unconfined" title="qemu runs without an SELinux label">⚠ unconfined</span>
                ) : (
                  <McsChip mark={vm.processLevel} />
                )}
              </div>
              {visibleColumns.map((col) => {
                const c = cell(row.index, col.index);
                const isActive = active.i === row.index && active.j === col.index;
                return (
                  <div
                    key={col.key}
                    id={cellId(row.index, col.index)}
                    role="gridcell"
                    aria-colindex={col.index + 2}
                    aria-selected={selected?.vm === c.vm && selected.path === c.path}
                    aria-label={`${c.vm} on ${c.path}: ${ACCESS_TEXT[c.access]}${c.unintended ? ', another VM’s private image' : ''}`}
                    className={`access access--${c.access}${c.unintended ? ' access--unintended' : ''}${isActive ? ' access--active' : ''}`}
                    style={{ left: ROW_HEADER_WIDTH + col.start, width: col.size }}
                    title={c.reason}
                    data-testid={`access-${c.vm}-${c.path}`}
                    onClick={() => {
                      scrollRef.current?.focus();
                      choose(row.index, col.index);
                    }}
                  >
                    {ACCESS_TEXT[c.access]}
                    {c.unintended && <span className="access__flag"> ⚠</span>}
                  </div>
                );
              })}
            </div>
          );
        })}
      </div>
    </div>
    <p id="access-matrix-keys" className="legend">
      {vms.length} {vms.length === 1 ? 'VM' : 'VMs'} × {resources.length} {resources.length === 1 ? 'file' : 'files'}. In the matrix, arrow keys move; Enter shows the rule.
    </p>
    <p className="access-rule" aria-live="polite" data-testid="access-rule">
      {selected ? (
        <>
          <strong>
            {selected.vm} → {baseName(selected.path)}: {ACCESS_TEXT[selected.access]}.
          </strong>{' '}
          {selected.reason}
        </>
      ) : (
        'Choose a cell (click, or Tab to the matrix, arrow keys and Enter) to see the rule that decides it.'
      )}
    </p>
    </>
  );
}

/** Who can touch what, right now: running VMs against their files, with the problems that follow. */
export function AuditScreen({ onOpenVm = () => undefined }: { onOpenVm?: (vm: string, tab: VmTab) => void }) {
  const api = useApi();
  const report = useAsync(() => api.audit(), [api]);
  const data = report.data;
  const [fixError, setFixError] = useState<string | null>(null);
  const act: FixActions = {
    open: onOpenVm,
    shutDown: (vm) => {
      setFixError(null);
      api.shutdownVm({ name: vm }).then(report.reload, (e: unknown) => setFixError(errorMessage(e)));
    },
  };

  return (
    <div className="screen">
      <header className="screen__header">
        <div>
          <h1>Access audit</h1>
          <p className="screen__lede">Which running VM can read or write which file, as {data?.source.modelName ?? 'the host’s security model'} decides it.</p>
        </div>
        <button type="button" className="button" onClick={report.reload} disabled={report.loading}>
          {report.loading ? 'Checking…' : 'Check again'}
        </button>
      </header>
      {report.error && <Notice tone="error" title="The audit failed">{report.error}</Notice>}
      {data && (
        <>
          <p className={`source source--${data.source.kind}`} data-testid="audit-source">
            <strong>{data.source.modelName}: {SOURCE_TEXT[data.source.kind]}</strong> — {data.source.why}
          </p>
          {data.source.kind === 'evaluator' && (
            <Notice tone="warning" title="SELinux is off: nothing below is enforced now">
              The matrix shows what the installed policy would decide if SELinux were on, so that the labels are right before it is.
            </Notice>
          )}
          {fixError && <Notice tone="error">{fixError}</Notice>}
          <section className="card" aria-label="Problems found">
            <h2 className="card__title">Problems</h2>
            <Problems report={data} act={act} />
          </section>
          <section className="card" aria-label="Who can access what">
            <h2 className="card__title">{data.source.kind === 'evaluator' ? 'Who could access what, once SELinux is on' : 'Who can access what'}</h2>
            <Matrix report={data} />
            <p className="legend">
              <span className="access access--write">write</span> <span className="access access--read">read</span>{' '}
              <span className="access access--none">none</span> <span className="access access--unintended">⚠ another VM’s private image</span> · choose a
              cell for the rule that decides it
            </p>
          </section>
        </>
      )}
    </div>
  );
}
