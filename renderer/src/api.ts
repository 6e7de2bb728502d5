import type { SvirtApi } from '../../src/main/ipc-contract';

declare global {
  interface Window {
    svirt: SvirtApi;
  }
}

/** The contract API as the preload (or the browser test bridge) exposes it. */
export const api = (): SvirtApi => window.svirt;
