import { build } from 'esbuild';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import type { Services } from '../../src/main/app-services';
import { CALL_NAMES, settleCall, type CallName, type Unsubscribe } from '../../src/main/ipc-contract';

/**
 * Maps the IPC contract onto the real services in a browser page, as electron/ does with IPC: calls go
 * through a Playwright binding and settle into the same CallOutcome, events are dispatched into the page.
 */
export async function bridgeServices(page: Page, services: Services): Promise<Unsubscribe> {
  await page.exposeBinding('__svirtInvoke', async (_source, name: string, request: unknown) => {
    if (!(CALL_NAMES as readonly string[]).includes(name)) return { ok: false, error: { name: 'Error', message: `unknown call ${name}` } };
    return settleCall(services[name as CallName] as (r: unknown) => Promise<unknown>, request);
  });
  const script = await build({
    entryPoints: [path.resolve('test/support/bridge-page.ts')], bundle: true, format: 'iife', write: false, platform: 'browser',
  });
  await page.addInitScript({ content: script.outputFiles[0]?.text ?? '' });
  return services.onEvent(({ event, payload }) => {
    page.evaluate(([e, p]) => window.__svirtDispatch(e as never, p), [event, payload] as const).catch(() => undefined);
  });
}
