// The parts of noVNC's RFB (core/rfb.js, docs/API.md) this app uses; the package ships no types.
declare module '@novnc/novnc' {
  /** What RFB accepts instead of a URL: a WebSocket-like channel (its Websock checks these properties). */
  export interface RawChannel {
    binaryType: string;
    protocol: string;
    readyState: string;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: { data: ArrayBuffer }) => void) | null;
    onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    send(data: Uint8Array): void;
    close(): void;
  }

  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, urlOrChannel: string | RawChannel, options?: { shared?: boolean; credentials?: object });
    scaleViewport: boolean;
    resizeSession: boolean;
    focusOnClick: boolean;
    viewOnly: boolean;
    background: string;
    disconnect(): void;
    focus(): void;
    blur(): void;
    sendCtrlAltDel(): void;
    sendKey(keysym: number, code: string | null, down?: boolean): void;
    clipboardPasteFrom(text: string): void;
  }
}
