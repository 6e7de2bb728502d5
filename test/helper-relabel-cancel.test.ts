import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HelperClient, resolveHelperLaunch } from '../src/user/helper-client';

// A tree relabel cancelled through the real helper: the cancelRelabel verb names the job, the walk stops
// and rolls back, and every label on disk (read back with getfattr) is what it was.
const run = promisify(execFile);
const ORIGINAL = 'unconfined_u:object_r:user_home_t:s0';
const FILES = 24_000;

let dir: string;
let tree: string;
let env: NodeJS.ProcessEnv;
const clients: HelperClient[] = [];
const helper = () => {
  const client = HelperClient.start(resolveHelperLaunch(env), env);
  clients.push(client);
  return client;
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-cancel-'));
  await chmod(dir, 0o755);
  await writeFile(path.join(dir, 'helper.json'), '{}');
  env = { ...process.env, SVIRT_STATE_DIR: path.join(dir, 'state'), SVIRT_HELPER_CONFIG: path.join(dir, 'helper.json'), SVIRT_HELPER_SCRIPT: path.resolve('dist/svirt-helper.js') };
  tree = path.join(dir, 'tree');
  for (let d = 0; d < 60; d++) {
    const sub = path.join(tree, `d${d}`);
    await mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: FILES / 60 }, (_, k) => writeFile(path.join(sub, `f${k}`), '')));
  }
  await run('chcon', ['-R', ORIGINAL, tree]);
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('cancelling a tree relabel in the helper', () => {
  it('stops the walk on cancelRelabel from its requester, puts every label back, and leaves nothing to restore', async () => {
    const client = helper();
    const other = helper();
    let doneAtCancel = -1;
    const answers: Promise<unknown>[] = [];
    client.on('event', (name: string, data: { path: string; done: number }) => {
      if (name !== 'relabel-progress' || data.path !== tree || doneAtCancel >= 0 || data.done === 0) return;
      doneAtCancel = data.done;
      // Another helper session cannot reach this job; its own session can.
      answers.push(other.request('cancelRelabel', { job: 'walk-1' }).then(() => 'cancelled', (e: Error) => e.message));
      answers.push(client.request('cancelRelabel', { job: 'walk-1' }));
    });
    await expect(client.request('relabel', { path: tree, mode: 'shared', job: 'walk-1' })).rejects.toThrow(/cancelled: every label it changed is back/);
    expect(doneAtCancel).toBeGreaterThan(0);
    expect(doneAtCancel).toBeLessThan(FILES);
    const [fromOther, fromOwner] = await Promise.all(answers);
    expect(fromOther).toMatch(/no relabel job walk-1 of yours is running/);
    expect(fromOwner).toEqual({ cancelled: 'walk-1' });
    const { stdout } = await run('getfattr', ['-R', '-h', '-n', 'security.selinux', '--only-values', '--absolute-names', '-e', 'text', tree], { maxBuffer: 64 * 1024 * 1024 });
    const labels = stdout.split(/\0|\n/).map((l) => l.replace(/^"|"$/g, '')).filter((l) => l.length > 0);
    expect(labels.length).toBeGreaterThanOrEqual(FILES);
    expect(labels.filter((l) => l !== ORIGINAL)).toEqual([]);
    // The journal holds nothing for the tree: a restore finds nothing to put back.
    expect(await client.request('relabel', { path: tree, mode: 'restore' })).toMatchObject({ restored: 0, skipped: [] });
  }, 300_000);

  it('refuses a cancel for a job that is not running, naming it', async () => {
    await expect(helper().request('cancelRelabel', { job: 'nothing-here' })).rejects.toThrow(/no relabel job nothing-here of yours is running/);
  });
});
