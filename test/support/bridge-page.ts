/**
 * Page side of the browser test bridge, injected before the app loads: `window.svirt` made from the
 * same contract as the preload, over Playwright bindings instead of Electron IPC.
 */
import { CALL_NAMES, isEventName, unwrapOutcome, type CallOutcome, type EventName, type SvirtApi, type SvirtCalls } from '../../src/contracts/ipc-contract';

declare global {
  interface Window {
    /** The call's CallOutcome as JSON text (see browser-bridge.ts). */
    __svirtInvoke(name: string, request: unknown): Promise<string>;
    __svirtDispatch(event: EventName, payload: unknown): void;
  }
}

const listeners = new Map<EventName, Set<(payload: unknown) => void>>();
window.__svirtDispatch = (event, payload) => listeners.get(event)?.forEach((l) => l(payload));

const calls = Object.fromEntries(
  CALL_NAMES.map((name) => [name, async (request: unknown) => unwrapOutcome(JSON.parse(await window.__svirtInvoke(name, request)) as CallOutcome)]),
) as unknown as SvirtCalls;

const api: SvirtApi = {
  ...calls,
  on(event, listener) {
    if (!isEventName(event)) throw new Error(`unknown event: ${String(event)}`);
    const set = listeners.get(event) ?? new Set();
    set.add(listener as (payload: unknown) => void);
    listeners.set(event, set);
    return () => set.delete(listener as (payload: unknown) => void);
  },
};
window.svirt = api;
