import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestHost, type TestHost } from '../support/helper-session';
import { consoleLoss, journalRace, lockRace, parallelVms, waitBehindBusyHolder, waitBehindStuckHolder } from './support/concurrency-scenario';

// Concurrency and load, small: the soak (bench/reliability-soak.ts) starts 20 VMs.
let host: TestHost;

beforeAll(async () => {
  host = await createTestHost();
});
afterAll(async () => {
  await host?.dispose();
});

describe('concurrency', () => {
  it('the state lock admits one process at a time, also while stale locks keep appearing', async () => {
    const [plain, stale] = await Promise.all([lockRace(3, 150, false), lockRace(3, 100, true)]);
    expect({ plain, stale }).toEqual({ plain: 0, stale: 0 });
  });

  it('a waiter under CPU load keeps waiting for a live holder past any fixed time, and gives up only on a holder without heartbeat', async () => {
    // The holder keeps the lock three times longer than the waiter's "stuck" limit: its heartbeat, not a
    // timer, decides.
    expect(await waitBehindBusyHolder(6_000, 2_000)).toBeGreaterThanOrEqual(4_000);
    expect(await waitBehindStuckHolder(1_000)).toBe('StateLockTimeoutError');
  }, 60_000);

  it('two helpers relabeling at once lose no journal entry', async () => {
    expect(await journalRace(host, 12)).toEqual([]);
  });

  it('counts console loss by line', () => {
    const all = Array.from({ length: 5 }, (_, i) => `line-${i}\r\n`).join('');
    expect(consoleLoss(all, 5).lostBytes).toBe(0);
    expect(consoleLoss(all.replace('line-2\r\n', ''), 5).lostBytes).toBe(8);
    expect(consoleLoss(all.replace('line-2\r\n', 'li\r\n'), 5).lostBytes).toBe(8);
    expect(consoleLoss(`${all}line-3\r\n`, 5).lostBytes).toBe(8);
    expect(consoleLoss(all.replace('line-4\r\n', ''), 5).lostBytes).toBe(8);
  });

  it('two helpers start VMs at the same time with distinct pairs; all consoles print at once and lose no byte; all stop in parallel', async () => {
    const result = await parallelVms(host, 2);
    expect(result.violations).toEqual([]);
    expect(result.lostConsoleBytes).toBe(0);
  }, 600_000);
});
