import { useState } from 'react';
import type { DeviceChoice } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';

function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

/**
 * The block devices an administrator lets this user give VMs (helper.json `devices`), with their size,
 * what is on them and whether the host uses them. A device the host uses cannot be picked: the helper
 * would refuse it at start with the same reason.
 */
export function DevicePicker({ onPick }: { onPick: (path: string) => void }) {
  const api = useApi();
  const [devices, setDevices] = useState<DeviceChoice[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => {
    setError(null);
    void api.listDevices().then(setDevices, (e: unknown) => setError(errorMessage(e)));
  };
  return (
    <div className="device-picker">
      <button type="button" className="button button--secondary" onClick={load}>
        Host block devices…
      </button>
      {error && <p role="alert" className="form__error">{error}</p>}
      {devices && devices.length === 0 && <p className="muted">No block device is allowed for you: an administrator lists them under “devices” in /etc/svirt-manager/helper.json.</p>}
      {devices && devices.length > 0 && (
        <table className="table" aria-label="Host block devices">
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Size</th>
              <th scope="col">On it</th>
              <th scope="col">On the host</th>
              <th scope="col" />
            </tr>
          </thead>
          <tbody>
            {devices.map((d) => (
              <tr key={d.majMin} data-testid={`device-${d.path}`}>
                <th scope="row"><code>{d.path}</code>{d.node !== d.path && <span className="muted"> ({d.node})</span>}</th>
                <td>{size(d.sizeBytes)}</td>
                <td>{d.content ?? (d.label ? d.label : 'nothing recognized')}</td>
                <td>{d.inUse.length === 0 ? 'not in use' : `in use: ${d.inUse.join('; ')}`}</td>
                <td>
                  <button type="button" className="button" disabled={d.inUse.length > 0} onClick={() => onPick(d.path)}>
                    Use
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
