import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import type { SvirtApi, Unsubscribe } from '../../../src/contracts/ipc-contract';
import { errorMessage } from '../api';

export interface ConsoleSnapshot {
  session: string | null;
  attaching: boolean;
  /** Bytes the helper replayed on the last attach: output produced while nobody watched. */
  replayedBytes: number | null;
  /** Why the last session ended (the VM stopped …); null while attached or never attached. */
  ended: string | null;
  error: string | null;
  /** Whether the terminal has shown anything, so a stopped VM can still show its last output. */
  hasHistory: boolean;
}

const TERMINAL_THEME = {
  background: '#121c24',
  foreground: '#d9e2e9',
  cursor: '#7fd1c1',
  cursorAccent: '#121c24',
  selectionBackground: 'rgba(127, 209, 193, 0.32)',
};

function decodeBase64(data: string): Uint8Array {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Routes console events by session; keeps what arrived for a session before its attach answered. */
export interface SessionDirectory {
  /** Registers the session and returns the chunks that arrived for it early. */
  claim(session: string, console: VmConsole): string[];
  release(session: string): void;
}

/**
 * One VM's serial console: an xterm.js terminal that outlives the screen showing it, so scrollback and
 * the attached session survive navigating away and back. Output keeps arriving while it is not shown.
 */
export class VmConsole {
  readonly terminal: Terminal;
  private readonly fit = new FitAddon();
  /** Moved between screens; xterm is opened into it once. */
  private readonly element: HTMLDivElement;
  private opened = false;
  private snapshot: ConsoleSnapshot = { session: null, attaching: false, replayedBytes: null, ended: null, error: null, hasHistory: false };
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly vm: string,
    readonly api: SvirtApi,
    private readonly sessions: SessionDirectory,
  ) {
    this.terminal = new Terminal({
      scrollback: 10_000,
      cursorBlink: true,
      fontFamily: '"JetBrains Mono", "DejaVu Sans Mono", ui-monospace, monospace',
      fontSize: 13,
      lineHeight: 1.15,
      theme: TERMINAL_THEME,
    });
    this.terminal.loadAddon(this.fit);
    this.element = document.createElement('div');
    this.element.className = 'terminal-host';
    this.terminal.onData((data) => this.send(data));
    this.terminal.onResize(({ cols, rows }) => {
      const { session } = this.snapshot;
      if (session) this.api.consoleResize({ session, cols, rows }).catch(() => undefined);
    });
    this.terminal.attachCustomKeyEventHandler((event) => this.onKey(event));
  }

  getSnapshot = (): ConsoleSnapshot => this.snapshot;

  subscribe = (listener: () => void): Unsubscribe => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private update(change: Partial<ConsoleSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    for (const listener of this.listeners) listener();
  }

  /** Shows the terminal in a container that is in the document (xterm measures its cells on open). */
  mount(container: HTMLElement): void {
    container.appendChild(this.element);
    if (!this.opened) {
      this.terminal.open(this.element);
      this.opened = true;
    }
    this.fitToContainer();
  }

  unmount(): void {
    this.element.remove();
  }

  fitToContainer(): void {
    if (!this.element.isConnected || this.element.clientWidth === 0) return;
    this.fit.fit();
  }

  async attach(): Promise<void> {
    if (this.snapshot.session || this.snapshot.attaching) return;
    const reattaching = this.snapshot.ended !== null;
    this.update({ attaching: true, error: null });
    try {
      const { session, replayedBytes } = await this.api.consoleAttach({ vm: this.vm });
      if (reattaching) this.terminal.write('\r\n\x1b[2m── console attached again ──\x1b[0m\r\n');
      const early = this.sessions.claim(session, this);
      this.update({ session, attaching: false, replayedBytes, ended: null });
      for (const chunk of early) this.receive(chunk);
      this.api.consoleResize({ session, cols: this.terminal.cols, rows: this.terminal.rows }).catch(() => undefined);
    } catch (e) {
      this.update({ attaching: false, error: errorMessage(e) });
    }
  }

  receive(base64: string): void {
    this.terminal.write(decodeBase64(base64));
    if (!this.snapshot.hasHistory) this.update({ hasHistory: true });
  }

  ended(reason: string): void {
    if (this.snapshot.session) this.sessions.release(this.snapshot.session);
    this.update({ session: null, ended: reason });
  }

  /** Ends the session for good (the VM was deleted). */
  async detach(): Promise<void> {
    const { session } = this.snapshot;
    if (session) {
      this.sessions.release(session);
      await this.api.consoleDetach({ session }).catch(() => undefined);
    }
    this.terminal.dispose();
  }

  private send(data: string): void {
    const { session } = this.snapshot;
    if (session) this.api.consoleInput({ session, data }).catch((e: unknown) => this.update({ error: errorMessage(e) }));
  }

  async copySelection(): Promise<void> {
    const text = this.terminal.getSelection();
    if (text) await navigator.clipboard.writeText(text);
  }

  async paste(): Promise<void> {
    const text = await navigator.clipboard.readText();
    // Through xterm, so bracketed paste mode wraps it as the guest's shell asked.
    if (text) this.terminal.paste(text);
  }

  /** Ctrl+Shift+C / Ctrl+Shift+V, as terminals do: plain Ctrl+C and Ctrl+V belong to the guest. */
  private onKey(event: KeyboardEvent): boolean {
    if (event.type !== 'keydown' || !event.ctrlKey || !event.shiftKey || event.altKey) return true;
    if (event.code === 'KeyC') {
      event.preventDefault();
      void this.copySelection();
      return false;
    }
    if (event.code === 'KeyV') {
      // Stops Chromium's own paste-as-plain-text as well, which would paste a second time.
      event.preventDefault();
      void this.paste().catch((e: unknown) => this.update({ error: errorMessage(e) }));
      return false;
    }
    return true;
  }
}
