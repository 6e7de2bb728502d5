import type { Session } from 'electron';
import { isAppPageUrl } from './app-url';

/** The console's copy and paste use navigator.clipboard; nothing else the renderer does needs a permission. */
const CLIPBOARD_PERMISSIONS: ReadonlySet<string> = new Set(['clipboard-read', 'clipboard-sanitized-write']);

export function isPermissionAllowed(permission: string, requestingUrl: string | undefined, isMainFrame: boolean, appUrl: string): boolean {
  return CLIPBOARD_PERMISSIONS.has(permission) && isMainFrame && isAppPageUrl(requestingUrl, appUrl);
}

/** Denies every permission except clipboard access for the app's own page, both when asked and when checked. */
export function installPermissionHandlers(session: Session, appUrl: string): void {
  session.setPermissionRequestHandler((_contents, permission, callback, details) => {
    callback(isPermissionAllowed(permission, details.requestingUrl, details.isMainFrame, appUrl));
  });
  session.setPermissionCheckHandler((contents, permission, _origin, details) =>
    isPermissionAllowed(permission, details.requestingUrl ?? contents?.getURL(), details.isMainFrame, appUrl),
  );
  // USB, HID and serial devices: a VM manager's UI has no business with them.
  session.setDevicePermissionHandler(() => false);
}
