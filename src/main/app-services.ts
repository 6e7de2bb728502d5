import type { CallName, SvirtCalls, SvirtEvent, Unsubscribe } from './ipc-contract';
import { PRODUCT_VERSION } from './version';

/** The services behind every contract call, free of Electron so the browser tests drive the same code. */
export type Services = SvirtCalls & {
  /** Contract events for the renderer (VM state, console bytes, relabel progress, helper status). */
  onEvent(listener: (event: SvirtEvent) => void): Unsubscribe;
  /** Ends the helper session on quit; VMs keep running. */
  dispose?(): Promise<void>;
};

const notImplemented = (name: CallName) => async (): Promise<never> => {
  throw new Error(`${name} is not implemented yet`);
};

export function createServices(): Services {
  return {
    appInfo: async () => ({ name: 'sVirt Manager', version: PRODUCT_VERSION }),
    hostStatus: notImplemented('hostStatus'),
    listVms: notImplemented('listVms'),
    getVm: notImplemented('getVm'),
    defineVm: notImplemented('defineVm'),
    deleteVm: notImplemented('deleteVm'),
    startVm: notImplemented('startVm'),
    shutdownVm: notImplemented('shutdownVm'),
    forceOffVm: notImplemented('forceOffVm'),
    previewRelabel: notImplemented('previewRelabel'),
    applyRelabel: notImplemented('applyRelabel'),
    validateStaticLabel: notImplemented('validateStaticLabel'),
    updateSeclabel: notImplemented('updateSeclabel'),
    consoleAttach: notImplemented('consoleAttach'),
    consoleInput: notImplemented('consoleInput'),
    consoleResize: notImplemented('consoleResize'),
    consoleDetach: notImplemented('consoleDetach'),
    audit: notImplemented('audit'),
    onEvent: () => () => undefined,
  };
}
