import { BrowserWindow } from 'electron';

/**
 * The main window. The renderer shows untrusted strings (file names, labels, guest console output), so
 * it gets no Node, runs sandboxed in an isolated world, and reaches the main process only through the
 * preload's contract calls. The options stay a literal here so that electronegativity can read them.
 */
export function createAppWindow(preload: string): BrowserWindow {
  return new BrowserWindow({
    width: 1280,
    height: 820,
    minWidth: 960,
    minHeight: 600,
    title: 'sVirt Manager',
    backgroundColor: '#f4f6f8',
    webPreferences: {
      preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      // Middle-click would open links in new windows; window.open is denied anyway, this stops it earlier.
      disableBlinkFeatures: 'Auxclick',
      safeDialogs: true,
      spellcheck: false,
    },
  });
}
