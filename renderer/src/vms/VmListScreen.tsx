import { useApi, useSvirtEvent } from '../api';
import { Notice } from '../common/Notice';
import { useAsync } from '../common/use-async';
import { VmList } from './VmList';

export function VmListScreen({ onOpen, onCreate }: { onOpen: (name: string) => void; onCreate: () => void }) {
  const api = useApi();
  const vms = useAsync(() => api.listVms(), [api]);
  useSvirtEvent('vmStateChanged', vms.reload);

  return (
    <div className="screen">
      <header className="screen__header">
        <div>
          <h1>Virtual machines</h1>
          <p className="screen__lede">Each VM runs as its own svirt process with a pair of MCS categories no other VM holds.</p>
        </div>
        <button type="button" className="button button--primary" onClick={onCreate}>
          New VM
        </button>
      </header>
      {vms.error && <Notice tone="error" title="Could not list the VMs">{vms.error}</Notice>}
      {vms.data ? <VmList vms={vms.data} onOpen={onOpen} /> : !vms.error && <p className="empty">Loading…</p>}
    </div>
  );
}
