import type * as ChildProcess from 'node:child_process';
import type * as Fs from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { exec as sudoPromptExec } from 'sudo-prompt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeHelperExit, HelperClient, INSTALLED_HELPER_PATH } from '../../src/user/helper-client';
import {
  detectHelperInstall, HelperInstallError, installCommand, installExplanation, installHelper, INSTALLED_HELPER_SCRIPT, INSTALLED_LABEL_TOOL, INSTALLED_INSTALL_SCRIPT,
  INSTALLED_POLICY_PATH, INSTALLED_RUNTIME_DIR, resolveHelperSources, shellQuote, sudoPromptCommand, SUDO_PROMPT_NAME, UnsafePathError,
  type HelperSources, type SudoExec,
} from '../../src/user/helper-install';
import { APP_DIR, EXECUTABLE, fakePackageTree, repoPath, run } from './support';

// sudo-prompt is driven for real; only its two touch points with the system are replaced: the check that
// /usr/bin/pkexec exists, and pkexec itself (a prefix swapped in the command it builds, see withFakePkexec).
const require = createRequire(import.meta.url);
const childProcess = require('node:child_process') as typeof ChildProcess;
const fs = require('node:fs') as typeof Fs;

const PKEXEC_PREFIX = '"/usr/bin/pkexec" --disable-internal-agent ';
let scratch: string;
const commands: string[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'svirt-install-'));
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/**
 * Runs `work` while sudo-prompt believes pkexec exists, and with `replacement` in the place of
 * `pkexec --disable-internal-agent` in the command string it hands to /bin/sh.
 */
async function withFakePkexec<T>(replacement: string, work: () => Promise<T>): Promise<T> {
  const realStat = fs.stat;
  const realExec = childProcess.exec;
  const fakeStat = ((p: Fs.PathLike, callback: (err: NodeJS.ErrnoException | null, stats?: Fs.Stats) => void) => {
    if (p === '/usr/bin/pkexec') return callback(null, {} as Fs.Stats);
    if (p === '/usr/bin/kdesudo') return callback(Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
    return (realStat as (p: Fs.PathLike, cb: typeof callback) => void)(p, callback);
  }) as typeof fs.stat;
  const fakeExec = ((command: string, options: object, callback: (error: Error | null, stdout: string, stderr: string) => void) => {
    commands.push(command);
    if (!command.includes(PKEXEC_PREFIX)) throw new Error(`sudo-prompt built an unexpected command: ${command}`);
    return realExec(command.replace(PKEXEC_PREFIX, replacement), options, callback);
  }) as typeof childProcess.exec;
  Object.assign(fs, { stat: fakeStat });
  Object.assign(childProcess, { exec: fakeExec });
  try {
    return await work();
  } finally {
    Object.assign(fs, { stat: realStat });
    Object.assign(childProcess, { exec: realExec });
  }
}

function sudo(command: string): Promise<{ error?: Error; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    sudoPromptExec(command, { name: SUDO_PROMPT_NAME }, (error, stdout, stderr) => resolve({ ...(error ? { error } : {}), stdout: String(stdout ?? ''), stderr: String(stderr ?? '') }));
  });
}

