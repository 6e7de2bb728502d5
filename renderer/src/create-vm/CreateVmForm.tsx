import { useState, type FormEvent } from 'react';
import { DevicePicker } from './DevicePicker';
import { NEW_VM_DEFAULTS, type DiskClass, type SeclabelDefinition, type VmDefinitionInput } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Field } from '../common/FormField';
import { MachineFields } from '../common/MachineFields';
import { Notice } from '../common/Notice';
import { forwardsOf, PortForwardsField, type ForwardDraft } from '../common/PortForwardsField';
import { StaticLabelEditor, type StaticLabelDraft } from '../label-editor/StaticLabelEditor';

type BootChoice = 'disk' | 'iso' | 'kernel';
type Mode = SeclabelDefinition['mode'];

const BOOT_CHOICES: readonly { id: BootChoice; title: string; detail: string }[] = [
  { id: 'disk', title: 'Disk image', detail: 'Boot an installed system from its disk image.' },
  { id: 'iso', title: 'ISO installer', detail: 'Boot an installer CD; it is attached read-only.' },
  { id: 'kernel', title: 'Kernel + initrd', detail: 'Boot a kernel directly; both are labeled read-only content.' },
];

const MODES: readonly { id: Mode; title: string; detail: string }[] = [
  { id: 'dynamic', title: 'Dynamic (recommended)', detail: 'A fresh MCS pair, unique on this host, at every start.' },
  { id: 'static', title: 'Static', detail: 'A label you choose and keep.' },
  { id: 'none', title: 'None', detail: 'Unconfined. Only for debugging.' },
];

