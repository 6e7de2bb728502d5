import type { CallName, EventName, IpcEvents, SvirtApi, SvirtCalls } from '../../../src/contracts/ipc-contract';
import { CALL_NAMES } from '../../../src/contracts/ipc-contract';

/** A SvirtApi for component tests and renderer previews: given handlers answer, others reject. */
export type FakeApi = SvirtApi & {
  /** Delivers an event to the listeners the components registered. */
  emit<E extends EventName>(event: E, payload: IpcEvents[E]): void;
  listenerCount(event: EventName): number;
};

export function createFakeApi(handlers: Partial<SvirtCalls> = {}): FakeApi {
  const listeners = new Map<EventName, Set<(payload: never) => void>>();
  const calls = Object.fromEntries(
    CALL_NAMES.map((name: CallName) => [name, handlers[name] ?? (async () => Promise.reject(new Error(`${name} is not faked`)))]),
  ) as unknown as SvirtCalls;
  return {
    ...calls,
    on(event, listener) {
      const set = listeners.get(event) ?? new Set();
      set.add(listener as (payload: never) => void);
      listeners.set(event, set);
      return () => set.delete(listener as (payload: never) => void);
    },
    emit(event, payload) {
      for (const listener of listeners.get(event) ?? []) (listener as (p: typeof payload) => void)(payload);
    },
    listenerCount: (event) => listeners.get(event)?.size ?? 0,
  };
}
