import type { IpcMain, IpcMainInvokeEvent, WebContents } from 'electron';
import type { Services } from '../src/user/app-services';
import { CALL_NAMES, channelOf, eventChannelOf, settleCall, type CallOutcome, type Unsubscribe } from '../src/contracts/ipc-contract';
import { isAppPageUrl } from './app-url';

/** Only the app page's main frame may call: an iframe or a page navigated elsewhere gets nothing. */
export function isTrustedSender(event: IpcMainInvokeEvent, appUrl: string): boolean {
  const frame = event.senderFrame;
  return frame !== null && frame.parent === null && isAppPageUrl(frame.url, appUrl);
}

/** Registers one handler per contract call; each checks its sender, then answers with a CallOutcome. */
export function registerCallHandlers(ipcMain: IpcMain, services: Services, appUrl: string): void {
  for (const name of CALL_NAMES) {
    const call = services[name] as (request: unknown) => Promise<unknown>;
    ipcMain.handle(channelOf(name), async (event, request: unknown): Promise<CallOutcome> => {
      if (!isTrustedSender(event, appUrl)) throw new Error(`refused ${name}: the caller is not the app's main frame`);
      return settleCall(call, request);
    });
  }
}

/** Pushes every service event to the current window's page. */
export function forwardEvents(services: Services, target: () => WebContents | null): Unsubscribe {
  return services.onEvent(({ event, payload }) => {
    const contents = target();
    if (contents && !contents.isDestroyed()) contents.send(eventChannelOf(event), payload);
  });
}
