import { useState, type ReactNode } from 'react';
import type { DiskClass, VmControlAction, VmDetails } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Notice } from '../common/Notice';
import { PathText } from '../common/PathText';
import { useAsync } from '../common/use-async';
import { EditVmForm } from './EditVmForm';

function Field({ label, children }: { label: string; children: ReactNode }) {
  return (
    <label className="field">
      <span className="field__label">{label}</span>
      {children}
    </label>
  );
}

/**
 * Disks, snapshots and changes of one VM: attach, detach and create images and edit the machine while it
 * is stopped; pause, resume and reset while it runs; snapshots either way (reverting needs it stopped).
 * Every change goes through the same services as the CLI, so the label table shows each new file.
 */
export function DisksPanel({ details, onChanged, onRenamed }: { details: VmDetails; onChanged: () => void; onRenamed: () => void }) {
  const api = useApi();
  const vm = details.summary.name;
  const stopped = details.summary.state === 'stopped';
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [attachPath, setAttachPath] = useState('');
  const [attachClass, setAttachClass] = useState<DiskClass>('private');
  const [newPath, setNewPath] = useState('');
  const [newSize, setNewSize] = useState('1G');
  const [newFormat, setNewFormat] = useState<'qcow2' | 'raw'>('qcow2');
  const [snapName, setSnapName] = useState('');
  const [cloneName, setCloneName] = useState('');
  const snapshots = useAsync(() => api.snapshot({ vm, op: 'list' }), [api, vm, details.summary.state]);
  const hasQcow2 = details.definition.disks.some((d) => d.format === 'qcow2' && d.class !== 'readonly');

  const run = <T,>(action: () => Promise<T>, done: string | ((result: T) => string)) => {
    setBusy(true);
    setError(null);
    setStatus(null);
    action()
      .then((result) => {
        setStatus(typeof done === 'string' ? done : done(result));
        snapshots.reload();
        onChanged();
      }, (e: unknown) => setError(errorMessage(e)))
      .finally(() => setBusy(false));
  };
  const control = (action: VmControlAction) => run(() => api.controlVm({ name: vm, action }), `${vm}: ${action === 'pause' ? 'paused' : action === 'resume' ? 'resumed' : 'reset'}`);
  const browse = () => {
    void api.pickDiskFile().then((picked) => picked !== null && setAttachPath(picked), (e: unknown) => setError(errorMessage(e)));
  };

  return (
    <>
      {error && <Notice tone="error">{error}</Notice>}
      {status && <p className="field__help" role="status">{status}</p>}
      {!stopped && (
        <section className="card" aria-label="Running machine">
          <h2 className="card__title">Running machine</h2>
          <div className="button-row">
            <button type="button" className="button" disabled={busy} onClick={() => control('pause')}>Pause</button>
            <button type="button" className="button" disabled={busy} onClick={() => control('resume')}>Resume</button>
            <button type="button" className="button" disabled={busy} onClick={() => control('reboot')}>Reset</button>
          </div>
        </section>
      )}

      <section className="card" aria-label="Disks">
        <h2 className="card__title">Disks</h2>
        <table className="table">
          <thead>
            <tr><th>Image</th><th>Format</th><th>Sharing</th><th><span className="visually-hidden">Actions</span></th></tr>
          </thead>
          <tbody>
            {details.definition.disks.map((d) => (
              <tr key={d.path}>
                <td><PathText path={d.path} /></td>
                <td>{d.format}</td>
                <td>{d.class}</td>
                <td>
                  <button type="button" className="button" disabled={busy || !stopped} title={stopped ? undefined : 'Stop the VM to detach a disk'}
                    onClick={() => run(() => api.detachDisk({ vm, path: d.path }), `detached ${d.path} (the file is kept)`)}>
                    Detach
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {details.definition.disks.length === 0 && <p className="empty">No disks.</p>}
        <form className="form__row" onSubmit={(e) => {
          e.preventDefault();
          run(() => api.attachDisk({ vm, path: attachPath, class: attachClass }), `attached ${attachPath}`);
        }}>
          <Field label="Attach an image">
            <input className="input input--mono" value={attachPath} onChange={(e) => setAttachPath(e.target.value)} placeholder="/home/me/images/data.qcow2" required />
          </Field>
          <button type="button" className="button" onClick={browse} disabled={busy}>Browse…</button>
          <Field label="Sharing">
            <select className="input" value={attachClass} onChange={(e) => setAttachClass(e.target.value as DiskClass)}>
              <option value="private">private (this VM only)</option>
              <option value="shared">shared read-write</option>
              <option value="readonly">read-only</option>
            </select>
          </Field>
          <button type="submit" className="button" disabled={busy || !stopped}>Attach</button>
        </form>
        <form className="form__row" aria-label="Create a disk" onSubmit={(e) => {
          e.preventDefault();
          run(async () => {
            const created = await api.createDisk({ path: newPath, format: newFormat, size: newSize });
            await api.attachDisk({ vm, path: created.path, class: 'private' });
          }, `created and attached ${newPath}`);
        }}>
          <Field label="New disk">
            <input className="input input--mono" value={newPath} onChange={(e) => setNewPath(e.target.value)} placeholder="/home/me/images/new.qcow2" required />
          </Field>
          <Field label="Size">
            <input className="input" value={newSize} onChange={(e) => setNewSize(e.target.value)} placeholder="20G" required size={6} />
          </Field>
          <Field label="Format">
            <select className="input" value={newFormat} onChange={(e) => setNewFormat(e.target.value as 'qcow2' | 'raw')}>
              <option value="qcow2">qcow2</option>
              <option value="raw">raw</option>
            </select>
          </Field>
          <button type="submit" className="button" disabled={busy || !stopped}>Create and attach</button>
        </form>
      </section>

      <section className="card" aria-label="Snapshots">
        <h2 className="card__title">Snapshots</h2>
        {!hasQcow2 && <p className="empty">Snapshots need a writable qcow2 disk.</p>}
        {snapshots.error && hasQcow2 && <Notice tone="error">{snapshots.error}</Notice>}
        {snapshots.data && (
          <table className="table" aria-label="Snapshot list">
            <thead>
              <tr><th>Snapshot</th><th>Taken</th><th>Disk</th><th><span className="visually-hidden">Actions</span></th></tr>
            </thead>
            <tbody>
              {snapshots.data.disks.flatMap((d) => d.snapshots.map((s) => (
                <tr key={`${d.disk}:${s.name}`}>
                  <td>{s.name}</td>
                  <td>{new Date(s.date).toLocaleString()}</td>
                  <td className="mono">{d.disk}</td>
                  <td className="button-row">
                    <button type="button" className="button" disabled={busy || !stopped} title={stopped ? undefined : 'Stop the VM to revert'}
                      onClick={() => run(() => api.snapshot({ vm, op: 'revert', snapshot: s.name }), `reverted to ${s.name}`)}>Revert</button>
                    <button type="button" className="button button--danger-quiet" disabled={busy}
                      onClick={() => run(() => api.snapshot({ vm, op: 'delete', snapshot: s.name }), `deleted ${s.name}`)}>Delete</button>
                  </td>
                </tr>
              )))}
            </tbody>
          </table>
        )}
        {snapshots.data && snapshots.data.disks.every((d) => d.snapshots.length === 0) && <p className="empty">No snapshots yet.</p>}
        <form className="form__row" onSubmit={(e) => {
          e.preventDefault();
          run(() => api.snapshot({ vm, op: 'take', snapshot: snapName }), `took ${snapName}`);
        }}>
          <Field label="Snapshot name">
            <input className="input" value={snapName} onChange={(e) => setSnapName(e.target.value)} pattern="[A-Za-z][A-Za-z0-9._\-]{0,63}" required placeholder="before-upgrade" />
          </Field>
          <button type="submit" className="button" disabled={busy || !hasQcow2}>Take snapshot</button>
        </form>
      </section>

      <section className="card" aria-label="Machine settings">
        <h2 className="card__title">Machine</h2>
        <EditVmForm key={JSON.stringify(details.definition)} details={details} onChanged={onChanged} onRenamed={onRenamed} />
        <form className="form__row" onSubmit={(e) => {
          e.preventDefault();
          run(() => api.cloneVm({ name: vm, newName: cloneName }), (cloned) => `cloned as ${cloned.name}${cloned.note ? ` (${cloned.note})` : ''}`);
        }}>
          <Field label="Clone as">
            <input className="input" value={cloneName} onChange={(e) => setCloneName(e.target.value)} required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" maxLength={64} />
          </Field>
          <button type="submit" className="button" disabled={busy || !stopped}>Clone</button>
        </form>
      </section>
    </>
  );
}
