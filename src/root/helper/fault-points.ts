/**
 * Crash-test hooks: `SVIRT_FAULT_AT=<point>` makes the helper SIGKILL itself when it reaches that
 * point, so tests can prove that a helper dying at any step of start and stop is reconciled by the
 * next one. Ignored when started by pkexec (a user's environment must not steer a root process).
 */
export const FAULT_POINTS = [
  'after-allocation',
  'mid-relabel',
  'after-exec',
  'after-keeper',
  'before-stop-cleanup',
  'mid-restore',
  'mid-tree-walk',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

const armed = process.env.PKEXEC_UID === undefined ? process.env.SVIRT_FAULT_AT : undefined;

export function faultPoint(point: FaultPoint): void {
  if (armed === point) process.kill(process.pid, 'SIGKILL');
}
