import { beforeAll, describe, expect, it, vi } from 'vitest';
import { CALL_NAMES, channelOf, eventChannelOf, type SvirtApi } from '../src/contracts/ipc-contract';

/** A stand-in for contextBridge and ipcRenderer: the real electron module cannot load here. */
const fake = vi.hoisted(() => {
  const exposed = new Map<string, unknown>();
  const channels = new Map<string, Set<(...args: unknown[]) => void>>();
  const module = {
    contextBridge: { exposeInMainWorld: vi.fn((key: string, value: unknown) => exposed.set(key, value)) },
    ipcRenderer: {
      invoke: vi.fn(async (_channel: string, _request: unknown): Promise<unknown> => ({ ok: true, result: null })),
      on: vi.fn((channel: string, listener: (...args: unknown[]) => void) => {
        channels.set(channel, (channels.get(channel) ?? new Set()).add(listener));
      }),
      removeListener: vi.fn((channel: string, listener: (...args: unknown[]) => void) => {
        channels.get(channel)?.delete(listener);
      }),
    },
  };
  const emit = (channel: string, payload: unknown) => {
    for (const listener of channels.get(channel) ?? []) listener({ sender: 'the raw IpcRendererEvent' }, payload);
  };
  return { module, exposed, emit };
});

vi.mock('electron', () => ({ ...fake.module, default: fake.module }));

let api: SvirtApi;

beforeAll(async () => {
  await import('./preload');
  api = fake.exposed.get('svirt') as SvirtApi;
});

describe('preload', () => {
  it("exposes exactly the contract's calls and the event subscription, as window.svirt", () => {
    expect([...fake.exposed.keys()]).toEqual(['svirt']);
    expect(Object.keys(api).sort()).toEqual([...CALL_NAMES, 'on'].sort());
  });

  it("invokes the call's channel and returns the result", async () => {
    fake.module.ipcRenderer.invoke.mockResolvedValueOnce({ ok: true, result: { name: 'web' } });
    await expect(api.getVm({ name: 'web' })).resolves.toEqual({ name: 'web' });
    expect(fake.module.ipcRenderer.invoke).toHaveBeenLastCalledWith(channelOf('getVm'), { name: 'web' });
  });

  it("rethrows the service's error with its own message", async () => {
    fake.module.ipcRenderer.invoke.mockResolvedValueOnce({ ok: false, error: { name: 'VmDefinitionError', message: 'memoryMiB must be >= 16' } });
    const error = await api.defineVm({} as never).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'VmDefinitionError', message: 'memoryMiB must be >= 16' });
  });

  it('delivers event payloads, without the IPC event, until unsubscribed', () => {
    const seen: unknown[] = [];
    const unsubscribe = api.on('consoleData', (payload) => seen.push(payload));
    fake.emit(eventChannelOf('consoleData'), { session: 's1', data: 'aGk=' });
    unsubscribe();
    fake.emit(eventChannelOf('consoleData'), { session: 's1', data: 'bG9zdA==' });
    expect(seen).toEqual([{ session: 's1', data: 'aGk=' }]);
  });

  it('refuses channels that are not contract events', () => {
    expect(() => api.on('svirt:getVm' as never, () => undefined)).toThrow(/unknown event/);
    expect(() => api.on('vmStateChanged', 'not a function' as never)).toThrow(/listener/);
  });
});
