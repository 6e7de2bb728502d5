import '@xterm/xterm/css/xterm.css';
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { VmState } from '../../../src/contracts/ipc-contract';
import { errorMessage, useApi } from '../api';
import { Notice } from '../common/Notice';
import { consoleFor } from './console-registry';
import { ContextMenu } from './ContextMenu';

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The VM's serial console; attaches while the VM runs and keeps its terminal when the screen changes.
 * unconfinedReason: set when the VM runs unconfined, so the bar says so where the user types into it.
 */
export function ConsoleView({ vm, state, unconfinedReason }: { vm: string; state: VmState; unconfinedReason?: string }) {
  const api = useApi();
  const vmConsole = useMemo(() => consoleFor(api, vm), [api, vm]);
  const snapshot = useSyncExternalStore(vmConsole.subscribe, vmConsole.getSnapshot);
  const host = useRef<HTMLDivElement>(null);
  const [menu, setMenu] = useState<{ x: number; y: number } | null>(null);
  const [clipboardError, setClipboardError] = useState<string | null>(null);
  const running = state === 'running';
  const showTerminal = running || snapshot.hasHistory;

  useEffect(() => {
    if (running && !snapshot.session && !snapshot.attaching && !snapshot.error) void vmConsole.attach();
  }, [running, snapshot.session, snapshot.attaching, snapshot.error, vmConsole]);

  useEffect(() => {
    const container = host.current;
    if (!showTerminal || !container) return;
    vmConsole.mount(container);
    const resize = new ResizeObserver(() => vmConsole.fitToContainer());
    resize.observe(container);
    vmConsole.terminal.focus();
    return () => {
      resize.disconnect();
      vmConsole.unmount();
    };
  }, [vmConsole, showTerminal]);

  const clipboard = (action: () => Promise<void>) => () => {
    setClipboardError(null);
    action().catch((e: unknown) => setClipboardError(`Clipboard: ${errorMessage(e)}`));
  };
  const copy = clipboard(() => vmConsole.copySelection());
  const paste = clipboard(() => vmConsole.paste());

  return (
    <section className="console" aria-label={`Console of ${vm}`}>
      <div className="console__bar">
        {unconfinedReason !== undefined && (
          <span className="console__unconfined" data-testid="console-unconfined" title={unconfinedReason}>
            ⚠ Unconfined
          </span>
        )}
        <span className="console__status" data-testid="console-status">
          {snapshot.session
            ? 'Attached to the serial console'
            : snapshot.attaching
              ? 'Attaching…'
              : running
                ? 'Not attached'
                : state === 'starting'
                  ? 'The VM is starting…'
                  : 'The VM is off'}
          {snapshot.session && snapshot.replayedBytes ? ` · replayed ${formatBytes(snapshot.replayedBytes)} produced while detached` : ''}
        </span>
        <span className="console__hint">Copy Ctrl+Shift+C · Paste Ctrl+Shift+V</span>
        <button type="button" className="button button--small" onClick={copy} disabled={!showTerminal}>
          Copy
        </button>
        <button type="button" className="button button--small" onClick={paste} disabled={!snapshot.session}>
          Paste
        </button>
      </div>

      {snapshot.error && (
        <Notice tone="error" title="Console problem">
          {snapshot.error}{' '}
          {running && (
            <button type="button" className="button button--small" onClick={() => void vmConsole.attach()}>
              Try again
            </button>
          )}
        </Notice>
      )}
      {clipboardError && <Notice tone="error">{clipboardError}</Notice>}

      {!running && (
        <div className="console__off" role="status">
          <strong>{vm} is {state === 'starting' ? 'starting' : state === 'stopping' ? 'stopping' : 'off'}.</strong>{' '}
          {state === 'stopped' && 'Start it to use its serial console. Output the guest writes while you look elsewhere is kept and replayed.'}
          {snapshot.ended && snapshot.hasHistory && <span className="muted"> Below is its output up to “{snapshot.ended}”.</span>}
        </div>
      )}

      {showTerminal && (
        <div
          ref={host}
          className={`console__screen${running ? '' : ' console__screen--ended'}`}
          data-testid="console-screen"
          onContextMenu={(event) => {
            event.preventDefault();
            setMenu({ x: event.clientX, y: event.clientY });
          }}
        />
      )}
      {menu && (
        <ContextMenu
          label="Console"
          x={menu.x}
          y={menu.y}
          onClose={() => setMenu(null)}
          items={[
            { label: 'Copy', shortcut: 'Ctrl+Shift+C', disabled: !vmConsole.terminal.hasSelection(), onSelect: copy },
            { label: 'Paste', shortcut: 'Ctrl+Shift+V', disabled: !snapshot.session, onSelect: paste },
            { label: 'Select all', onSelect: () => vmConsole.terminal.selectAll() },
            { label: 'Clear scrollback', onSelect: () => vmConsole.terminal.clear() },
          ]}
        />
      )}
    </section>
  );
}
