import { build } from 'esbuild';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import type { Services } from '../../src/user/app-services';
import { CALL_NAMES, settleCall, type CallName, type Unsubscribe } from '../../src/contracts/ipc-contract';

/**
 * Maps the IPC contract onto the real services in a browser page, as electron/ does with IPC: calls go
 * through a Playwright binding and settle into the same CallOutcome, events are dispatched into the page.
 */
export async function bridgeServices(page: Page, services: Services): Promise<Unsubscribe> {
  // Outcomes travel as JSON text: the contract is JSON data, and Playwright's own serializer, which walks
  // a value node by node, takes seconds over an audit of 10,000 files that JSON carries in milliseconds.
  await page.exposeBinding('__svirtInvoke', async (_source, name: string, request: unknown) => {
    if (!(CALL_NAMES as readonly string[]).includes(name)) return JSON.stringify({ ok: false, error: { name: 'Error', message: `unknown call ${name}` } });
    return JSON.stringify(await settleCall(services[name as CallName] as (r: unknown) => Promise<unknown>, request));
  });
  const script = await build({
    entryPoints: [path.resolve('test/support/bridge-page.ts')], bundle: true, format: 'iife', write: false, platform: 'browser',
  });
  await page.addInitScript({ content: script.outputFiles[0]?.text ?? '' });
  return services.onEvent(({ event, payload }) => {
    page.evaluate(([e, p]) => window.__svirtDispatch(e as never, p), [event, payload] as const).catch(() => undefined);
  });
}
