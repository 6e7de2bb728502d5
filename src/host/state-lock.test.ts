import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { isProcessAlive, processStartTime } from './state-lock';

const procState = (pid: number): string | undefined => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').slice(-200).split(') ').pop()?.split(' ')[0];
  } catch {
    return undefined;
  }
};

describe('process liveness', () => {
  it('counts a running process as alive, with its start time', () => {
    const startTime = processStartTime(process.pid);
    expect(startTime).toMatch(/^\d+$/);
    expect(isProcessAlive({ pid: process.pid, startTime: startTime! })).toBe(true);
  });

  it('counts a zombie (exited, not yet reaped) as gone', async () => {
    // sh starts a child that exits at once, then becomes `sleep`, which never reaps it: a zombie for 30 s.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [line] = (await once(parent.stdout.setEncoding('utf8'), 'data')) as [string];
      const zombie = Number(line.trim());
      for (let i = 0; i < 200 && procState(zombie) !== 'Z'; i++) await sleep(25);
      expect(procState(zombie)).toBe('Z');
      expect(processStartTime(zombie)).toBeUndefined();
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
