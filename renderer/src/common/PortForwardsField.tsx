import type { PortForward } from '../../../src/contracts/ipc-contract';

/** One row as typed: ports stay text until the form is sent, so a half-typed number is not lost. */
export interface ForwardDraft {
  host: string;
  guest: string;
}

export const draftsOf = (forwards: readonly PortForward[] = []): ForwardDraft[] => forwards.map((f) => ({ host: String(f.hostPort), guest: String(f.guestPort) }));

/** Rows left empty are dropped; the main process checks ranges and duplicates and names this field. */
export const forwardsOf = (drafts: readonly ForwardDraft[]): PortForward[] =>
  drafts.filter((d) => d.host.trim() !== '' || d.guest.trim() !== '').map((d) => ({ hostPort: Number(d.host), guestPort: Number(d.guest) }));

/**
 * Port forwards of user-mode networking, for the create and the edit form: a port on this machine's
 * loopback (qemu listens on 127.0.0.1 only) that reaches a TCP port of the guest.
 */
export function PortForwardsField({ value, onChange, disabled = false }: { value: readonly ForwardDraft[]; onChange: (next: ForwardDraft[]) => void; disabled?: boolean }) {
  const set = (i: number, change: Partial<ForwardDraft>) => onChange(value.map((d, j) => (j === i ? { ...d, ...change } : d)));
  return (
    <fieldset className="forwards" aria-label="Port forwards" disabled={disabled}>
      <legend className="field__label">Port forwards</legend>
      <span className="field__help">127.0.0.1:host port (1024–65535) on this machine reaches the guest’s TCP port.</span>
      {value.map((d, i) => (
        <div className="forwards__row" key={i}>
          <input className="input" type="number" min={1024} max={65535} aria-label={`Host port ${i + 1}`} placeholder="2222" value={d.host}
            onChange={(e) => set(i, { host: e.target.value })} required />
          <span aria-hidden="true">→</span>
          <input className="input" type="number" min={1} max={65535} aria-label={`Guest port ${i + 1}`} placeholder="22" value={d.guest}
            onChange={(e) => set(i, { guest: e.target.value })} required />
          <button type="button" className="button button--danger-quiet" onClick={() => onChange(value.filter((_, j) => j !== i))}>
            Remove<span className="visually-hidden"> forward {i + 1}</span>
          </button>
        </div>
      ))}
      <div>
        <button type="button" className="button" onClick={() => onChange([...value, { host: '', guest: '' }])}>Add a port forward</button>
      </div>
    </fieldset>
  );
}
