import type { SvirtApi, Unsubscribe } from '../../../src/contracts/ipc-contract';
import { VmConsole, type SessionDirectory } from './vm-console';

/**
 * Module-level: one VmConsole per VM for the app's lifetime, so a console keeps its scrollback and its
 * session while the user looks at other screens. Console events are routed here by session.
 */
const consoles = new Map<string, VmConsole>();
const sessions = new Map<string, VmConsole>();
/** Replayed output may arrive before consoleAttach answers with the session id. */
const early = new Map<string, string[]>();
const EARLY_LIMIT_CHARS = 8 * 1024 * 1024;
let earlyChars = 0;
let routing: { api: SvirtApi; stop: Unsubscribe } | null = null;

const directory: SessionDirectory = {
  claim(session, console) {
    sessions.set(session, console);
    const chunks = early.get(session) ?? [];
    early.delete(session);
    earlyChars -= chunks.reduce((n, c) => n + c.length, 0);
    return chunks;
  },
  release(session) {
    sessions.delete(session);
  },
};

function keepEarly(session: string, data: string): void {
  if (earlyChars + data.length > EARLY_LIMIT_CHARS) return; // a session nobody claims must not grow without bound
  early.set(session, [...(early.get(session) ?? []), data]);
  earlyChars += data.length;
}

function routeEvents(api: SvirtApi): void {
  if (routing?.api === api) return;
  routing?.stop();
  const stopData = api.on('consoleData', ({ session, data }) => {
    const console = sessions.get(session);
    if (console) console.receive(data);
    else keepEarly(session, data);
  });
  const stopEnded = api.on('consoleEnded', ({ session, reason }) => sessions.get(session)?.ended(reason));
  routing = {
    api,
    stop: () => {
      stopData();
      stopEnded();
    },
  };
}

export function consoleFor(api: SvirtApi, vm: string): VmConsole {
  routeEvents(api);
  const existing = consoles.get(vm);
  if (existing && existing.api === api) return existing;
  const created = new VmConsole(vm, api, directory);
  consoles.set(vm, created);
  return created;
}

/** For a deleted VM: its console has nothing more to show. */
export function forgetConsole(vm: string): void {
  const existing = consoles.get(vm);
  consoles.delete(vm);
  void existing?.detach();
}