/** A labelled control; the help text stays out of the accessible name. */
/** A new VM from a disk image, an installer ISO, or a kernel and initrd. */
export function CreateVmForm({ onCreated, onCancel }: { onCreated: (name: string) => void; onCancel: () => void }) {
  const api = useApi();
  const [name, setName] = useState('');
  const [boot, setBoot] = useState<BootChoice>('disk');
  const [diskPath, setDiskPath] = useState('');
  const [diskClass, setDiskClass] = useState<DiskClass>('private');
  const [isoPath, setIsoPath] = useState('');
  const [kernel, setKernel] = useState('');
  const [initrd, setInitrd] = useState('');
  const [cmdline, setCmdline] = useState('');
  const [memoryMiB, setMemoryMiB] = useState<number>(NEW_VM_DEFAULTS.memoryMiB);
  const [memoryUnit, setMemoryUnit] = useState<'MiB' | 'GiB'>('MiB');
  const [vcpus, setVcpus] = useState<number>(NEW_VM_DEFAULTS.vcpus);
  const [firmware, setFirmware] = useState<'bios' | 'uefi'>('bios');
  const [network, setNetwork] = useState<'user' | 'none'>(NEW_VM_DEFAULTS.network.mode);
  const [forwards, setForwards] = useState<ForwardDraft[]>([]);
  // null: the default, a display for an installer ISO (installers are graphical) and none otherwise.
  const [displayChoice, setDisplayChoice] = useState<boolean | null>(null);
  const display = displayChoice ?? boot === 'iso';
  const [mode, setMode] = useState<Mode>('dynamic');
  const [staticDraft, setStaticDraft] = useState<StaticLabelDraft | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const staticBlocked = mode === 'static' && (!staticDraft?.verdict || staticDraft.verdict.errors.length > 0);

  const definition = (): VmDefinitionInput => {
    const trimmed = (text: string) => text.trim();
    // The format is a placeholder: the main process reads the image's real format with qemu-img.
    const disks = trimmed(diskPath) ? [{ path: trimmed(diskPath), format: 'raw' as const, class: diskClass, relabel: true }] : [];
    const bootDefinition: VmDefinitionInput['boot'] =
      boot === 'disk'
        ? { kind: 'disk' }
        : boot === 'iso'
          ? { kind: 'iso', iso: trimmed(isoPath) }
          : { kind: 'kernel', kernel: trimmed(kernel), ...(trimmed(initrd) ? { initrd: trimmed(initrd) } : {}), ...(cmdline.trim() ? { cmdline: cmdline.trim() } : {}) };
    const seclabel: SeclabelDefinition =
      mode === 'static' && staticDraft ? { mode: 'static', label: staticDraft.label, relabel: staticDraft.relabel } : mode === 'none' ? { mode: 'none' } : { mode: 'dynamic' };
    return {
      name: name.trim(), memoryMiB, vcpus, boot: bootDefinition, disks, seclabel,
      network: network === 'user' && forwardsOf(forwards).length > 0 ? { mode: 'user', portForwards: forwardsOf(forwards) } : { mode: network },
      // An empty nvram: the main process copies the variable store template into the VM's own file.
      firmware: firmware === 'uefi' ? { kind: 'uefi', nvram: '' } : { kind: 'bios' },
      display: display ? 'vnc' : 'none',
    };
  };

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setSubmitting(true);
    setError(null);
    api.defineVm(definition()).then(
      (created) => onCreated(created.name),
      (e: unknown) => {
        setError(errorMessage(e));
        setSubmitting(false);
      },
    );
  };

  return (
    <div className="screen">
      <header className="screen__header">
        <div>
          <h1>New VM</h1>
          <p className="screen__lede">Its files are labeled when it starts: private disks get its own pair, ISOs and kernels read-only content.</p>
        </div>
      </header>
      <form className="card form" onSubmit={submit} aria-label="New VM">
        <Field label="Name" help="Letters, digits, “.”, “_” and “-”.">
          <input className="input" value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" maxLength={64} />
        </Field>

        <fieldset className="choice-group">
          <legend>Boot from</legend>
          {BOOT_CHOICES.map((choice) => (
            <label key={choice.id} className={`mode-option${boot === choice.id ? ' mode-option--selected' : ''}`}>
              <input type="radio" name="boot" value={choice.id} checked={boot === choice.id} onChange={() => setBoot(choice.id)} />
              <span className="mode-option__title">{choice.title}</span>
              <span className="mode-option__detail">{choice.detail}</span>
            </label>
          ))}
        </fieldset>

        {boot === 'iso' && (
          <Field label="ISO image">
            <input className="input input--mono" value={isoPath} onChange={(e) => setIsoPath(e.target.value)} placeholder="/var/lib/svirt/iso/debian-12.iso" required />
          </Field>
        )}
        {boot === 'kernel' && (
          <div className="form__row">
            <Field label="Kernel">
              <input className="input input--mono" value={kernel} onChange={(e) => setKernel(e.target.value)} placeholder="/boot/vmlinuz" required />
            </Field>
            <Field label="Initrd">
              <input className="input input--mono" value={initrd} onChange={(e) => setInitrd(e.target.value)} placeholder="/boot/initrd.img" />
            </Field>
            <Field label="Kernel command line">
              <input className="input input--mono" value={cmdline} onChange={(e) => setCmdline(e.target.value)} placeholder="console=ttyS0" />
            </Field>
          </div>
        )}
        <div className="form__row">
          <Field label={boot === 'disk' ? 'Disk image' : 'Disk image (optional)'} help="raw or qcow2, detected with qemu-img; or a host block device (raw)">
            <input className="input input--mono" value={diskPath} onChange={(e) => setDiskPath(e.target.value)} placeholder="/var/lib/svirt/images/web.qcow2" required={boot === 'disk'} />
            <DevicePicker onPick={setDiskPath} />
          </Field>
          <Field label="Sharing">
            <select className="input" value={diskClass} onChange={(e) => setDiskClass(e.target.value as DiskClass)}>
              <option value="private">private</option>
              <option value="shared">shared read-write</option>
              <option value="readonly">shared read-only</option>
            </select>
          </Field>
        </div>

        <div className="form__row">
          <Field label={`Memory (${memoryUnit})`}>
            <input
              className="input"
              type="number"
              min={memoryUnit === 'GiB' ? 0.25 : 16}
              step={memoryUnit === 'GiB' ? 0.25 : 16}
              value={memoryUnit === 'GiB' ? memoryMiB / 1024 : memoryMiB}
              onChange={(e) => setMemoryMiB(Math.round(Number(e.target.value) * (memoryUnit === 'GiB' ? 1024 : 1)))}
            />
          </Field>
          <Field label="Unit">
            <select className="input" aria-label="Memory unit" value={memoryUnit} onChange={(e) => setMemoryUnit(e.target.value as 'MiB' | 'GiB')}>
              <option value="GiB">GiB</option>
              <option value="MiB">MiB</option>
            </select>
          </Field>
          <Field label="vCPUs">
            <input className="input" type="number" min={1} max={512} value={vcpus} onChange={(e) => setVcpus(Number(e.target.value))} />
          </Field>
        </div>

        <div className="form__row">
          <MachineFields firmware={firmware} onFirmware={setFirmware} firmwareHelp="UEFI VMs get their own variable store, labeled like their private disks."
            network={network} onNetwork={setNetwork} networkHelp="User-mode: the guest reaches out through qemu, nothing reaches in." display={display} onDisplay={setDisplayChoice} />
        </div>

        {network === 'user' && <PortForwardsField value={forwards} onChange={setForwards} />}

        <fieldset className="choice-group">
          <legend>Security label</legend>
          {MODES.map((m) => (
            <label key={m.id} className={`mode-option${mode === m.id ? ' mode-option--selected' : ''}`}>
              <input type="radio" name="seclabel" value={m.id} checked={mode === m.id} onChange={() => setMode(m.id)} />
              <span className="mode-option__title">{m.title}</span>
              <span className="mode-option__detail">{m.detail}</span>
            </label>
          ))}
        </fieldset>
        {mode === 'static' && <StaticLabelEditor initialRelabel onChange={setStaticDraft} />}
        {mode === 'none' && (
          <Notice tone="warning" title="This VM will run unconfined">
            SELinux will not keep it away from other VMs’ images; starting it asks for confirmation every time.
          </Notice>
        )}

        {error && <Notice tone="error" title="The VM was not created">{error}</Notice>}
        <div className="button-row">
          <button type="button" className="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className="button button--primary" disabled={submitting || staticBlocked}>
            Create VM
          </button>
        </div>
      </form>
    </div>
  );
}
