import { useState } from 'react';
import type { AccessLevel, AuditCell, AuditProblem, AuditReport, Severity } from '../../../src/main/ipc-contract';
import { errorMessage, useApi } from '../api';
import type { VmTab } from '../navigation';
import { Notice } from '../common/Notice';
import { useAsync } from '../common/use-async';
import { McsChip } from '../mcs/McsChip';
import { levelOfContext, pairOf } from '../mcs/mcs-level';
import { PathText } from '../common/PathText';

const SOURCE_TEXT = { kernel: 'Answered by the kernel', evaluator: 'Answered by the policy evaluator' } as const;
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

function Matrix({ report }: { report: AuditReport }) {
  const [selected, setSelected] = useState<AuditCell | null>(null);
  if (report.vms.length === 0) return <p className="empty">No VM is running: there is no access to show.</p>;
  const cells = new Map<string, AuditCell>(report.cells.map((c) => [`${c.vm}\0${c.path}`, c]));
  return (
    <>
    {/* Focusable so that a keyboard can scroll a matrix wider than the window. */}
    <div className="matrix-scroll" tabIndex={0} role="region" aria-label="Access matrix, scrollable">
      <table className="table matrix" aria-label="Access matrix">
        <thead>
          <tr>
            <th scope="col" className="matrix__corner">
              VM ↓ / file →
            </th>
            {report.resources.map((r) => (
              <th key={r.path} scope="col" title={`${r.path}\n${r.label ?? 'label unreadable'}\nused by ${r.usedBy.join(', ') || 'no VM'}`}>
                <div className="matrix__file">{baseName(r.path)}</div>
                <McsChip level={levelOfContext(r.label)} />
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {report.vms.map((vm) => (
            <tr key={vm.name}>
              <th scope="row">
                <div className="matrix__vm">{vm.name}</div>
                <McsChip level={vm.processLevel?.level ?? levelOfContext(vm.processLabel)} name={vm.processLevel?.name} />
              </th>
              {report.resources.map((r) => {
                const cell = cells.get(`${vm.name}\0${r.path}`);
                const access = cell?.access ?? 'none';
                // Access to another VM's private image (a label with a pair) is what sVirt exists to prevent;
                // shared images at s0 are meant for every VM.
                const unintended = (access === 'read' || access === 'write') && !r.usedBy.includes(vm.name) && pairOf(levelOfContext(r.label)) !== null;
                const reason = cell?.reason ?? 'not evaluated';
                // A button, so the rule behind the cell is one Tab and Enter away, not on hover only.
                return (
                  <td key={r.path} className={`access access--${access}${unintended ? ' access--unintended' : ''}`} title={reason} data-testid={`access-${vm.name}-${r.path}`}>
                    <button
                      type="button"
                      className="access__button"
                      aria-label={`${vm.name} on ${r.path}: ${ACCESS_TEXT[access]}${unintended ? ', another VM’s private image' : ''}. Show the rule`}
                      aria-pressed={selected?.vm === vm.name && selected.path === r.path}
                      onClick={() => setSelected({ vm: vm.name, path: r.path, access, reason })}
                    >
                      {ACCESS_TEXT[access]}
                      {unintended && <span className="access__flag"> ⚠</span>}
                    </button>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
    <p className="access-rule" aria-live="polite" data-testid="access-rule">
      {selected ? (
        <>
          <strong>
            {selected.vm} → {baseName(selected.path)}: {ACCESS_TEXT[selected.access]}.
          </strong>{' '}
          {selected.reason}
        </>
      ) : (
        'Choose a cell (click, or Tab and Enter) to see the rule that decides it.'
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
          <p className="screen__lede">Which running VM can read or write which file, as SELinux decides it.</p>
        </div>
        <button type="button" className="button" onClick={report.reload} disabled={report.loading}>
          {report.loading ? 'Checking…' : 'Check again'}
        </button>
      </header>
      {report.error && <Notice tone="error" title="The audit failed">{report.error}</Notice>}
      {data && (
        <>
          <p className={`source source--${data.source.kind}`} data-testid="audit-source">
            <strong>{SOURCE_TEXT[data.source.kind]}</strong> — {data.source.why}
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
