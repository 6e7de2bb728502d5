// @vitest-environment happy-dom
import { describe, expect, it, vi } from 'vitest';
import { createFakeApi } from '../test-support/fake-api';
import { consoleFor } from './console-registry';

const bytes = (text: string) => new TextEncoder().encode(text);

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('VM console', () => {
  it('keeps one console per VM, so its terminal and session outlive the screen', () => {
    const api = createFakeApi();
    expect(consoleFor(api, 'web')).toBe(consoleFor(api, 'web'));
    expect(consoleFor(api, 'db')).not.toBe(consoleFor(api, 'web'));
  });

  it('writes output replayed before the attach answered, then live output, in order', async () => {
    const attach = deferred<{ session: string; replayedBytes: number }>();
    const api = createFakeApi({ consoleAttach: () => attach.promise, consoleResize: async () => undefined });
    const vmConsole = consoleFor(api, 'replay');
    const write = vi.spyOn(vmConsole.terminal, 'write');
    const attached = vmConsole.attach();
    api.emit('consoleData', { session: 's-replay', data: btoa('while you were away\r\n') });
    attach.resolve({ session: 's-replay', replayedBytes: 21 });
    await attached;
    api.emit('consoleData', { session: 's-replay', data: btoa('$ ') });
    api.emit('consoleData', { session: 'someone-else', data: btoa('not mine') });
    expect(write.mock.calls.map(([data]) => data)).toEqual([bytes('while you were away\r\n'), bytes('$ ')]);
    expect(vmConsole.getSnapshot()).toMatchObject({ session: 's-replay', replayedBytes: 21, hasHistory: true });
  });

  it('sends keystrokes and size to its session, and stops when the session ends', async () => {
    const consoleInput = vi.fn(async () => undefined);
    const consoleResize = vi.fn(async () => undefined);
    const api = createFakeApi({ consoleAttach: async () => ({ session: 's-keys', replayedBytes: 0 }), consoleInput, consoleResize });
    const vmConsole = consoleFor(api, 'keys');
    await vmConsole.attach();
    expect(consoleResize).toHaveBeenCalledWith({ session: 's-keys', cols: vmConsole.terminal.cols, rows: vmConsole.terminal.rows });
    vmConsole.terminal.input('ls\r');
    expect(consoleInput).toHaveBeenCalledWith({ session: 's-keys', data: 'ls\r' });

    api.emit('consoleEnded', { session: 's-keys', vm: 'keys', reason: 'the VM stopped' });
    expect(vmConsole.getSnapshot()).toMatchObject({ session: null, ended: 'the VM stopped' });
    consoleInput.mockClear();
    vmConsole.terminal.input('x');
    expect(consoleInput).not.toHaveBeenCalled();
  });

  it('copies the selection, and pastes through the terminal (which applies bracketed paste)', async () => {
    const api = createFakeApi({ consoleAttach: async () => ({ session: 's-clip', replayedBytes: 0 }), consoleResize: async () => undefined });
    const vmConsole = consoleFor(api, 'clip');
    await vmConsole.attach();
    const clipboard = { writeText: vi.fn(async () => undefined), readText: vi.fn(async () => 'echo hi') };
    Object.defineProperty(navigator, 'clipboard', { value: clipboard, configurable: true });
    vi.spyOn(vmConsole.terminal, 'getSelection').mockReturnValue('system_u:system_r:svirt_t:s0:c1,c2');
    await vmConsole.copySelection();
    expect(clipboard.writeText).toHaveBeenCalledWith('system_u:system_r:svirt_t:s0:c1,c2');
    const paste = vi.spyOn(vmConsole.terminal, 'paste').mockImplementation(() => undefined);
    await vmConsole.paste();
    expect(paste).toHaveBeenCalledWith('echo hi');
  });
});
