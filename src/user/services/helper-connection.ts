import { HelperClient, resolveHelperLaunch } from '../helper-client';
import type { HelperStatus, SvirtEvent } from '../../contracts/ipc-contract';
import type { ServiceOptions } from '../app-services';

/**
 * The app's one helper session: started at the first call that needs it, its events turned into contract
 * events, its status (connected, version, why not) published to the page, and forgotten when it exits so
 * that the next call starts a fresh one.
 */
export interface HelperConnection {
  readonly helper: () => HelperClient;
  readonly status: () => HelperStatus;
  /** The helper answered `status`: its version is known now. */
  readonly answered: (version: string) => void;
  /** Console sessions this app holds, to name the VM in consoleEnded. */
  readonly consoleVm: Map<string, string>;
  readonly close: () => Promise<void>;
}

export function connectHelper(options: ServiceOptions, emit: (event: SvirtEvent) => void): HelperConnection {
  let status: HelperStatus = { connected: false, version: null, launchedVia: null, error: null };
  const setStatus = (next: HelperStatus) => {
    status = next;
    emit({ event: 'helperStatus', payload: next });
  };
  const consoleVm = new Map<string, string>();
  let client: HelperClient | undefined;

  const helper = (): HelperClient => {
    if (client) return client;
    const launch = options.helperLaunch ?? resolveHelperLaunch(options.helperEnv);
    const started = HelperClient.start(launch, options.helperEnv ?? process.env);
    client = started;
    setStatus({ connected: true, version: null, launchedVia: launch.via, error: null });
    started.on('event', (name: string, data: Record<string, unknown>) => {
      if (name === 'console-data') emit({ event: 'consoleData', payload: { session: String(data.session), data: String(data.data) } });
      else if (name === 'console-end') {
        const session = String(data.session);
        emit({ event: 'consoleEnded', payload: { session, vm: consoleVm.get(session) ?? '', reason: String(data.reason) } });
        consoleVm.delete(session);
      } else if (name === 'display-data') emit({ event: 'displayData', payload: { session: String(data.session), data: String(data.data) } });
      else if (name === 'display-end') emit({ event: 'displayEnded', payload: { session: String(data.session), reason: String(data.reason) } });
      else if (name === 'vm-stopped') {
        const id = String(data.id);
        emit({ event: 'vmStateChanged', payload: { vm: id.slice(id.indexOf('/') + 1), state: 'stopped', pid: null } });
      }
    });
    started.on('exit', (err: Error) => {
      if (client === started) client = undefined;
      setStatus({ connected: false, version: null, launchedVia: launch.via, error: err.message });
    });
    return started;
  };

  return {
    helper,
    status: () => status,
    answered: (version) => setStatus({ ...status, connected: true, version, error: null }),
    consoleVm,
    close: async () => {
      await client?.close();
    },
  };
}
