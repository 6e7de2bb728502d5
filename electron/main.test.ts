import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { CALL_NAMES, channelOf, eventChannelOf, type CallOutcome, type SvirtEvent } from '../src/contracts/ipc-contract';

/** A stand-in for the parts of the electron module that electron/ uses; the real one cannot load here. */
const fake = vi.hoisted(() => {
  type Listener = (...args: unknown[]) => unknown;
  const listeners = () => {
    const map = new Map<string, Listener[]>();
    return {
      map,
      on: (name: string, listener: Listener) => {
        map.set(name, [...(map.get(name) ?? []), listener]);
      },
      emit: (name: string, ...args: unknown[]) => (map.get(name) ?? []).map((l) => l(...args)),
    };
  };
  const makeContents = () => {
    const events = listeners();
    const contents = {
      events,
      on: vi.fn((name: string, listener: Listener) => {
        events.on(name, listener);
        return contents;
      }),
      windowOpenHandler: null as null | ((details: unknown) => unknown),
      setWindowOpenHandler: vi.fn((handler: (details: unknown) => unknown) => {
        contents.windowOpenHandler = handler;
      }),
      send: vi.fn(),
      isDestroyed: () => false,
      getURL: () => '',
    };
    return contents;
  };
  const windows: { options: Record<string, unknown>; webContents: ReturnType<typeof makeContents>; loadFile: ReturnType<typeof vi.fn> }[] = [];
  class BrowserWindow {
    readonly webContents = makeContents();
    readonly loadFile = vi.fn(async () => undefined);
    constructor(readonly options: Record<string, unknown>) {
      windows.push(this);
    }
    on() {
      return this;
    }
  }
  const appEvents = listeners();
  const handlers = new Map<string, Listener>();
  const permissionHandlers: { request?: Listener; check?: Listener; device?: Listener } = {};
  const module = {
    dialog: { showMessageBox: vi.fn(async () => ({ response: 1, checkboxChecked: false })) },
    Menu: {
      buildFromTemplate: vi.fn((template: unknown[]) => ({ template })),
      setApplicationMenu: vi.fn(),
    },
    app: {
      enableSandbox: vi.fn(),
      on: vi.fn(appEvents.on),
      whenReady: () => Promise.resolve(),
      quit: vi.fn(),
      isPackaged: false,
      getAppPath: () => process.cwd(),
      getVersion: () => '0.1.0',
    },
    ipcMain: { handle: vi.fn((channel: string, handler: Listener) => handlers.set(channel, handler)) },
    session: {
      defaultSession: {
        setPermissionRequestHandler: (h: Listener) => (permissionHandlers.request = h),
        setPermissionCheckHandler: (h: Listener) => (permissionHandlers.check = h),
        setDevicePermissionHandler: (h: Listener) => (permissionHandlers.device = h),
      },
    },
    BrowserWindow,
  };
  const services = {
    calls: new Map<string, ReturnType<typeof vi.fn>>(),
    eventListener: null as null | ((event: unknown) => void),
    dispose: vi.fn(async () => undefined),
  };
  return { module, windows, appEvents, handlers, permissionHandlers, makeContents, services };
});

vi.mock('electron', () => ({ ...fake.module, default: fake.module }));
// The first-run install check has its own test; here the helper is taken as installed.
vi.mock('./first-run', () => ({ ensureHelperInstalled: vi.fn(async () => 'not-needed') }));
vi.mock('../src/user/app-services', async () => {
  const { CALL_NAMES: names } = await import('../src/contracts/ipc-contract');
  const services: Record<string, unknown> = {
    onEvent: (listener: (event: unknown) => void) => {
      fake.services.eventListener = listener;
      return () => undefined;
    },
    dispose: fake.services.dispose,
  };
  for (const name of names) {
    const call = vi.fn(async (request: unknown) => ({ answeredBy: name, request }));
    fake.services.calls.set(name, call);
    services[name] = call;
  }
  return { createServices: () => services };
});

let appUrl = '';
const mainWindow = () => {
  const win = fake.windows[0];
  if (!win) throw new Error('no window was created');
  return win;
};
const frame = (url: string, parent: unknown = null) => ({ senderFrame: { url, parent } });
const invoke = (name: string, event: unknown, request: unknown) => {
  const handler = fake.handlers.get(channelOf(name as (typeof CALL_NAMES)[number]));
  if (!handler) throw new Error(`no handler for ${name}`);
  return handler(event, request) as Promise<CallOutcome>;
};

