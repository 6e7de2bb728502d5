import type { HelperClient } from '../helper-client';
import { CliError, EXIT } from './exit-codes';

const DETACH_KEY = 0x1d; // Ctrl+]

export interface ConsoleOptions {
  send?: string;
  expect?: string;
  /** Seconds to wait for --expect. */
  timeout: number;
}

/**
 * `svirt console`: attaches to the VM's console keeper through the helper. Scripted (--send/--expect)
 * it exits 0 once the output matches; with --send only output after the send counts, so an old match
 * in the replayed scrollback cannot pass. Interactive it relays a raw terminal until Ctrl+].
 */
export async function runConsole(helper: HelperClient, vm: string, options: ConsoleOptions): Promise<number> {
  let pattern: RegExp | undefined;
  try {
    pattern = options.expect === undefined ? undefined : new RegExp(options.expect, 'm');
  } catch (e) {
    throw new CliError(`--expect is not a valid regular expression: ${(e as Error).message}`);
  }
  let output = '';
  let countFrom = 0;
  let onOutput: () => void = () => undefined;
  let ended: string | undefined;
  const onEvent = (event: string, data: { data?: string; reason?: string }) => {
    if (event === 'console-data' && data.data) {
      const bytes = Buffer.from(data.data, 'base64');
      output += bytes.toString('latin1');
      if (pattern === undefined) process.stdout.write(bytes);
      onOutput();
    } else if (event === 'console-end') {
      ended = data.reason ?? 'ended';
      onOutput();
    }
  };
  // A response and the first events can arrive in one read, before the attach promise settles: hold
  // events until the session id is known, then keep this session's.
  type SessionEvent = { session: string; data?: string; reason?: string };
  const early: [string, SessionEvent][] = [];
  let mine: ((event: string, data: SessionEvent) => void) | undefined;
  helper.on('event', (event: string, data: SessionEvent) => (mine ? mine(event, data) : early.push([event, data])));
  const { session } = await helper.request('consoleAttach', { vm });
  mine = (event, data) => {
    if (data.session === session) onEvent(event, data);
  };
  for (const [event, data] of early) mine(event, data);
  const scripted = options.send !== undefined || pattern !== undefined;

  if (scripted) {
    if (options.send !== undefined) {
      countFrom = output.length;
      await helper.request('consoleInput', { session, data: `${options.send}\n` });
    }
    if (!pattern) return EXIT.ok;
    const seen = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), options.timeout * 1000);
      onOutput = () => {
        if (pattern.test(output.slice(countFrom))) {
          clearTimeout(timer);
          resolve(true);
        } else if (ended) {
          clearTimeout(timer);
          resolve(false);
        }
      };
      onOutput();
    });
    process.stdout.write(output.slice(countFrom));
    if (!seen) process.stderr.write(`svirt: ${ended ? `console ended (${ended})` : `no match for /${options.expect}/ within ${options.timeout} s`}\n`);
    return seen ? EXIT.ok : EXIT.negative;
  }

  // Interactive.
  const stdin = process.stdin;
  if (stdin.isTTY) stdin.setRawMode(true);
  const resize = () => {
    if (process.stdout.columns && process.stdout.rows) {
      void helper.request('consoleResize', { session, cols: process.stdout.columns, rows: process.stdout.rows }).catch(() => undefined);
    }
  };
  process.stdout.on('resize', resize);
  resize();
  process.stderr.write(`connected to ${vm}'s console; Ctrl+] leaves\r\n`);
  await new Promise<void>((resolve) => {
    onOutput = () => ended && resolve();
    stdin.on('data', (chunk: Buffer) => {
      const at = chunk.indexOf(DETACH_KEY);
      const keys = at >= 0 ? chunk.subarray(0, at) : chunk;
      if (keys.length > 0) void helper.request('consoleInput', { session, data: keys.toString('base64'), encoding: 'base64' }).catch(() => undefined);
      if (at >= 0) resolve();
    });
    stdin.on('end', () => resolve());
  });
  if (stdin.isTTY) stdin.setRawMode(false);
  stdin.pause();
  process.stdout.off('resize', resize);
  await helper.request('consoleDetach', { session }).catch(() => undefined);
  return EXIT.ok;
}
