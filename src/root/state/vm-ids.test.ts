import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { allocateVmId } from './vm-ids';

// Ids near the top of the default range, which the lowest-first allocation of other tests' VMs never reaches.
const RANGE = { first: 65000, last: 65002 };

describe('allocateVmId', () => {
  it.skipIf(process.getuid?.() !== 0)('skips an id a record holds or a process runs as, and finds none when all are taken', async () => {
    const child = spawn('sleep', ['60'], { uid: RANGE.first, gid: RANGE.first, stdio: 'ignore' });
    await once(child, 'spawn');
    try {
      expect(await allocateVmId(RANGE, [])).toBe(RANGE.first + 1);
      expect(await allocateVmId(RANGE, [RANGE.first + 1])).toBe(RANGE.first + 2);
      expect(await allocateVmId(RANGE, [RANGE.first + 1, RANGE.first + 2])).toBeUndefined();
    } finally {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    expect(await allocateVmId(RANGE, [RANGE.first + 1])).toBe(RANGE.first);
  });
});