beforeAll(async () => {
  await import('./main');
  await new Promise((resolve) => setTimeout(resolve, 0)); // let whenReady's then() run
  const page = mainWindow().loadFile.mock.calls[0]?.[0] as string;
  appUrl = pathToFileURL(page).href;
});

describe('electron main: window', () => {
  it('creates one window that loads the built renderer page', () => {
    expect(fake.windows).toHaveLength(1);
    expect(appUrl).toMatch(/\/renderer\/index\.html$/);
  });

  it('isolates and sandboxes the renderer and gives it no Node', () => {
    const prefs = mainWindow().options.webPreferences as Record<string, unknown>;
    expect(prefs).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
    });
    expect(prefs.preload).toMatch(/preload\.cjs$/);
    expect(fake.module.app.enableSandbox).toHaveBeenCalled();
  });
});

describe('electron main: navigation', () => {
  const guarded = () => {
    const contents = fake.makeContents();
    fake.appEvents.emit('web-contents-created', {}, contents);
    return contents;
  };
  const navigate = (contents: ReturnType<typeof fake.makeContents>, event: string, url: string) => {
    const preventDefault = vi.fn();
    contents.events.emit(event, { url, preventDefault });
    return preventDefault;
  };

  it('denies window.open', () => {
    const contents = guarded();
    expect(contents.windowOpenHandler?.({ url: 'https://example.org/' })).toEqual({ action: 'deny' });
    expect(contents.windowOpenHandler?.({ url: appUrl })).toEqual({ action: 'deny' });
  });

  it('prevents navigation and redirects away from the app page', () => {
    const contents = guarded();
    for (const url of ['https://example.org/', 'file:///etc/passwd', `${appUrl.replace('index.html', 'other.html')}`, 'javascript:alert(1)']) {
      expect(navigate(contents, 'will-navigate', url), url).toHaveBeenCalled();
      expect(navigate(contents, 'will-redirect', url), url).toHaveBeenCalled();
    }
  });

  it('lets the app page reload itself', () => {
    expect(navigate(guarded(), 'will-navigate', appUrl)).not.toHaveBeenCalled();
    expect(navigate(guarded(), 'will-navigate', `${appUrl}#vm`)).not.toHaveBeenCalled();
  });

  it('refuses to attach a webview', () => {
    const preventDefault = vi.fn();
    guarded().events.emit('will-attach-webview', { preventDefault });
    expect(preventDefault).toHaveBeenCalled();
  });
});

describe('electron main: permissions', () => {
  const request = (permission: string, requestingUrl: string, isMainFrame = true) => {
    let granted: boolean | undefined;
    fake.permissionHandlers.request?.({}, permission, (ok: boolean) => (granted = ok), { requestingUrl, isMainFrame });
    return granted;
  };
  const check = (permission: string, requestingUrl: string, isMainFrame = true) =>
    fake.permissionHandlers.check?.({ getURL: () => requestingUrl }, permission, 'file:///', { requestingUrl, isMainFrame });

  it('grants clipboard access to the app page only', () => {
    for (const permission of ['clipboard-read', 'clipboard-sanitized-write']) {
      expect(request(permission, appUrl)).toBe(true);
      expect(check(permission, appUrl)).toBe(true);
      expect(request(permission, 'https://example.org/')).toBe(false);
      expect(check(permission, 'file:///tmp/evil.html')).toBe(false);
      expect(request(permission, appUrl, false)).toBe(false);
    }
  });

  it('denies every other permission, even to the app page', () => {
    for (const permission of ['media', 'geolocation', 'notifications', 'openExternal', 'fullscreen', 'pointerLock', 'hid', 'serial', 'usb', 'unknown']) {
      expect(request(permission, appUrl), permission).toBe(false);
      expect(check(permission, appUrl), permission).toBe(false);
    }
    expect(fake.permissionHandlers.device?.({ deviceType: 'usb', origin: 'file://' })).toBe(false);
  });
});

