import type { WebContents } from 'electron';
import { isAppPageUrl } from './app-url';

/**
 * Keeps a web contents on the app's page: no navigation elsewhere, no new windows, no <webview>.
 * Applied to every web contents the app creates, not only the main window's.
 */
export function guardWebContents(contents: WebContents, appUrl: string): void {
  contents.on('will-navigate', (event) => {
    if (!isAppPageUrl(event.url, appUrl)) event.preventDefault();
  });
  contents.on('will-redirect', (event) => {
    if (!isAppPageUrl(event.url, appUrl)) event.preventDefault();
  });
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
}
