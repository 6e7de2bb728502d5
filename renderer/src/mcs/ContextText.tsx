import type { ReactNode } from 'react';
import type { LabelPart } from '../../../src/contracts/ipc-contract';

/**
 * A label in monospace, its parts marked as the security model named them (an SELinux type and level, an
 * AppArmor profile), each with its name and meaning as a tooltip. The parts come from the main process;
 * nothing here splits a label: the text between parts (separators) is shown dim, and a label without parts
 * is shown as it is.
 */
export function ContextText({ label, parts = [], empty = '—' }: { label: string | null; parts?: readonly LabelPart[]; empty?: string }) {
  if (label === null) return <span className="context context--empty">{empty}</span>;
  const pieces: ReactNode[] = [];
  let at = 0;
  for (const [i, part] of parts.entries()) {
    const found = part.value === '' ? -1 : label.indexOf(part.value, at);
    if (found < 0) continue;
    if (found > at) pieces.push(<span key={`sep${i}`} className="context__dim">{label.slice(at, found)}</span>, <wbr key={`wbr${i}`} />);
    const slug = part.name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
    pieces.push(
      <span key={`part${i}`} className={`context__part context__part--${slug}`} data-part={part.name} title={part.meaning ? `${part.name}: ${part.meaning}` : part.name}>
        {part.value}
      </span>,
    );
    at = found + part.value.length;
  }
  if (pieces.length === 0) return <code className="context" title={label}>{label}</code>;
  if (at < label.length) pieces.push(<span key="rest" className="context__dim">{label.slice(at)}</span>);
  return (
    <code className="context" title={label}>
      {pieces}
    </code>
  );
}
