import { useState } from 'react';
import type { VmSummary } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi, useSvirtEvent } from '../api';
import { confinementOf } from '../common/confinement';
import { Dialog } from '../common/Dialog';
import { Notice } from '../common/Notice';

type Confirm = 'start-unconfined' | 'force-off' | 'delete';

/** Start, ACPI shutdown, force off and delete; the ones that lose data or confinement ask first. */
export function VmActions({ vm, onChanged, onDeleted }: { vm: VmSummary; onChanged: () => void; onDeleted: () => void }) {
  const api = useApi();
  const [confirm, setConfirm] = useState<Confirm | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const run = (action: () => Promise<unknown>, after: () => void = onChanged) => {
    setBusy(true);
    setError(null);
    setConfirm(null);
    action().then(after, (e: unknown) => setError(errorMessage(e))).finally(() => setBusy(false));
  };
  const start = (allowUnconfined: boolean) => run(() => api.startVm({ name: vm.name, allowUnconfined }));

  const stopped = vm.state === 'stopped';
  const canStart = !busy && stopped;
  const canShutDown = !busy && vm.state === 'running';
  const onStart = () => (confinementOf(vm) === 'unconfined' ? setConfirm('start-unconfined') : start(false));
  const onShutDown = () => run(() => api.shutdownVm({ name: vm.name }));
  // The menu's Start and Shut down (and their shortcuts) are these buttons, confirmation included.
  useSvirtEvent('menuCommand', ({ command }) => {
    if (command === 'startVm' && canStart) onStart();
    else if (command === 'shutdownVm' && canShutDown) onShutDown();
  });
  return (
    <div className="vm-actions">
      <div className="button-row">
        {/* Only an enabled Start looks like the primary action: a greyed accent still reads as "do this". */}
        <button type="button" className={canStart ? 'button button--primary' : 'button'} disabled={!canStart} onClick={onStart}>
          Start
        </button>
        <button type="button" className="button" disabled={!canShutDown} onClick={onShutDown}>
          Shut down
        </button>
        <button type="button" className="button" disabled={busy || stopped} onClick={() => setConfirm('force-off')}>
          Force off
        </button>
        <button type="button" className="button button--danger-quiet" disabled={busy || !stopped} onClick={() => setConfirm('delete')}>
          Delete
        </button>
      </div>
      {error && <Notice tone="error">{error}</Notice>}

      {confirm === 'start-unconfined' && (
        <Dialog
          title={`Start ${vm.name} unconfined?`}
          onClose={() => setConfirm(null)}
          actions={
            <>
              <button type="button" className="button" onClick={() => setConfirm(null)}>
                Cancel
              </button>
              <button type="button" className="button button--danger" onClick={() => start(true)}>
                Start unconfined
              </button>
            </>
          }
        >
          <p>SELinux will not confine this VM: {vm.notConfinedReason ?? 'it has no confining label'}.</p>
          <p>A guest that escapes into qemu would have the rights of the qemu user, not those of a confined svirt process.</p>
        </Dialog>
      )}
      {confirm === 'force-off' && (
        <Dialog
          title={`Force ${vm.name} off?`}
          onClose={() => setConfirm(null)}
          actions={
            <>
              <button type="button" className="button" onClick={() => setConfirm(null)}>
                Cancel
              </button>
              <button type="button" className="button button--danger" onClick={() => run(() => api.forceOffVm({ name: vm.name }))}>
                Force off
              </button>
            </>
          }
        >
          <p>This ends qemu at once, like pulling the power cord: whatever the guest has not written to disk is lost.</p>
        </Dialog>
      )}
      {confirm === 'delete' && (
        <Dialog
          title={`Delete ${vm.name}?`}
          onClose={() => setConfirm(null)}
          actions={
            <>
              <button type="button" className="button" onClick={() => setConfirm(null)}>
                Cancel
              </button>
              <button type="button" className="button button--danger" onClick={() => run(() => api.deleteVm({ name: vm.name }), onDeleted)}>
                Delete VM
              </button>
            </>
          }
        >
          <p>The VM’s definition is removed. Its disk images stay where they are, with the labels they have now.</p>
        </Dialog>
      )}
    </div>
  );
}
