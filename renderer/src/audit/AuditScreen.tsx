import type { AccessLevel, AuditCell, AuditProblem, AuditReport, Severity } from '../../../src/main/ipc-contract';
import { useApi } from '../api';
import { Notice } from '../common/Notice';
import { useAsync } from '../common/use-async';
import { McsChip } from '../mcs/McsChip';
import { levelOfContext, pairOf } from '../mcs/mcs-level';
import { PathText } from '../common/PathText';

const SOURCE_TEXT = { kernel: 'Answered by the kernel', evaluator: 'Answered by the policy evaluator' } as const;
const SEVERITY_ORDER: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };
const ACCESS_TEXT: Record<AccessLevel, string> = { write: 'write', read: 'read', none: 'none' };

const baseName = (path: string) => path.split('/').pop() || path;

function Problems({ problems }: { problems: AuditProblem[] }) {
  if (problems.length === 0) return <Notice tone="ok" title="No problems found" />;
  const sorted = [...problems].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
  return (
    <ul className="problems" aria-label="Problems">
      {sorted.map((p, i) => (
        <li key={`${p.kind}-${p.vm ?? ''}-${p.path ?? ''}-${i}`} className={`problem problem--${p.severity}`} data-kind={p.kind}>
          <span className="problem__severity">{p.severity}</span>
          <span className="problem__message">{p.message}</span>
          {(p.vm || p.path) && (
            <span className="problem__where">
              {p.vm && <span>VM {p.vm}</span>}
              {p.path && <PathText path={p.path} />}
            </span>
          )}
        </li>
      ))}
    </ul>
  );
}

function Matrix({ report }: { report: AuditReport }) {
  if (report.vms.length === 0) return <p className="empty">No VM is running: there is no access to show.</p>;
  const cells = new Map<string, AuditCell>(report.cells.map((c) => [`${c.vm}\0${c.path}`, c]));
  return (
    // Focusable so that a keyboard can scroll a matrix wider than the window.
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
                const unintended = access !== 'none' && !r.usedBy.includes(vm.name) && pairOf(levelOfContext(r.label)) !== null;
                return (
                  <td
                    key={r.path}
                    className={`access access--${access}${unintended ? ' access--unintended' : ''}`}
                    title={cell?.reason ?? 'not evaluated'}
                    data-testid={`access-${vm.name}-${r.path}`}
                  >
                    {ACCESS_TEXT[access]}
                    {unintended && <span className="access__flag"> ⚠</span>}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Who can touch what, right now: running VMs against their files, with the problems that follow. */
export function AuditScreen() {
  const api = useApi();
  const report = useAsync(() => api.audit(), [api]);
  const data = report.data;

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
          <section className="card" aria-label="Problems found">
            <h2 className="card__title">Problems</h2>
            <Problems problems={data.problems} />
          </section>
          <section className="card" aria-label="Who can access what">
            <h2 className="card__title">Who can access what</h2>
            <Matrix report={data} />
            <p className="legend">
              <span className="access access--write">write</span> <span className="access access--read">read</span>{' '}
              <span className="access access--none">none</span> <span className="access access--unintended">⚠ another VM’s private image</span> · hover a
              cell for the rule that decides it
            </p>
          </section>
        </>
      )}
    </div>
  );
}
