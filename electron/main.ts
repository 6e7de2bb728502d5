import { app, dialog, ipcMain, Menu, session, type BrowserWindow } from 'electron';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createServices } from '../src/user/app-services';
import { eventChannelOf } from '../src/contracts/ipc-contract';
import { appMenuTemplate } from './app-menu';
import { forwardEvents, registerCallHandlers } from './ipc-handlers';
import { installPermissionHandlers } from './permissions';
import { createAppWindow } from './app-window';
import { guardWebContents } from './web-contents-guard';
import { ensureHelperInstalled } from './first-run';

const APP_PAGE = path.join(__dirname, '..', 'renderer', 'index.html');
const APP_URL = pathToFileURL(APP_PAGE).href;

// Every renderer sandboxed, including any a dependency might create.
app.enableSandbox();

app.on('web-contents-created', (_event, contents) => guardWebContents(contents, APP_URL));

let mainWindow: BrowserWindow | null = null;

function createWindow(): BrowserWindow {
  const win = createAppWindow(path.join(__dirname, 'preload.cjs'));
  win.on('closed', () => {
    if (mainWindow === win) mainWindow = null;
  });
  void win.loadFile(APP_PAGE);
  return win;
}

const services = createServices();
// The one call that needs Electron itself: the native file picker for disk images.
services.pickDiskFile = async () => {
  const picked = await dialog.showOpenDialog({
    title: 'Attach a disk image',
    properties: ['openFile'],
    filters: [{ name: 'Disk images', extensions: ['qcow2', 'img', 'raw'] }, { name: 'All files', extensions: ['*'] }],
  });
  return picked.canceled ? null : (picked.filePaths[0] ?? null);
};

void app.whenReady().then(async () => {
  installPermissionHandlers(session.defaultSession, APP_URL);
  registerCallHandlers(ipcMain, services, APP_URL);
  forwardEvents(services, () => mainWindow?.webContents ?? null);
  Menu.setApplicationMenu(
    Menu.buildFromTemplate(
      appMenuTemplate({
        send: (command) => {
          const contents = mainWindow?.webContents;
          if (contents && !contents.isDestroyed()) contents.send(eventChannelOf('menuCommand'), { command });
        },
        about: () =>
          void dialog.showMessageBox({
            type: 'info',
            title: 'About sVirt Manager',
            message: `sVirt Manager ${app.getVersion()}`,
            detail: 'Runs every VM confined the sVirt way: its own SELinux domain and MCS pair, its images labeled to match.',
          }),
      }),
    ),
  );
  // Before the page asks anything of the helper: pkexec can only start an installed one.
  await ensureHelperInstalled(dialog, {
    packaged: app.isPackaged, resourcesPath: process.resourcesPath, appRoot: app.getAppPath(), execPath: process.execPath,
  }, path.join(__dirname, '..')).catch((e: unknown) => console.error('svirt: helper install check failed:', e));
  mainWindow = createWindow();
});

app.on('window-all-closed', () => app.quit());

// Close the helper session before exiting; the helper leaves running VMs alone.
let disposed = false;
app.on('will-quit', (event) => {
  if (disposed || !services.dispose) return;
  disposed = true;
  event.preventDefault();
  services
    .dispose()
    .catch((e: unknown) => console.error('svirt: closing the helper failed:', e))
    .finally(() => app.quit());
});
