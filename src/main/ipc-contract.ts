/**
 * The one IPC contract between the renderer and the main process. The preload exposes exactly these
 * calls, electron/ registers a handler for each, and the browser test bridge maps the same names.
 */
export interface AppInfo {
  name: string;
  version: string;
}

export interface IpcCalls {
  appInfo: { request: void; result: AppInfo };
}

export type CallName = keyof IpcCalls;

/** Runtime list of call names; typed so that adding a call to IpcCalls without listing it fails to compile. */
export const CALL_NAMES = ['appInfo'] as const satisfies readonly CallName[];
type Missing = Exclude<CallName, (typeof CALL_NAMES)[number]>;
const _allListed: Missing extends never ? true : never = true;
void _allListed;

/** Channel name on the wire for a call. */
export const channelOf = (name: CallName): string => `svirt:${name}`;

/** What the preload exposes as `window.svirt`. */
export type SvirtApi = {
  [K in CallName]: (request: IpcCalls[K]['request']) => Promise<IpcCalls[K]['result']>;
};
