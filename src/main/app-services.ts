import type { IpcCalls, CallName } from './ipc-contract';
import { PRODUCT_VERSION } from './version';

/** The services behind every contract call, free of Electron so the browser tests drive the same code. */
export type Services = {
  [K in CallName]: (request: IpcCalls[K]['request']) => Promise<IpcCalls[K]['result']>;
};

export function createServices(): Services {
  return {
    appInfo: async () => ({ name: 'sVirt Manager', version: PRODUCT_VERSION }),
  };
}
