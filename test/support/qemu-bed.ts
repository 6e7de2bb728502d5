// What a test file that boots qemu itself needs: the test guest, the accelerator the probe chose, a
// scratch directory, and a list of the qemu processes it spawned, which are killed after the file.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { probeAccelerator, type AccelChoice } from '../../src/root/qemu/accel';
import { testGuest, type TestGuest } from './guest';

export interface QemuBed {
  guest: TestGuest;
  accel: AccelChoice;
  dir: string;
  readonly children: ChildProcess[];
}

/** Registers the file's beforeAll/afterAll; the fields are set once beforeAll has run. */
export function useQemuBed(dirPrefix: string): QemuBed {
  const bed = { children: [] as ChildProcess[] } as QemuBed;
  beforeAll(async () => {
    [bed.guest, bed.accel] = await Promise.all([testGuest(), probeAccelerator()]);
    bed.dir = await mkdtemp(path.join(os.tmpdir(), dirPrefix));
  });
  afterAll(async () => {
    for (const c of bed.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (bed.dir) await rm(bed.dir, { recursive: true, force: true });
  });
  return bed;
}
