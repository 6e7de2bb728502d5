import { Field } from './FormField';

export type Firmware = 'bios' | 'uefi';
export type Network = 'user' | 'none';

/** The firmware, network and display choices, asked the same way when a VM is created and when it is edited. */
export function MachineFields(props: {
  firmware: Firmware;
  onFirmware: (value: Firmware) => void;
  firmwareHelp: string;
  network: Network;
  onNetwork: (value: Network) => void;
  networkHelp?: string;
  display: boolean;
  onDisplay: (value: boolean) => void;
}) {
  return (
    <>
      <Field label="Firmware" help={props.firmwareHelp}>
        <select className="input" value={props.firmware} onChange={(e) => props.onFirmware(e.target.value as Firmware)}>
          <option value="bios">BIOS (SeaBIOS)</option>
          <option value="uefi">UEFI (OVMF)</option>
        </select>
      </Field>
      <Field label="Network" {...(props.networkHelp === undefined ? {} : { help: props.networkHelp })}>
        <select className="input" value={props.network} onChange={(e) => props.onNetwork(e.target.value as Network)}>
          <option value="user">User-mode (NAT)</option>
          <option value="none">No network</option>
        </select>
      </Field>
      <div className="field">
        <span className="field__label">Display</span>
        <label className="checkbox">
          <input type="checkbox" checked={props.display} onChange={(e) => props.onDisplay(e.target.checked)} /> Graphical display (VNC)
        </label>
      </div>
    </>
  );
}
