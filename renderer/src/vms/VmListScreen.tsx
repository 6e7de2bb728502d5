import { useApi, useSvirtEvent } from '../api';
import { confinementOf, hostConfinementText } from '../common/confinement';
import { Notice } from '../common/Notice';
import { useAsync } from '../common/use-async';
import { VmList } from './VmList';

export function VmListScreen({ onOpen, onCreate }: { onOpen: (name: string) => void; onCreate: () => void }) {
  const api = useApi();
  const vms = useAsync(() => api.listVms(), [api]);
  const host = useAsync(() => api.hostStatus(), [api]);
  useSvirtEvent('vmStateChanged', vms.reload);
  const security = host.data?.security ?? null;
  const unconfined = security === null ? 0 : (vms.data ?? []).filter((vm) => confinementOf(vm) === 'unconfined').length;

  return (
    <div className="screen">
      <header className="screen__header">
        <div>
          <h1>Virtual machines</h1>
          <p className="screen__lede" data-testid="list-lede">
            {host.error ? 'How this host confines VMs is unknown: see the status bar.' : hostConfinementText(security, unconfined)}
          </p>
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
