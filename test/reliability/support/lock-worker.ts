// A process contending for the helper's state lock (run with `node --import tsx`):
//   lock-worker.ts count DIR N    N times under the lock: read DIR/counter, yield, write it + 1
//   lock-worker.ts stale DIR MS   for MS ms, whenever the lock is free, leave a stale one (dead owner)
//   lock-worker.ts hold DIR MS    take the lock, print "held", keep it MS ms (beating its heartbeat)
// Lost increments mean two processes held the lock at once.
import { openSync, closeSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { withStateLock } from '../../../src/host/state-lock';

const [mode, dir, n] = process.argv.slice(2) as [string, string, string];
const lockPath = path.join(dir, 'lock');
if (mode === 'count') {
  for (let i = 0; i < Number(n); i++) {
    await withStateLock(lockPath, async () => {
      const value = Number(readFileSync(path.join(dir, 'counter'), 'utf8'));
      await new Promise((r) => setImmediate(r));
      writeFileSync(path.join(dir, 'counter'), String(value + 1));
    });
  }
} else if (mode === 'hold') {
  await withStateLock(lockPath, async () => {
    process.stdout.write('held\n');
    await new Promise((r) => setTimeout(r, Number(n)));
  }, { heartbeatMs: 200 });
} else {
  const end = Date.now() + Number(n);
  while (Date.now() < end) {
    try {
      // As a helper killed inside a transaction leaves it: a lock whose owner no longer exists.
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, JSON.stringify({ pid: 2 ** 22 + 1, startTime: '1' }));
      closeSync(fd);
    } catch {
      // held: wait for the next free moment
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}
