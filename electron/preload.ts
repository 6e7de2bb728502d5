import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import { CALL_NAMES, channelOf, eventChannelOf, isEventName, unwrapOutcome, type CallName, type CallOutcome, type SvirtApi, type SvirtCalls } from '../src/contracts/ipc-contract';

/** Unwraps the main process's outcome so the page sees the service's own error message. */
async function invoke(name: CallName, request: unknown): Promise<unknown> {
  return unwrapOutcome((await ipcRenderer.invoke(channelOf(name), request)) as CallOutcome);
}

const calls = Object.fromEntries(CALL_NAMES.map((name) => [name, (request: unknown) => invoke(name, request)])) as unknown as SvirtCalls;

const api: SvirtApi = {
  ...calls,
  on(event, listener) {
    // The page is untrusted input here: only contract channels, and never the raw IpcRendererEvent.
    if (!isEventName(event)) throw new Error(`unknown event: ${String(event)}`);
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    const channel = eventChannelOf(event);
    const relay = (_event: IpcRendererEvent, payload: unknown) => listener(payload as Parameters<typeof listener>[0]);
    ipcRenderer.on(channel, relay);
    return () => {
      ipcRenderer.removeListener(channel, relay);
    };
  },
};

contextBridge.exposeInMainWorld('svirt', api);