describe('electron main: IPC', () => {
  it('registers a handler for every contract call and nothing else', () => {
    expect([...fake.handlers.keys()].sort()).toEqual(CALL_NAMES.map(channelOf).sort());
  });

  it('passes a call from the app page to its service', async () => {
    const outcome = await invoke('getVm', frame(appUrl), { name: 'web' });
    expect(outcome).toEqual({ ok: true, result: { answeredBy: 'getVm', request: { name: 'web' } } });
  });

  it("returns the service's error message", async () => {
    fake.services.calls.get('startVm')?.mockRejectedValueOnce(new Error('SELinux is disabled: refusing to start web unconfined'));
    const outcome = await invoke('startVm', frame(appUrl), { name: 'web', allowUnconfined: false });
    expect(outcome).toEqual({ ok: false, error: { name: 'Error', message: 'SELinux is disabled: refusing to start web unconfined' } });
  });

  it('rejects calls from a foreign page, a subframe, or an unknown frame', async () => {
    const forceOff = fake.services.calls.get('forceOffVm');
    forceOff?.mockClear();
    await expect(invoke('forceOffVm', frame('https://example.org/'), { name: 'web' })).rejects.toThrow(/not the app's main frame/);
    await expect(invoke('forceOffVm', frame('file:///tmp/evil.html'), { name: 'web' })).rejects.toThrow(/not the app's main frame/);
    await expect(invoke('forceOffVm', frame(appUrl, { url: appUrl }), { name: 'web' })).rejects.toThrow(/not the app's main frame/);
    await expect(invoke('forceOffVm', { senderFrame: null }, { name: 'web' })).rejects.toThrow(/not the app's main frame/);
    expect(forceOff).not.toHaveBeenCalled();
  });

  it("pushes service events to the window's page", () => {
    const event: SvirtEvent = { event: 'vmStateChanged', payload: { vm: 'web', state: 'running', pid: 42 } };
    fake.services.eventListener?.(event);
    expect(mainWindow().webContents.send).toHaveBeenCalledWith(eventChannelOf('vmStateChanged'), event.payload);
  });
});

describe('electron main: application menu', () => {
  type Item = { label?: string; role?: string; accelerator?: string; click?: () => void; submenu?: Item[] };
  const menu = () => {
    const set = fake.module.Menu.setApplicationMenu.mock.calls[0]?.[0] as { template: Item[] } | undefined;
    if (!set) throw new Error('no application menu was set');
    return set.template;
  };
  const items = (top: Item[]): Item[] => top.flatMap((item) => [item, ...items(item.submenu ?? [])]);
  const byLabel = (label: string) => {
    const item = items(menu()).find((i) => i.label === label);
    if (!item) throw new Error(`no menu item ${label}`);
    return item;
  };

  it("replaces Electron's default menu with File, Edit, View, Machine and Help, without Reload or developer tools", () => {
    expect(menu().map((m) => m.label?.replace('&', ''))).toEqual(['File', 'Edit', 'View', 'Machine', 'Help']);
    const roles = items(menu()).map((i) => i.role).filter(Boolean);
    expect(roles).toEqual(expect.arrayContaining(['copy', 'paste', 'cut', 'selectAll', 'quit']));
    for (const unwanted of ['reload', 'forceReload', 'toggleDevTools', 'viewMenu', 'windowMenu']) expect(roles).not.toContain(unwanted);
    expect(byLabel('About sVirt Manager')).toBeTruthy();
  });

  it('lists a shortcut for each common action and sends it to the page as a menuCommand event', () => {
    const expected = { 'New VM…': 'newVm', Start: 'startVm', 'Shut Down': 'shutdownVm', Console: 'openConsole', 'Access Audit': 'openAudit' } as const;
    for (const [label, command] of Object.entries(expected)) {
      const item = byLabel(label);
      expect(item.accelerator, label).toMatch(/^CmdOrCtrl\+/);
      mainWindow().webContents.send.mockClear();
      item.click?.();
      expect(mainWindow().webContents.send).toHaveBeenCalledWith(eventChannelOf('menuCommand'), { command });
    }
    const accelerators = items(menu()).map((i) => i.accelerator).filter(Boolean);
    expect(new Set(accelerators).size).toBe(accelerators.length);
  });

  it('shows the version in About', async () => {
    byLabel('About sVirt Manager').click?.();
    await vi.waitFor(() => expect(fake.module.dialog.showMessageBox).toHaveBeenCalledWith(expect.objectContaining({ message: 'sVirt Manager 0.1.0' })));
  });
});

describe('electron main: quit', () => {
  it('closes the helper session before quitting, once', async () => {
    const preventDefault = vi.fn();
    fake.appEvents.emit('will-quit', { preventDefault });
    expect(preventDefault).toHaveBeenCalled();
    expect(fake.services.dispose).toHaveBeenCalledTimes(1);
    await vi.waitFor(() => expect(fake.module.app.quit).toHaveBeenCalled());

    const second = vi.fn();
    fake.appEvents.emit('will-quit', { preventDefault: second });
    expect(second).not.toHaveBeenCalled();
    expect(fake.services.dispose).toHaveBeenCalledTimes(1);
  });
});
