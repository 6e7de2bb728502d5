import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HelperClient, INSTALLED_HELPER_PATH } from '../../src/user/helper-client';
import { fakePackageTree, repoPath, run, runOk, writeExpandedScripts, type RunResult } from './support';

// Privilege separation for real: two unprivileged users, the app's client side running as one of them,
// and the root helper elevated for that user only (sudo standing in for pkexec, which needs a polkit
// agent). Then the helper as pkexec starts it: the installed wrapper with PKEXEC_UID.

const ORIGINAL = 'unconfined_u:object_r:user_home_t:s0';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const HELPER = repoPath('dist/svirt-helper.js');
const NODE = process.execPath;

const suffix = randomBytes(3).toString('hex');
const userA = `svt-a-${suffix}`; // may use the helper through sudo
const userB = `svt-b-${suffix}`; // another user: no sudo rule
const sudoersFile = `/etc/sudoers.d/svirt-test-${suffix}`;
const users: string[] = [];
let uidA: number;
let uidB: number;
let dir: string;
let launcher: string;
let clientScript: string;
let stateDir: string;
let diskA: string;
let diskB: string;
let rootFile: string;

async function uidOf(user: string): Promise<number> {
  return Number((await runOk('id', ['-u', user])).stdout.trim());
}

async function getLabel(file: string): Promise<string | null> {
  const result = await run('getfattr', ['--absolute-names', '--only-values', '-n', 'security.selinux', file]);
  return result.code === 0 ? result.stdout.replace(/\0$/, '') : null;
}

async function setLabel(file: string, label: string): Promise<void> {
  await runOk('setfattr', ['-n', 'security.selinux', '-v', label, file]);
}

/** A command as `user` (runuser: no password, no PAM session; the environment is ours plus the user's HOME). */
function asUser(user: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return run('runuser', ['-u', user, '--', command, ...args], { env: { PATH: process.env.PATH, ...env }, cwd: dir });
}

interface Answer {
  ok: boolean;
  result?: unknown;
  code?: string;
  message?: string;
}

