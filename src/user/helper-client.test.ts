import { describe, expect, it } from 'vitest';
import { HelperClient, HelperRequestError, resolveHelperLaunch } from './helper-client';

describe('HelperClient', () => {
  it('reports a helper that is gone (sudo refused, pkexec dismissed) as helper-exited, also when writing to it fails', async () => {
    // Stands in for a launcher that refuses: it closes its stdin at once (so writes to it fail with EPIPE)
    // and exits a moment later (so the requests are written before the exit is known).
    const client = HelperClient.start({ command: '/bin/sh', args: ['-c', 'exec 0<&-; echo "sudo: a password is required" >&2; sleep 0.3; exit 1'], via: 'launcher' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const answers = await Promise.allSettled(Array.from({ length: 20 }, () => client.request('status')));
    for (const answer of answers) {
      expect(answer.status).toBe('rejected');
      const reason = (answer as PromiseRejectedResult).reason as HelperRequestError;
      expect(reason).toBeInstanceOf(HelperRequestError);
      expect(reason.code).toBe('helper-exited');
      expect(reason.message).toMatch(/exited \(code 1\): sudo: a password is required/);
    }
    await client.close();
  });
});

describe('resolveHelperLaunch', () => {
  it('runs the helper without a JIT (--jitless: no execmem for SELinux to deny), started directly or through a launcher', () => {
    const env = { SVIRT_HELPER_SCRIPT: '/x/svirt-helper.js' };
    expect(resolveHelperLaunch(env, 0)).toEqual({ command: process.execPath, args: ['--jitless', '/x/svirt-helper.js'], via: 'direct' });
    expect(resolveHelperLaunch({ ...env, SVIRT_HELPER_LAUNCHER: 'sudo -n' }, 1000)).toEqual({
      command: 'sudo', args: ['-n', process.execPath, '--jitless', '/x/svirt-helper.js'], via: 'launcher',
    });
  });
});
