import RFB from '@novnc/novnc';
import { useEffect, useId, useRef, useState, type KeyboardEvent } from 'react';
import type { VmState } from '../../../src/contracts/ipc-contract';
import { useApi } from '../api';
import { Notice } from '../common/Notice';
import { DisplayChannel } from './display-channel';

// X11 keysyms (noVNC sends keysyms): Control_L, Alt_L, F1.
const CONTROL_L = 0xffe3;
const ALT_L = 0xffe9;
const F1 = 0xffbe;

type Status = { kind: 'connecting' } | { kind: 'connected' } | { kind: 'disconnected'; reason: string };

/**
 * The VM's graphical console: noVNC over the helper's relay to qemu's VNC socket. The session is exclusive
 * (shared=false), so qemu drops any other viewer of this VM: the newest viewer alone owns input, and opening
 * the display again (after an app restart, say) takes it back.
 */
export function DisplayView({ vm, state }: { vm: string; state: VmState }) {
  const api = useApi();
  const screen = useRef<HTMLDivElement>(null);
  const frame = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const [status, setStatus] = useState<Status>({ kind: 'connecting' });
  const [focused, setFocused] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const [guestClipboard, setGuestClipboard] = useState('');
  const [paste, setPaste] = useState('');
  const running = state === 'running';
  const hintId = useId();
  const toolbarExit = useRef<HTMLButtonElement>(null);
  // Ctrl+Alt pressed and released with no other key between hands the keyboard back to the app (as in
  // virt-manager): on the screen every other key, Tab included, goes to the VM.
  const releaseArmed = useRef(false);
  const isCtrlOrAlt = (e: KeyboardEvent) => e.key === 'Control' || e.key === 'Alt';
  const onKeyDownCapture = (e: KeyboardEvent<HTMLDivElement>) => {
    releaseArmed.current = isCtrlOrAlt(e) ? releaseArmed.current || (e.ctrlKey && e.altKey) : false;
  };
  const onKeyUpCapture = (e: KeyboardEvent<HTMLDivElement>) => {
    if (!releaseArmed.current || !isCtrlOrAlt(e)) return;
    releaseArmed.current = false;
    toolbarExit.current?.focus();
  };

  useEffect(() => {
    const target = screen.current;
    if (!running || !target) return;
    setStatus({ kind: 'connecting' });
    let failure: string | null = null;
    const channel = new DisplayChannel(api, vm, (message) => (failure = message));
    const client = new RFB(target, channel, { shared: false });
    client.scaleViewport = true;
    client.focusOnClick = true;
    client.background = '#111';
    client.addEventListener('connect', () => setStatus({ kind: 'connected' }));
    client.addEventListener('disconnect', () => setStatus({ kind: 'disconnected', reason: failure ?? 'the display connection closed' }));
    client.addEventListener('clipboard', (e) => setGuestClipboard((e as CustomEvent<{ text: string }>).detail.text));
    rfb.current = client;
    return () => {
      rfb.current = null;
      client.disconnect();
    };
  }, [api, vm, running, attempt]);

  const sendCombo = (keys: number[]) => {
    const client = rfb.current;
    if (!client) return;
    for (const k of keys) client.sendKey(k, null, true);
    for (const k of [...keys].reverse()) client.sendKey(k, null, false);
    client.focus();
  };

  const onSendKeys = (value: string) => {
    if (value === 'cad') rfb.current?.sendCtrlAltDel();
    else if (value.startsWith('f')) sendCombo([CONTROL_L, ALT_L, F1 + Number(value.slice(1)) - 1]);
  };

  if (!running) return <p className="empty">The display is available while the VM runs.</p>;

  return (
    <div className="display" ref={frame}>
      <div className="display__bar" role="toolbar" aria-label="Display controls">
        <span className="display__status" role="status">
          {status.kind === 'connecting' ? 'Connecting…' : status.kind === 'connected' ? 'Connected' : `Disconnected: ${status.reason}`}
        </span>
        <span id={hintId} className={focused ? 'display__focus display__focus--on' : 'display__focus'} aria-live="polite">
          {focused ? 'Keyboard captured: keys go to the VM (Ctrl+Alt or a click outside releases it)' : 'Click the screen or Tab to it to type into the VM'}
        </span>
        <label className="display__keys">
          <select aria-label="Send keys" value="" onChange={(e) => onSendKeys(e.target.value)} disabled={status.kind !== 'connected'}>
            <option value="">Send keys…</option>
            <option value="cad">Ctrl+Alt+Del</option>
            {[1, 2, 3, 4, 5, 6, 7].map((n) => (
              <option key={n} value={`f${n}`}>{`Ctrl+Alt+F${n}`}</option>
            ))}
          </select>
        </label>
        <button type="button" className="button" ref={toolbarExit} onClick={() => void frame.current?.requestFullscreen?.()}>
          Fullscreen
        </button>
        {status.kind === 'disconnected' && (
          <button type="button" className="button" onClick={() => setAttempt((n) => n + 1)}>
            Reconnect
          </button>
        )}
      </div>
      <div
        className={focused ? 'display__screen display__screen--focused' : 'display__screen'}
        ref={screen}
        data-testid="display-screen"
        // Reachable by Tab: focusing the frame hands the focus to noVNC's canvas, which takes the keys.
        tabIndex={0}
        role="application"
        aria-label="VM screen"
        aria-describedby={hintId}
        onFocus={(e) => {
          setFocused(true);
          if (e.target === e.currentTarget) rfb.current?.focus();
        }}
        onBlur={() => setFocused(false)}
        onKeyDownCapture={onKeyDownCapture}
        onKeyUpCapture={onKeyUpCapture}
      />
      <details className="display__clipboard">
        <summary>Clipboard</summary>
        <p className="display__hint">Text goes to the guest's clipboard through VNC; guests without a clipboard agent ignore it.</p>
        <textarea aria-label="Text to send to the guest clipboard" value={paste} onChange={(e) => setPaste(e.target.value)} rows={2} />
        <button type="button" className="button" disabled={status.kind !== 'connected' || paste === ''} onClick={() => rfb.current?.clipboardPasteFrom(paste)}>
          Send to guest clipboard
        </button>
        {guestClipboard !== '' && (
          <Notice tone="info" title="Guest clipboard">
            <pre>{guestClipboard}</pre>
          </Notice>
        )}
      </details>
    </div>
  );
}
