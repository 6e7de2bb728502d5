import { useState } from 'react';
import type { VmDetails, VmEdit } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Field } from '../common/FormField';
import { MachineFields } from '../common/MachineFields';
import { Notice } from '../common/Notice';
import { draftsOf, forwardsOf, PortForwardsField, type ForwardDraft } from '../common/PortForwardsField';

/**
 * The machine of a stopped VM: name, memory, vCPUs, installer ISO, network and forwards, display and
 * firmware. The main process checks every field and names it in its error; nothing changes then.
 */
export function EditVmForm({ details, onChanged, onRenamed }: { details: VmDetails; onChanged: () => void; onRenamed: () => void }) {
  const api = useApi();
  const { definition } = details;
  const vm = details.summary.name;
  const stopped = details.summary.state === 'stopped';
  const currentIso = definition.boot.kind === 'iso' ? definition.boot.iso : '';
  const [name, setName] = useState(vm);
  const [memory, setMemory] = useState(String(definition.memoryMiB));
  const [vcpus, setVcpus] = useState(String(definition.vcpus));
  const [iso, setIso] = useState(currentIso);
  const [network, setNetwork] = useState<'user' | 'none'>(definition.network?.mode ?? 'none');
  const [forwards, setForwards] = useState<ForwardDraft[]>(draftsOf(definition.network?.mode === 'user' ? definition.network.portForwards : []));
  const [display, setDisplay] = useState(definition.display === 'vnc');
  const [firmware, setFirmware] = useState<'bios' | 'uefi'>(definition.firmware?.kind ?? 'bios');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const edit = (): VmEdit => {
    const typed = iso.trim();
    return {
      vm, name, memoryMiB: Number(memory), vcpus: Number(vcpus),
      // Only a change of ISO is sent: an unchanged one is not checked again.
      ...(typed === currentIso ? {} : { iso: typed === '' ? null : typed }),
      network, portForwards: network === 'user' ? forwardsOf(forwards) : [], display, firmware,
    };
  };

  return (
    <form className="form" aria-label="Edit the machine" onSubmit={(e) => {
      e.preventDefault();
      setBusy(true);
      setError(null);
      api.editVm(edit())
        .then((saved) => (saved.name === vm ? onChanged() : onRenamed()), (err: unknown) => setError(errorMessage(err)))
        .finally(() => setBusy(false));
    }}>
      {!stopped && <p className="field__help">Stop the VM to change its machine.</p>}
      {error && <Notice tone="error" title="Nothing was changed">{error}</Notice>}
      <div className="form__row">
        <Field label="Name">
          <input className="input" value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" maxLength={64} />
        </Field>
        <Field label="Memory (MiB)">
          <input className="input" type="number" min={16} value={memory} onChange={(e) => setMemory(e.target.value)} required />
        </Field>
        <Field label="vCPUs">
          <input className="input" type="number" min={1} max={512} value={vcpus} onChange={(e) => setVcpus(e.target.value)} required />
        </Field>
      </div>
      <div className="form__row">
        <Field label="Installer ISO" help={definition.boot.kind === 'kernel' ? 'This VM boots a kernel directly.' : 'A CD-ROM booted before the disks; empty detaches it.'}>
          <input className="input input--mono" value={iso} onChange={(e) => setIso(e.target.value)} placeholder="/home/me/iso/debian-12.iso"
            disabled={definition.boot.kind === 'kernel'} />
        </Field>
        <MachineFields firmware={firmware} onFirmware={setFirmware} firmwareHelp="BIOS deletes a UEFI VM’s variable store."
          network={network} onNetwork={setNetwork} display={display} onDisplay={setDisplay} />
      </div>
      {network === 'user' && <PortForwardsField value={forwards} onChange={setForwards} />}
      <div className="button-row">
        <button type="submit" className="button" disabled={busy || !stopped}>Save</button>
      </div>
    </form>
  );
}
