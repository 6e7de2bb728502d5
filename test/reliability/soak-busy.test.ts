import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

// The whole soak (bench/reliability-soak.ts, every phase, small sizes) beside two CPU hogs on this host:
// a busy host is where it used to end without its summary (a lock waiter gave up after a fixed 30 s). It
// starts real VMs in three phases: minutes on a quiet host, about 15 on one at load 23.
const SIZES = ['--cases', '150', '--kills', '2', '--vms', '2', '--lines', '100', '--hostile', '30', '--seed', '12'];

describe('reliability soak on a busy host', () => {
  it('runs every phase to its JSON summary beside two CPU hogs, with nothing but the counts above zero', async () => {
    const hogs = Array.from({ length: 2 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
    try {
      const soak = spawn(process.execPath, ['--import', 'tsx', path.resolve('bench/reliability-soak.ts'), ...SIZES], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      soak.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      soak.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const code = await new Promise<number | null>((resolve) => soak.on('close', resolve));
      expect({ code, stderr: code === 0 ? '' : stderr.slice(-2000) }).toEqual({ code: 0, stderr: '' });
      const summary = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Record<string, number>;
      // The fuzzer sends whole batches, so it may fuzz a few more cases than asked.
      expect(summary.casesFuzzed).toBeGreaterThanOrEqual(150);
      expect({ ...summary, casesFuzzed: 150 }).toEqual({
        casesFuzzed: 150, crashes: 0, hangs: 0, sideEffects: 0,
        killIterations: 2, invariantViolations: 0,
        concurrentVms: 2, lostConsoleBytes: 0,
        hostileCases: 30, boundaryViolations: 0,
      });
    } finally {
      for (const hog of hogs) hog.kill('SIGKILL');
    }
  }, 1_800_000);
});
