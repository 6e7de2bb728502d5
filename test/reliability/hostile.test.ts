import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runHostile } from './support/hostile-scenario';

// The soak's hostile-user phase, small, beside a CPU hog: the boundary holds on a busy host too.
// Harm to the other user (her files, journal records, VM, helper) must never happen. Refusals still owed
// by the helper (labels checked only in the UI, FIFO disks that hang a start, `list` showing every user's
// VMs: issue 12 items 1, 4 and 8) are counted by the soak's boundaryViolations; once they are fixed this
// test asserts result.boundaryViolations === 0.
const HARM = /^(other user's|journal)/;

describe('hostile user', () => {
  it('random hostile requests from one user never change the other user\'s files, journal records, VM or helper, also with the CPUs busy', async () => {
    const hogs = Array.from({ length: 2 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
    try {
      const result = await runHostile(16, 12);
      expect(result.hostileCases).toBe(16);
      expect(Object.keys(result.shapes).length).toBeGreaterThan(5);
      expect(result.details.filter((d) => HARM.test(d))).toEqual([]);
    } finally {
      for (const hog of hogs) hog.kill('SIGKILL');
    }
  }, 300_000);
});
