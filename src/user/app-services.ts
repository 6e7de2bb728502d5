import type { AuditedVm } from '../core/selinux/audit-report';
import type { HelperLaunch } from './helper-client';
import { selinuxMode } from '../security/selinux/host-selinux';
import type { ActiveModel, SvirtCalls, SvirtEvent, Unsubscribe } from '../contracts/ipc-contract';
import { loadPolicyProfile } from '../security/selinux/selinux-files';
import { VmService } from './vm-service';
import { defaultVmDirectory, VmStore } from './vm-store';
import { inUserWords } from '../core/user-words';
import { connectHelper } from './services/helper-connection';
import { consoleCalls } from './services/console-calls';
import { hostCalls } from './services/host-calls';
import { labelCalls } from './services/label-calls';
import { memo, modelWithoutHelper, type ServiceContext } from './services/service-context';
import { vmCalls } from './services/vm-calls';
import { createVmViews } from './services/vm-views';

/** The services behind every contract call, free of Electron so the browser tests drive the same code. */
export type Services = SvirtCalls & {
  /** Contract events for the renderer (VM state, console bytes, relabel progress, helper status). */
  onEvent(listener: (event: SvirtEvent) => void): Unsubscribe;
  /** Ends the helper session on quit; VMs keep running. */
  dispose?(): Promise<void>;
};

export interface ServiceOptions {
  /** Where VM definitions live (default: $XDG_CONFIG_HOME/svirt-manager/vms). */
  readonly vmDirectory?: string;
  /** How to start the root helper (default: pkexec, or direct when root). */
  readonly helperLaunch?: HelperLaunch;
  readonly helperEnv?: NodeJS.ProcessEnv;
  /**
   * Where the audit takes the running VMs and their files from (default: the helper's running VMs, their
   * files' labels read from disk). The scale bench passes 100 VMs' records over real labeled files: 100
   * qemu processes do not fit its machine, and everything after this point is the app's own path.
   */
  readonly auditedVms?: () => Promise<AuditedVm[]>;
}

/** Every call's error in the words of the app's form (user-words.ts), the one place the app's messages pass. */
function inAppWords(calls: SvirtCalls): SvirtCalls {
  const wrapped: Record<string, (request: never) => Promise<unknown>> = {};
  for (const [name, call] of Object.entries(calls) as [string, (request: never) => Promise<unknown>][]) {
    wrapped[name] = async (request) => {
      try {
        return await call(request);
      } catch (err) {
        if (err instanceof Error) err.message = inUserWords(err.message, 'app');
        throw err;
      }
    };
  }
  return wrapped as unknown as SvirtCalls;
}

/**
 * The app's services, wired in the order the data flows: the user's VM store and the helper session, the
 * VM service over both, the views every VM answer is built from, then each area's calls. The IPC contract's
 * type makes the areas together answer every call.
 */
export function createServices(options: ServiceOptions = {}): Services {
  const listeners = new Set<(event: SvirtEvent) => void>();
  const emit = (event: SvirtEvent) => listeners.forEach((l) => l(event));
  const store = new VmStore(options.vmDirectory ?? defaultVmDirectory());
  const profile = memo(() => loadPolicyProfile());
  const mode = () => selinuxMode();
  const connection = connectHelper(options, emit);
  const service = new VmService(store, connection.helper, profile);
  const activeModel = async (): Promise<ActiveModel> => {
    try {
      return (await connection.helper().request('status')).security;
    } catch {
      return modelWithoutHelper(await mode().catch(() => 'disabled' as const));
    }
  };
  const views = createVmViews(store, service, mode, activeModel);
  const context: ServiceContext = { options, emit, store, service, profile, mode, activeModel, connection, views };

  const calls: SvirtCalls = {
    ...hostCalls(context),
    ...vmCalls(context),
    ...labelCalls(context),
    ...consoleCalls(context),
  };

  return {
    ...inAppWords(calls),
    onEvent: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose: connection.close,
  };
}