/** The app's client side as `user`, started with SVIRT_HELPER_LAUNCHER='sudo -n <launcher>'. */
async function clientAs(user: string, steps: { verb: string; args?: object }[]): Promise<{ uid: number; launch: { command: string; args: string[]; via: string }; answers: Answer[] }> {
  const result = await asUser(user, NODE, [clientScript, JSON.stringify(steps)], {
    SVIRT_HELPER_LAUNCHER: `sudo -n ${launcher}`,
    SVIRT_HELPER_SCRIPT: HELPER,
  });
  if (result.code !== 0) throw new Error(`client as ${user} exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as Awaited<ReturnType<typeof clientAs>>;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-privsep-'));
  await chmod(dir, 0o755);
  for (const user of [userA, userB]) {
    await runOk('useradd', ['--create-home', '--shell', '/usr/sbin/nologin', user]);
    users.push(user);
  }
  [uidA, uidB] = await Promise.all([uidOf(userA), uidOf(userB)]);

  // The helper's private state and settings, root-owned, as on an installed system.
  stateDir = path.join(dir, 'state');
  const config = path.join(dir, 'helper.json');
  await writeFile(config, '{}\n', { mode: 0o644 });

  // What sudo may run for userA: this one root-owned launcher with exactly node and the helper as its
  // arguments; the launcher fixes the helper's environment (sudo's env_reset drops the caller's anyway).
  launcher = path.join(dir, 'launch-helper');
  await writeFile(launcher, `#!/bin/sh
[ "$#" -eq 3 ] && [ "$1" = '${NODE}' ] && [ "$2" = --jitless ] && [ "$3" = '${HELPER}' ] || { echo "launch-helper: unexpected arguments" >&2; exit 2; }
exec env SVIRT_STATE_DIR='${stateDir}' SVIRT_HELPER_CONFIG='${config}' "$1" "$2" "$3"
`, { mode: 0o755 });
  const rule = path.join(dir, 'sudoers');
  await writeFile(rule, `${userA} ALL=(root) NOPASSWD: ${launcher} ${NODE} --jitless ${HELPER}\n`, { mode: 0o440 });
  const check = await run('visudo', ['-c', '-f', rule]);
  expect(check.code, check.stdout + check.stderr).toBe(0);
  await runOk('install', ['-o', 'root', '-g', 'root', '-m', '0440', rule, sudoersFile]);

  // The app's client side, bundled into one file the test users can read.
  clientScript = path.join(dir, 'client.mjs');
  await build({
    entryPoints: [repoPath('test/packaging/fixtures/unprivileged-client.ts')], outfile: clientScript, bundle: true, platform: 'node',
    format: 'esm', target: 'node20', logLevel: 'warning', banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  await chmod(clientScript, 0o644);

  // A disk image in each user's home, owned by that user, and a root-owned file.
  diskA = `/home/${userA}/disk.img`;
  diskB = `/home/${userB}/disk.img`;
  rootFile = path.join(dir, 'root-owned.img');
  for (const [file, user] of [[diskA, userA], [diskB, userB]] as const) {
    const made = await asUser(user, '/usr/bin/truncate', ['-s', '1M', file]);
    expect(made.code, made.stderr).toBe(0);
  }
  await writeFile(rootFile, '');
  for (const file of [diskA, diskB, rootFile]) await setLabel(file, ORIGINAL);
}, 120_000);

afterAll(async () => {
  await rm(sudoersFile, { force: true });
  for (const user of users) {
    await run('pkill', ['-KILL', '-u', user]);
    await run('userdel', ['--remove', user]);
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the unprivileged side alone', () => {
  it('cannot write an SELinux label on a file it does not own (root\'s, or another user\'s)', async () => {
    for (const file of [rootFile, diskB]) {
      const result = await asUser(userA, 'setfattr', ['-n', 'security.selinux', '-v', SHARED, file]);
      expect(result.code, file).not.toBe(0);
      expect(result.stderr).toMatch(/Operation not permitted|Permission denied/);
      expect(await getLabel(file)).toBe(ORIGINAL);
    }
  });

  it('cannot run the helper itself: it refuses to run without root', async () => {
    const result = await asUser(userA, NODE, [HELPER]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/svirt-helper: must run as root/);
  });

  it('gets from sudo exactly the helper, nothing else; the other user gets nothing', async () => {
    expect((await asUser(userA, 'sudo', ['-n', '/usr/bin/id', '-u'])).code).not.toBe(0);
    expect((await asUser(userA, 'sudo', ['-n', launcher, NODE, '/tmp/other.js'])).code).not.toBe(0);
    expect((await asUser(userA, 'sudo', ['-n', NODE, HELPER])).code).not.toBe(0);
    const other = await clientAs(userB, [{ verb: 'status' }]);
    expect(other.uid).toBe(uidB);
    expect(other.answers[0]).toMatchObject({ ok: false, code: 'helper-exited', message: expect.stringMatching(/sudo/) });
  });
});

describe('the helper, elevated through sudo for one user', () => {
  it('runs as root for that user: the client is unprivileged, launched via sudo -n', async () => {
    const session = await clientAs(userA, [{ verb: 'status' }]);
    expect(session.uid).toBe(uidA);
    expect(session.launch).toEqual({ command: 'sudo', args: ['-n', launcher, NODE, '--jitless', HELPER], via: 'launcher' });
    expect(session.answers[0]).toMatchObject({ ok: true });
  });

  it('relabels that user\'s own image (shared), and the label is on disk; restore puts it back', async () => {
    const session = await clientAs(userA, [{ verb: 'relabel', args: { path: diskA, mode: 'shared' } }]);
    expect(session.answers[0], JSON.stringify(session.answers[0])).toMatchObject({ ok: true });
    expect(await getLabel(diskA)).toBe(SHARED);
    const restored = await clientAs(userA, [{ verb: 'relabel', args: { path: diskA, mode: 'restore' } }]);
    expect(restored.answers[0], JSON.stringify(restored.answers[0])).toMatchObject({ ok: true });
    expect(await getLabel(diskA)).toBe(ORIGINAL);
  });

  it('refuses the other user\'s image and root\'s file, leaving their labels alone', async () => {
    const session = await clientAs(userA, [
      { verb: 'relabel', args: { path: diskB, mode: 'shared' } },
      { verb: 'relabel', args: { path: diskB, mode: 'readonly' } },
      { verb: 'relabel', args: { path: rootFile, mode: 'shared' } },
    ]);
    expect(session.answers[0]).toMatchObject({ ok: false, code: 'refused', message: expect.stringContaining(`belongs to uid ${uidB}, not to the requesting user (uid ${uidA})`) });
    expect(session.answers[1]).toMatchObject({ ok: false, code: 'refused' });
    expect(session.answers[2]).toMatchObject({ ok: false, code: 'refused', message: expect.stringContaining('belongs to uid 0') });
    expect(await getLabel(diskB)).toBe(ORIGINAL);
    expect(await getLabel(rootFile)).toBe(ORIGINAL);
  });

  it('keeps its state where the user cannot write', async () => {
    const st = await stat(stateDir);
    expect([st.uid, (st.mode & 0o777).toString(8)]).toEqual([0, '700']);
    expect((await asUser(userA, 'touch', [path.join(stateDir, 'x')])).code).not.toBe(0);
    expect((await asUser(userA, 'ls', [stateDir])).code).not.toBe(0);
  });
});

describe('the helper as pkexec starts it (the installed wrapper, in a private mount namespace)', () => {
  let root: string;
  let marker: string;
  let evil: string;

  beforeAll(async () => {
    // A package installed into a scratch root, its Electron replaced by node (ELECTRON_RUN_AS_NODE=1 is
    // then meaningless, the rest is the same); bind-mounted over /opt and /usr/libexec in a namespace,
    // with a fresh /var/lib: under PKEXEC_UID the helper ignores SVIRT_STATE_DIR and uses /var/lib/svirt-manager.
    root = path.join(dir, 'root');
    await runOk('install', ['-d', '-m', '0755', root]);
    await fakePackageTree(root, { runtime: NODE });
    const scripts = await writeExpandedScripts(dir);
    await runOk('/bin/sh', [scripts.afterInstall, 'configure'], { env: { ...process.env, DESTDIR: root } });
    marker = path.join(dir, 'node-options-ran');
    evil = path.join(dir, 'evil.cjs');
    await writeFile(evil, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`, { mode: 0o644 });
  }, 120_000);

  const NAMESPACE = [
    '--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
    'set -e; mount --bind "$1/opt" /opt; mount --bind "$1/usr/libexec" /usr/libexec; mount -t tmpfs -o mode=0755 tmpfs /var/lib; shift; exec "$@"',
    'sh',
  ];

  function startInstalled(env: NodeJS.ProcessEnv): HelperClient {
    return HelperClient.start({ command: 'unshare', args: [...NAMESPACE, root, INSTALLED_HELPER_PATH], via: 'pkexec' }, env);
  }

  it('acts for PKEXEC_UID: that user\'s file yes, another user\'s no; the caller\'s environment does not reach it', async () => {
    const env = {
      PATH: process.env.PATH, PKEXEC_UID: String(uidA),
      // None of this may reach a root Node: pkexec clears it, and the wrapper starts from an empty environment.
      NODE_OPTIONS: `--require ${evil}`, SVIRT_STATE_DIR: path.join(dir, 'user-chosen-state'), SVIRT_HELPER_CONFIG: path.join(dir, 'user-config.json'),
    };
    await writeFile(env.SVIRT_HELPER_CONFIG, JSON.stringify({ pools: [{ path: '/home', groups: ['users'], shared: true }] })); // would make every home a pool
    const helper = startInstalled(env);
    try {
      await expect(helper.request('status')).resolves.toMatchObject({ selinux: expect.any(String) });
      await expect(helper.request('relabel', { path: diskB, mode: 'shared' })).rejects.toMatchObject({
        code: 'refused', message: expect.stringContaining(`belongs to uid ${uidB}, not to the requesting user (uid ${uidA})`),
      });
      expect(await getLabel(diskB)).toBe(ORIGINAL);
      await expect(helper.request('relabel', { path: diskA, mode: 'shared' })).resolves.toBeDefined();
      expect(await getLabel(diskA)).toBe(SHARED);
      await helper.request('relabel', { path: diskA, mode: 'restore' });
      expect(await getLabel(diskA)).toBe(ORIGINAL);
    } finally {
      await helper.close();
    }
    await expect(readFile(marker)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(env.SVIRT_STATE_DIR)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('takes no arguments (pkexec would pass any a user adds, such as --console-keeper)', async () => {
    const result = await run('unshare', [...NAMESPACE, root, INSTALLED_HELPER_PATH, '--console-keeper', '--pid-file', '/etc/shadow']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/takes no arguments/);
  });
});

describe('the helper program', () => {
  it('refuses to run as nobody (runuser) or under a dropped uid (setpriv), before touching anything', async () => {
    const copy = path.join(dir, 'svirt-helper.js');
    await copyFile(HELPER, copy);
    await chmod(copy, 0o644);
    const env = { PATH: process.env.PATH, SVIRT_STATE_DIR: path.join(dir, 'nobody-state') };
    for (const result of [
      await run('runuser', ['-u', 'nobody', '--', NODE, copy], { env }),
      await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', NODE, copy], { env }),
    ]) {
      expect(result.code).toBe(1);
      expect(result.stderr).toBe('svirt-helper: must run as root; the app starts it through pkexec (polkit action org.svirtmanager.helper)\n');
    }
    await expect(stat(env.SVIRT_STATE_DIR)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
