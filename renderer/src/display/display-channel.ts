import type { RawChannel } from '@novnc/novnc';
import type { SvirtApi, Unsubscribe } from '../../../src/contracts/ipc-contract';

/**
 * The WebSocket-like object noVNC's RFB reads from and writes to: RFB bytes travel over the IPC contract
 * (displayAttach / displayInput / displayData) to the helper's relay and qemu's VNC socket. It is "open"
 * from the start, so RFB begins its handshake as soon as it attaches; bytes that arrive before the attach
 * answers with the session id are kept and delivered in order.
 */
export class DisplayChannel implements RawChannel {
  binaryType = 'arraybuffer';
  readonly protocol = '';
  readyState: 'open' | 'closed' = 'open';
  onopen: RawChannel['onopen'] = null;
  onmessage: RawChannel['onmessage'] = null;
  onclose: RawChannel['onclose'] = null;
  onerror: RawChannel['onerror'] = null;

  private session: string | null = null;
  private readonly early: { session: string; data: string }[] = [];
  private readonly unsent: Uint8Array[] = [];
  private readonly stop: Unsubscribe[];

  constructor(private readonly api: SvirtApi, vm: string, private readonly onFailure: (message: string) => void) {
    this.stop = [
      api.on('displayData', ({ session, data }) => {
        if (this.session === null) this.early.push({ session, data });
        else if (session === this.session) this.deliver(data);
      }),
      api.on('displayEnded', ({ session, reason }) => {
        if (session === this.session) this.closed(reason);
      }),
    ];
    api.displayAttach({ vm }).then(
      ({ session }) => {
        this.session = session;
        for (const chunk of this.early.splice(0)) if (chunk.session === session) this.deliver(chunk.data);
        for (const bytes of this.unsent.splice(0)) this.send(bytes);
      },
      (err: unknown) => {
        this.onFailure(err instanceof Error ? err.message : String(err));
        this.closed('attach failed');
      },
    );
  }

  private deliver(base64: string): void {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    this.onmessage?.({ data: bytes.buffer });
  }

  send(data: Uint8Array): void {
    if (this.readyState !== 'open') return;
    // RFB reuses its send buffer: copy before the call goes out asynchronously.
    const bytes = new Uint8Array(data);
    if (this.session === null) {
      this.unsent.push(bytes);
      return;
    }
    let binary = '';
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i] as number);
    void this.api.displayInput({ session: this.session, data: btoa(binary) }).catch(() => undefined);
  }

  close(): void {
    if (this.session !== null) void this.api.displayDetach({ session: this.session }).catch(() => undefined);
    this.closed('closed by the viewer');
  }

  private closed(reason: string): void {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    for (const stop of this.stop) stop();
    this.onclose?.({ code: 1000, reason, wasClean: true });
  }
}