/** A path whose directory names are shell syntax; if any of it ran, `${scratch}/PWNED*` would appear. */
async function hostileDir(name: string): Promise<string> {
  const dir = path.join(scratch, name, `it's "quoted" $(touch ${scratch}/PWNED1) \`touch ${scratch}/PWNED2\` $HOME \\ \\" \\$ ! * ? ; | & > < ~ ünï`);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function pwned(): Promise<string[]> {
  const here = [...await readdir(scratch), ...await readdir(process.cwd())];
  return here.filter((n) => n.startsWith('PWNED'));
}

const CONTROL = /[\u0000-\u001f\u007f]/; // eslint-disable-line no-control-regex
const SPECIALS = ["'", '"', '$', '`', '\\', '!', '*', '?', ';', '|', '&', '(', ')', '{', '}', '[', ']', '<', '>', '~', '#', ' ', '%', '=', '-', '^', 'é', '\u{1F600}'];

describe('the install command sudo-prompt runs', () => {
  it('reaches bash as exactly the words it was built from, whatever they contain (property, through sudo-prompt\'s own quoting)', async () => {
    const word = fc.string({ unit: fc.oneof(fc.constantFrom(...SPECIALS), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), maxLength: 24 })
      .filter((s) => !CONTROL.test(s));
    await withFakePkexec('', () => fc.assert(fc.asyncProperty(fc.array(word, { maxLength: 6 }), async (words) => {
      const result = await sudo(sudoPromptCommand(['/usr/bin/printf', '%s\\0', ...words]));
      expect(result.error).toBeUndefined();
      expect(result.stdout.split('\0').slice(0, -1)).toEqual(words.length ? words : ['']);
    }), { numRuns: 60 }));
    expect(await pwned()).toEqual([]);
    // Each run starts a shell: seconds each on a loaded 2-core machine. A timeout here would leave the fakes
    // in place under the next test, so the bound is generous.
  }, 400_000);

  it('hands install-helper.sh hostile absolute paths unchanged, and none of their shell syntax runs', async () => {
    const dir = await hostileDir('argv');
    const script = path.join(dir, 'install-helper.sh');
    await writeFile(script, 'printf "%s\\0" "$@"\n');
    const sources: HelperSources = {
      installScript: script, helperScript: path.join(dir, 'svirt-helper.js'), policy: path.join(dir, "org'.policy"),
      selinuxDir: path.join(dir, 'se $(linux)'), apparmorDir: path.join(dir, 'aa `x`'), runtime: path.join(dir, 'svirt manager'), copyRuntime: true,
    };
    const command = installCommand(sources);
    expect(command.startsWith("'/bin/sh' ")).toBe(true); // sudo-prompt refuses commands starting with "sudo"
    const result = await withFakePkexec('', () => sudo(command));
    expect(result.error).toBeUndefined();
    expect(result.stdout.split('\0').slice(0, -1)).toEqual([
      'install', '--runtime', sources.runtime, '--helper-script', sources.helperScript, '--policy', sources.policy,
      '--selinux-dir', sources.selinuxDir, '--apparmor-dir', sources.apparmorDir, '--copy-runtime',
    ]);
    expect(await pwned()).toEqual([]);
  });

  it('refuses newlines and other control characters, relative paths and dot segments', () => {
    const ok: HelperSources = {
      installScript: '/r/install-helper.sh', helperScript: '/r/svirt-helper.js', policy: '/r/p.policy', selinuxDir: '/r/selinux', apparmorDir: '/r/apparmor', runtime: '/opt/x/y', copyRuntime: false,
    };
    for (const bad of ['/r/a\nb', '/r/a\rb', '/r/a\u0000b', '/r/a\tb', '/r/a\u001bb', 'r/relative', '/r/../etc/shadow', '/r/./x']) {
      expect(() => installCommand({ ...ok, helperScript: bad }), JSON.stringify(bad)).toThrow(UnsafePathError);
      expect(() => installCommand({ ...ok, runtime: bad }), JSON.stringify(bad)).toThrow(UnsafePathError);
      expect(() => installCommand({ ...ok, selinuxDir: bad }), JSON.stringify(bad)).toThrow(UnsafePathError);
      expect(() => installCommand({ ...ok, apparmorDir: bad }), JSON.stringify(bad)).toThrow(UnsafePathError);
    }
    expect(() => shellQuote('a\nb')).toThrow(/newline/);
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(installCommand(ok)).toBe("'/bin/sh' '/r/install-helper.sh' 'install' '--runtime' '/opt/x/y' '--helper-script' '/r/svirt-helper.js' '--policy' '/r/p.policy' '--selinux-dir' '/r/selinux' '--apparmor-dir' '/r/apparmor'");
  });
});

describe('installHelper', () => {
  const savedTmpdir = process.env.TMPDIR;
  afterEach(() => {
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
  });

  /** An unpackaged app in a hostile directory, run by a runtime that is not root's (so it is copied). */
  async function hostileApp(name: string): Promise<HelperSources> {
    const dir = await hostileDir(name);
    await mkdir(path.join(dir, 'runtime'));
    const runtime = path.join(dir, 'runtime', 'electron');
    await writeFile(runtime, '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(path.join(dir, 'runtime', 'icudtl.dat'), 'data');
    await mkdir(path.join(dir, 'runtime', 'resources'));
    await writeFile(path.join(dir, 'runtime', 'resources', 'app.asar'), 'the app, not needed by the helper');
    await mkdir(path.join(dir, 'assets', 'linux'), { recursive: true });
    await mkdir(path.join(dir, 'assets', 'polkit'), { recursive: true });
    await mkdir(path.join(dir, 'dist'));
    await cp(repoPath('assets/selinux'), path.join(dir, 'assets/selinux'), { recursive: true });
    await cp(repoPath('assets/apparmor'), path.join(dir, 'assets/apparmor'), { recursive: true });
    await writeFile(path.join(dir, 'assets/linux/install-helper.sh'), await readFile(repoPath('assets/linux/install-helper.sh')));
    await writeFile(path.join(dir, 'assets/polkit/org.svirtmanager.helper.policy'), await readFile(repoPath('assets/polkit/org.svirtmanager.helper.policy')));
    await writeFile(path.join(dir, 'dist/svirt-helper.js'), await readFile(repoPath('dist/svirt-helper.js')));
    await writeFile(path.join(dir, 'dist/svirt-label-tree'), await readFile(repoPath('dist/svirt-label-tree')), { mode: 0o755 });
    const sources = await resolveHelperSources({ packaged: false, appRoot: dir, execPath: runtime });
    expect(sources.copyRuntime).toBe(true);
    return sources;
  }

  it('stages the app\'s files, runs install-helper.sh through sudo-prompt, and checks the result (hostile paths and TMPDIR)', async () => {
    const sources = await hostileApp('e2e');
    const root = await mkdtemp(path.join(scratch, 'root-'));
    await chmod(root, 0o755);
    process.env.TMPDIR = await hostileDir('tmp');
    // pkexec clears the environment; this stand-in keeps it and points install-helper.sh at a scratch root.
    await withFakePkexec(`/usr/bin/env DESTDIR=${shellQuote(root)} `, () => installHelper(sources, { root }));

    expect(await detectHelperInstall({ root, bundledHelperScript: sources.helperScript })).toEqual({ installed: true, runtime: `${INSTALLED_RUNTIME_DIR}/electron` });
    expect(await readFile(`${root}${INSTALLED_RUNTIME_DIR}/icudtl.dat`, 'utf8')).toBe('data');
    expect(await readdir(`${root}${INSTALLED_RUNTIME_DIR}/resources`)).toEqual([]); // no app.asar
    expect(commands.at(-1)).toContain('/bin/bash -c "echo SUDOPROMPT; ');
    expect(await readdir(process.env.TMPDIR)).toEqual([]); // the staging directory is gone
    expect(await pwned()).toEqual([]);
  });

  it('stages the runtime without following its links, and refuses one pointing outside it before asking for a password', async () => {
    const sources = await hostileApp('links');
    const runtimeDir = path.dirname(sources.runtime);
    await writeFile(path.join(scratch, 'secret.so'), 'a file the user may change later');
    await symlink(path.join(scratch, 'secret.so'), path.join(runtimeDir, 'libffmpeg.so'));
    process.env.TMPDIR = await mkdtemp(path.join(scratch, 'tmp-'));
    const asked: string[] = [];
    const exec: SudoExec = (command, _options, callback) => {
      asked.push(command);
      callback(undefined, '', '');
    };
    await expect(installHelper(sources, { exec, root: scratch })).rejects.toThrow(
      new RegExp(`libffmpeg.so is a link to ${scratch}/secret.so, outside the runtime directory; root must not run files a user can change`),
    );
    expect(asked).toEqual([]);
    expect(await readdir(process.env.TMPDIR)).toEqual([]);
  });

  it('turns sudo-prompt\'s failures into messages a user can act on, and leaves nothing staged', async () => {
    const sources = await hostileApp('failures');
    process.env.TMPDIR = await mkdtemp(path.join(scratch, 'tmp-'));
    const cases: [string, RegExp][] = [
      // pkexec's own exits, seen through sudo-prompt (no SUDOPROMPT marker: never elevated).
      ["/bin/sh -c 'exit 126' sh ", /administrator password was not given/],
      ["/bin/sh -c 'echo \"Error executing command as another user: No authentication agent found.\" >&2; exit 127' sh ", /no polkit authentication agent/],
      // Elevated, but the install script failed: its own words.
      ["/bin/sh -c 'echo SUDOPROMPT; echo \"install-helper.sh: /opt/x is not owned by root\" >&2; exit 1' sh ", /Installing the helper failed: install-helper\.sh: \/opt\/x is not owned by root/],
    ];
    for (const [replacement, message] of cases) {
      const failure = await withFakePkexec(replacement, () => installHelper(sources, { root: scratch }).then(() => undefined, (e: Error) => e));
      expect(failure).toBeInstanceOf(HelperInstallError);
      expect(failure?.message).toMatch(message);
    }
    expect(await readdir(process.env.TMPDIR)).toEqual([]);
  });

  it('uses the name and the exact command it was built for; a run that installs nothing is an error', async () => {
    const sources = await hostileApp('injected');
    const seen: { command: string; name: string }[] = [];
    const exec: SudoExec = (command, options, callback) => {
      seen.push({ command, name: options.name });
      callback(undefined, '', '');
    };
    const root = await mkdtemp(path.join(scratch, 'empty-root-'));
    await expect(installHelper(sources, { exec, root })).rejects.toThrow(/still not usable after installing it: \/ does not exist|does not exist/);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.name).toBe('sVirt Manager');
    expect(seen[0]?.command).toMatch(/^'\/bin\/sh' '.*install-helper\.sh' 'install' '--runtime' /);
  });
});

describe('detectHelperInstall', () => {
  async function installedRoot(): Promise<string> {
    const root = await mkdtemp(path.join(scratch, 'detect-'));
    await chmod(root, 0o755);
    const app = await fakePackageTree(root);
    const result = await run('/bin/sh', [repoPath('assets/linux/install-helper.sh'), 'install', '--runtime', `${APP_DIR}/${EXECUTABLE}`,
      '--helper-script', path.join(app, 'resources/svirt-helper.js'), '--policy', path.join(app, 'resources/org.svirtmanager.helper.policy')], { env: { ...process.env, DESTDIR: root } });
    expect(result.stderr).toBe('');
    return root;
  }

  it('says installed only for root-owned files nobody else can change, with our action naming our helper', async () => {
    const root = await installedRoot();
    expect(await detectHelperInstall({ root })).toEqual({ installed: true, runtime: `${APP_DIR}/${EXECUTABLE}` });
    expect(await detectHelperInstall({ root: await mkdtemp(path.join(scratch, 'nothing-')) })).toMatchObject({ installed: false, problem: 'missing' });

    const spoilers: [string, (root: string) => Promise<unknown>, string, RegExp][] = [
      ['policy writable by all', (r) => chmod(`${r}${INSTALLED_POLICY_PATH}`, 0o666), 'untrusted', /writable by its group or others/],
      ['policy owned by a user', (r) => chown(`${r}${INSTALLED_POLICY_PATH}`, 1000, 1000), 'untrusted', /belongs to uid 1000/],
      ['helper directory writable by all', (r) => chmod(`${r}/usr/libexec/svirt-manager`, 0o777), 'untrusted', /\/usr\/libexec\/svirt-manager is writable/],
      ['wrapper replaced by a link', async (r) => {
        await rm(`${r}${INSTALLED_HELPER_PATH}`);
        await symlink('/bin/true', `${r}${INSTALLED_HELPER_PATH}`);
      }, 'untrusted', /symbolic link/],
      ['helper program missing', (r) => rm(`${r}${INSTALLED_HELPER_SCRIPT}`), 'missing', /svirt-helper\.mjs does not exist/],
      ['tree relabeler writable by all', (r) => chmod(`${r}${INSTALLED_LABEL_TOOL}`, 0o777), 'untrusted', /svirt-label-tree is writable/],
      ['policy for another action', async (r) => writeFile(`${r}${INSTALLED_POLICY_PATH}`, (await readFile(`${r}${INSTALLED_POLICY_PATH}`, 'utf8')).replace('id="org.svirtmanager.helper"', 'id="org.example.other"')), 'mismatch', /defines org\.example\.other/],
      ['policy naming another program', async (r) => writeFile(`${r}${INSTALLED_POLICY_PATH}`, (await readFile(`${r}${INSTALLED_POLICY_PATH}`, 'utf8')).replace(`>${INSTALLED_HELPER_PATH}<`, '>/usr/bin/bash<')), 'mismatch', /names \/usr\/bin\/bash/],
      ['runtime gone', (r) => rm(`${r}${APP_DIR}/${EXECUTABLE}`), 'missing', /svirt-manager does not exist/],
      ['wrapper not written by install-helper.sh', (r) => writeFile(`${r}${INSTALLED_HELPER_PATH}`, '#!/bin/sh\nexec /bin/true\n'), 'mismatch', /not written by install-helper\.sh/],
    ];
    for (const [what, spoil, problem, detail] of spoilers) {
      const r = await installedRoot();
      await spoil(r);
      const status = await detectHelperInstall({ root: r });
      expect(status, what).toMatchObject({ installed: false, problem });
      expect(status.installed ? '' : status.detail, what).toMatch(detail);
    }
  });

  it('says outdated when the installed helper is another build than the app\'s', async () => {
    const root = await installedRoot();
    const other = path.join(scratch, 'other-helper.js');
    await writeFile(other, '// another version\n');
    expect(await detectHelperInstall({ root, bundledHelperScript: other })).toMatchObject({ installed: false, problem: 'outdated' });
    expect(await detectHelperInstall({ root, bundledHelperScript: repoPath('dist/svirt-helper.js') })).toMatchObject({ installed: true });
  });
});

describe('what the app shows and where it takes the files from', () => {
  it('packaged apps install from their resources, checkouts from assets/ and dist/; only a runtime users can change is copied', async () => {
    expect(await resolveHelperSources({ packaged: true, resourcesPath: '/opt/sVirt Manager/resources', execPath: process.execPath })).toEqual({
      installScript: '/opt/sVirt Manager/resources/install-helper.sh',
      helperScript: '/opt/sVirt Manager/resources/svirt-helper.js',
      policy: '/opt/sVirt Manager/resources/org.svirtmanager.helper.policy',
      selinuxDir: '/opt/sVirt Manager/resources/selinux',
      apparmorDir: '/opt/sVirt Manager/resources/apparmor',
      runtime: process.execPath,
      copyRuntime: false, // root's own node (/usr/bin/node) on this machine
    });
    const dev = await resolveHelperSources({ packaged: false, appRoot: '/src/app', execPath: path.join(scratch, 'electron') });
    expect(dev).toMatchObject({
      installScript: '/src/app/assets/linux/install-helper.sh', helperScript: '/src/app/dist/svirt-helper.js', selinuxDir: '/src/app/assets/selinux', apparmorDir: '/src/app/assets/apparmor', copyRuntime: true,
    });
  });

  it('explains what goes where and why before asking for the password', () => {
    const text = installExplanation({ copyRuntime: true });
    for (const p of [INSTALLED_HELPER_PATH, INSTALLED_HELPER_SCRIPT, INSTALLED_POLICY_PATH, INSTALLED_RUNTIME_DIR, INSTALLED_INSTALL_SCRIPT]) expect(text).toContain(p);
    expect(text).toMatch(/labels VM disk images with SELinux/);
    expect(text).toMatch(/never runs as root/);
    expect(installExplanation({ copyRuntime: false })).not.toContain(INSTALLED_RUNTIME_DIR);
  });
});

describe('pkexec\'s exit codes', () => {
  it('126 and 127 read as dismissed and not authorized, only when pkexec started the helper', () => {
    expect(describeHelperExit('pkexec', 126, null, '')).toMatch(/Authentication was dismissed/);
    expect(describeHelperExit('pkexec', 127, null, 'Error executing command as another user: Not authorized')).toMatch(/Not authorized: polkit refused/);
    expect(describeHelperExit('launcher', 126, null, 'boom')).toBe('the svirt helper exited (code 126): boom');
    expect(describeHelperExit('direct', 1, null, 'svirt-helper: must run as root\n')).toBe('the svirt helper exited (code 1): svirt-helper: must run as root');
  });

  it('a pending request of a client whose pkexec ended 126/127 fails with that message', async () => {
    for (const [code, message] of [[126, /Authentication was dismissed/], [127, /Not authorized/]] as const) {
      const client = HelperClient.start({ command: '/bin/sh', args: ['-c', `exit ${code}`], via: 'pkexec' });
      await client.exited;
      await expect(client.request('status')).rejects.toMatchObject({ code: 'helper-exited', message: expect.stringMatching(message) });
    }
  });
});
