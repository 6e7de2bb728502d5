import type { MenuItemConstructorOptions } from 'electron';
import type { MenuCommand } from '../src/contracts/ipc-contract';

/**
 * The application menu. Electron's default one offers Reload and Toggle Developer Tools, which have no
 * place in a security tool's window; this one has only what the app does. The VM actions carry their
 * keyboard shortcuts as accelerators, so they are listed where a user looks for them, and each sends a
 * menuCommand event to the page, which acts as its own button would (confirmations included).
 */
export interface AppMenuActions {
  /** Sends a command to the page of the focused window. */
  send(command: MenuCommand): void;
  about(): void;
}

export const MENU_SHORTCUTS: Readonly<Record<MenuCommand, { label: string; accelerator: string }>> = {
  newVm: { label: 'New VM…', accelerator: 'CmdOrCtrl+N' },
  showVms: { label: 'Virtual Machines', accelerator: 'CmdOrCtrl+1' },
  openAudit: { label: 'Access Audit', accelerator: 'CmdOrCtrl+2' },
  startVm: { label: 'Start', accelerator: 'CmdOrCtrl+Shift+S' },
  shutdownVm: { label: 'Shut Down', accelerator: 'CmdOrCtrl+Shift+D' },
  openConsole: { label: 'Console', accelerator: 'CmdOrCtrl+Shift+O' },
};

export function appMenuTemplate(actions: AppMenuActions): MenuItemConstructorOptions[] {
  const command = (name: MenuCommand): MenuItemConstructorOptions => ({ ...MENU_SHORTCUTS[name], click: () => actions.send(name) });
  return [
    { label: '&File', submenu: [command('newVm'), { type: 'separator' }, { role: 'quit' }] },
    {
      label: '&Edit',
      submenu: [{ role: 'undo' }, { role: 'redo' }, { type: 'separator' }, { role: 'cut' }, { role: 'copy' }, { role: 'paste' }, { role: 'selectAll' }],
    },
    {
      label: '&View',
      submenu: [command('showVms'), command('openAudit'), { type: 'separator' }, { role: 'resetZoom' }, { role: 'zoomIn' }, { role: 'zoomOut' }, { type: 'separator' }, { role: 'togglefullscreen' }],
    },
    { label: '&Machine', submenu: [command('startVm'), command('shutdownVm'), { type: 'separator' }, command('openConsole')] },
    { label: '&Help', submenu: [{ label: 'About sVirt Manager', click: () => actions.about() }] },
  ];
}
