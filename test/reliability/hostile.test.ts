import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runHostile } from './support/hostile-scenario';

// The soak's hostile-user phase, small, beside a CPU hog: the boundary holds on a busy host too. Every
// hostile request is refused (no VM outside the VM domains or at the other user's pair, no hang, no other
// user's VM in the list), and the other user's files, journal records, VM and helper are untouched.
const HARM = /^(other user's|journal)/;

describe('hostile user', () => {
  it('random hostile requests from one user never change the other user\'s files, journal records, VM or helper, also with the CPUs busy', async () => {
    const hogs = Array.from({ length: 2 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
    try {
      const result = await runHostile(16, 12);
      expect(result.hostileCases).toBe(16);
      expect(Object.keys(result.shapes).length).toBeGreaterThan(5);
      expect(result.details.filter((d) => HARM.test(d))).toEqual([]);
      expect(result.details).toEqual([]);
      expect(result.boundaryViolations).toBe(0);
    } finally {
      for (const hog of hogs) hog.kill('SIGKILL');
    }
  }, 300_000);
});
