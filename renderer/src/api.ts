import { createContext, createElement, useContext, useEffect, useRef, type ReactNode } from 'react';
import type { EventName, IpcEvents, SvirtApi } from '../../src/contracts/ipc-contract';

declare global {
  interface Window {
    /** Exposed by electron/preload.ts (or by a browser test's fake). */
    svirt?: SvirtApi;
  }
}

const ApiContext = createContext<SvirtApi | null>(null);

/** Every screen reaches the main process through this API; tests provide a fake one. */
export function ApiProvider({ api, children }: { api: SvirtApi; children: ReactNode }) {
  return createElement(ApiContext.Provider, { value: api }, children);
}

export function useApi(): SvirtApi {
  const api = useContext(ApiContext);
  if (!api) throw new Error('no svirt API: render inside <ApiProvider>');
  return api;
}

/** Subscribes to a contract event for the component's lifetime; the latest listener is always called. */
export function useSvirtEvent<E extends EventName>(event: E, listener: (payload: IpcEvents[E]) => void): void {
  const api = useApi();
  const latest = useRef(listener);
  useEffect(() => {
    latest.current = listener;
  });
  useEffect(() => api.on(event, (payload) => latest.current(payload)), [api, event]);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
