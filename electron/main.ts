import { app, BrowserWindow, ipcMain } from 'electron';
import * as path from 'node:path';
import { createServices } from '../src/main/app-services';
import { CALL_NAMES, channelOf } from '../src/main/ipc-contract';

function createWindow(): BrowserWindow {
  const win = new BrowserWindow({
    width: 1280,
    height: 820,
    title: 'sVirt Manager',
    webPreferences: {
      preload: path.join(__dirname, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
    },
  });
  void win.loadFile(path.join(__dirname, '..', 'renderer', 'index.html'));
  return win;
}

void app.whenReady().then(() => {
  const services = createServices();
  for (const name of CALL_NAMES) {
    ipcMain.handle(channelOf(name), (_event, request) => services[name](request));
  }
  createWindow();
});

app.on('window-all-closed', () => app.quit());
