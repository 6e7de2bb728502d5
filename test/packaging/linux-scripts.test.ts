import { chmod, chown, lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALLED_HELPER_PATH } from '../../src/user/helper-client';
import {
  detectHelperInstall, INSTALLED_HELPER_SCRIPT, INSTALLED_LABEL_TOOL, INSTALLED_INSTALL_SCRIPT, INSTALLED_POLICY_PATH, INSTALLED_RUNTIME_DIR, wrapperRuntime,
} from '../../src/user/helper-install';
import { APP_DIR, EXECUTABLE, fakePackageTree, ownerMode, repoPath, run, writeExpandedScripts } from './support';

// The deb/rpm maintainer scripts and install-helper.sh, run as root against scratch roots (DESTDIR).
let scratch: string;
let scripts: { afterInstall: string; afterRemove: string };
/** PATH directories holding an `unshare` that fails or succeeds: chrome-sandbox's mode depends on it. */
let noUserns: string;
let userns: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'svirt-pkg-'));
  scripts = await writeExpandedScripts(scratch);
  noUserns = path.join(scratch, 'no-userns');
  userns = path.join(scratch, 'userns');
  for (const [dir, code] of [[noUserns, 1], [userns, 0]] as const) {
    await mkdir(dir);
    await writeFile(path.join(dir, 'unshare'), `#!/bin/sh\nexit ${code}\n`, { mode: 0o755 });
  }
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let rootCount = 0;
async function newRoot(): Promise<string> {
  const root = path.join(scratch, `root-${rootCount++}`);
  await mkdir(root, { mode: 0o755 });
  return root;
}

const env = (root: string, pathFirst?: string) => ({
  ...process.env, DESTDIR: root, PATH: pathFirst ? `${pathFirst}:${process.env.PATH}` : process.env.PATH,
});
const afterInstall = (root: string, pathFirst = noUserns) => run('/bin/sh', [scripts.afterInstall, 'configure'], { env: env(root, pathFirst) });
const afterRemove = (root: string, arg: string) => run('/bin/sh', [scripts.afterRemove, arg], { env: env(root) });
const installHelper = (root: string, args: string[]) => run('/bin/sh', [repoPath('assets/linux/install-helper.sh'), ...args], { env: env(root) });

async function gone(p: string): Promise<boolean> {
  return lstat(p).then(() => false, () => true);
}

describe('after-install / after-remove (deb postinst/postrm, rpm %post/%postun)', () => {
  it('parse as POSIX sh and bash once electron-builder has filled them in', async () => {
    for (const script of [scripts.afterInstall, scripts.afterRemove, repoPath('assets/linux/install-helper.sh')]) {
      for (const shell of ['dash', 'bash']) expect((await run(shell, ['-n', script])).stderr).toBe('');
    }
  });

  it('install the helper root-owned, the policy, the /usr/bin link and a setuid chrome-sandbox (no user namespaces)', async () => {
    const root = await newRoot();
    const app = await fakePackageTree(root);
    const result = await afterInstall(root);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);

    expect(await ownerMode(`${root}${INSTALLED_HELPER_PATH}`)).toBe('root:root 755 regular file');
    expect(await ownerMode(`${root}${INSTALLED_HELPER_SCRIPT}`)).toBe('root:root 644 regular file');
    expect(await ownerMode(`${root}${INSTALLED_LABEL_TOOL}`)).toBe('root:root 755 regular file');
    expect(await readFile(`${root}${INSTALLED_LABEL_TOOL}`)).toEqual(await readFile(repoPath('dist/svirt-label-tree')));
    expect(await ownerMode(`${root}${INSTALLED_INSTALL_SCRIPT}`)).toBe('root:root 755 regular file');
    expect(await ownerMode(`${root}${path.dirname(INSTALLED_HELPER_PATH)}`)).toBe('root:root 755 directory');
    expect(await ownerMode(`${root}${INSTALLED_POLICY_PATH}`)).toBe('root:root 644 regular file');
    expect(await readFile(`${root}${INSTALLED_POLICY_PATH}`, 'utf8')).toBe(await readFile(repoPath('assets/polkit/org.svirtmanager.helper.policy'), 'utf8'));
    expect(await readFile(`${root}${INSTALLED_HELPER_SCRIPT}`)).toEqual(await readFile(repoPath('dist/svirt-helper.js')));
    expect(await readlink(`${root}/usr/bin/${EXECUTABLE}`)).toBe(`${APP_DIR}/${EXECUTABLE}`);
    expect(await ownerMode(path.join(app, 'chrome-sandbox'))).toBe('root:root 4755 regular empty file');

    // The wrapper execs the package's Electron (fixed path, in node mode) on the fixed helper program.
    const wrapper = await readFile(`${root}${INSTALLED_HELPER_PATH}`, 'utf8');
    expect(wrapperRuntime(wrapper)).toBe(`${APP_DIR}/${EXECUTABLE}`);
    expect(wrapper).toContain('ELECTRON_RUN_AS_NODE=1');
    expect(wrapper).toContain(`--jitless '${INSTALLED_HELPER_SCRIPT}'`);
    expect(wrapper).toMatch(/exec \/usr\/bin\/env -i /);
    expect(await detectHelperInstall({ root, bundledHelperScript: repoPath('dist/svirt-helper.js') })).toEqual({ installed: true, runtime: `${APP_DIR}/${EXECUTABLE}` });
  });

  it('leave chrome-sandbox unprivileged (0755) where user namespaces work, as electron-builder\'s default does', async () => {
    const root = await newRoot();
    const app = await fakePackageTree(root);
    expect((await afterInstall(root, userns)).code).toBe(0);
    expect(await ownerMode(path.join(app, 'chrome-sandbox'))).toBe('root:root 755 regular empty file');
  });

  it('after-remove takes it all away again on removal (deb "remove", rpm "0")', async () => {
    for (const arg of ['remove', '0']) {
      const root = await newRoot();
      await fakePackageTree(root);
      expect((await afterInstall(root)).code).toBe(0);
      const result = await afterRemove(root, arg);
      expect(result.code).toBe(0);
      for (const p of [INSTALLED_HELPER_PATH, INSTALLED_HELPER_SCRIPT, INSTALLED_LABEL_TOOL, INSTALLED_INSTALL_SCRIPT, INSTALLED_POLICY_PATH, path.dirname(INSTALLED_HELPER_PATH), `/usr/bin/${EXECUTABLE}`]) {
        expect(await gone(`${root}${p}`), p).toBe(true);
      }
      expect(await detectHelperInstall({ root })).toMatchObject({ installed: false, problem: 'missing' });
    }
  });

  it('install the AppArmor qemu abstraction where AppArmor is installed, and remove it with the helper', async () => {
    const root = await newRoot();
    await fakePackageTree(root);
    await mkdir(path.join(root, 'etc/apparmor.d'), { recursive: true });
    const installed = await afterInstall(root);
    expect(installed.code).toBe(0);
    const base = `${root}/etc/apparmor.d/abstractions/svirt-qemu`;
    expect(await ownerMode(base)).toBe('root:root 644 regular file');
    expect(await readFile(base, 'utf8')).toBe(await readFile(repoPath('assets/apparmor/abstractions/svirt-qemu'), 'utf8'));
    expect((await afterRemove(root, 'remove')).code).toBe(0);
    expect(await gone(base)).toBe(true);
    // Without AppArmor's userspace nothing is written there.
    const plain = await newRoot();
    await fakePackageTree(plain);
    expect((await afterInstall(plain)).code).toBe(0);
    expect(await gone(`${plain}/etc/apparmor.d`)).toBe(true);
  });

  it('after-remove keeps everything on an upgrade (deb "upgrade"; rpm "1" runs after the new version\'s %post)', async () => {
    const root = await newRoot();
    await fakePackageTree(root);
    expect((await afterInstall(root)).code).toBe(0);
    for (const arg of ['upgrade', '1']) {
      expect((await afterRemove(root, arg)).code).toBe(0);
      expect(await detectHelperInstall({ root })).toMatchObject({ installed: true });
      expect(await readlink(`${root}/usr/bin/${EXECUTABLE}`)).toBe(`${APP_DIR}/${EXECUTABLE}`);
    }
  });

  it('refuse to let root run an Electron binary that a user could replace, and install nothing', async () => {
    for (const spoil of [
      (app: string) => chmod(app, 0o777), // the app directory is world-writable
      (app: string) => chown(path.join(app, EXECUTABLE), 65534, 65534), // the binary belongs to nobody
      async (app: string) => { // the binary is a link to somewhere else
        await rm(path.join(app, EXECUTABLE));
        await symlink('/bin/true', path.join(app, EXECUTABLE));
      },
    ]) {
      const root = await newRoot();
      await spoil(await fakePackageTree(root));
      const result = await afterInstall(root);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/writable by its group or by others|not owned by root|symbolic link/);
      expect(await gone(`${root}${INSTALLED_HELPER_PATH}`)).toBe(true);
      expect(await gone(`${root}${INSTALLED_POLICY_PATH}`)).toBe(true);
    }
  });
});

describe('install-helper.sh', () => {
  it('refuses a policy that is not ours, and arguments it does not know', async () => {
    const root = await newRoot();
    const app = await fakePackageTree(root);
    const other = path.join(scratch, 'other.policy');
    await writeFile(other, (await readFile(repoPath('assets/polkit/org.svirtmanager.helper.policy'), 'utf8')).replace('id="org.svirtmanager.helper"', 'id="org.example.other"'));
    const base = ['install', '--runtime', `${APP_DIR}/${EXECUTABLE}`, '--helper-script', path.join(app, 'resources/svirt-helper.js')];
    const refused = await installHelper(root, [...base, '--policy', other]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/does not define the action org\.svirtmanager\.helper/);
    expect((await installHelper(root, [...base, '--policy', other, '--force'])).stderr).toMatch(/unknown argument: --force/);
    expect((await installHelper(root, ['install', '--runtime', 'relative/electron', '--helper-script', '/x', '--policy', '/y'])).stderr).toMatch(/not an absolute path/);
    expect(await gone(`${root}${INSTALLED_HELPER_PATH}`)).toBe(true);
  });

  it('--copy-runtime copies a user-owned runtime into a root-owned tree: no setuid, no group/other write, links kept inside it', async () => {
    const root = await newRoot();
    const app = await fakePackageTree(root);
    // An AppImage-like runtime directory a user owns, with a setuid file and a link inside it.
    const userRuntime = path.join(scratch, 'user-runtime', 'app dir');
    await mkdir(path.join(userRuntime, 'locales'), { recursive: true });
    await writeFile(path.join(userRuntime, EXECUTABLE), '#!/bin/sh\n', { mode: 0o777 });
    await writeFile(path.join(userRuntime, 'chrome-sandbox'), '', { mode: 0o4755 });
    await writeFile(path.join(userRuntime, 'libffmpeg.so.1'), 'library');
    await symlink('libffmpeg.so.1', path.join(userRuntime, 'libffmpeg.so'));
    await run('chown', ['-R', '65534:65534', path.join(scratch, 'user-runtime')]);
    await chmod(path.join(userRuntime, 'chrome-sandbox'), 0o4755); // after chown, which clears setuid
    const source = await stat(path.join(userRuntime, 'chrome-sandbox'));
    expect([source.uid, (source.mode & 0o7777).toString(8)]).toEqual([65534, '4755']);

    const result = await installHelper(root, [
      'install', '--runtime', path.join(userRuntime, EXECUTABLE), '--copy-runtime',
      '--helper-script', path.join(app, 'resources/svirt-helper.js'), '--policy', path.join(app, 'resources/org.svirtmanager.helper.policy'),
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const copied = `${root}${INSTALLED_RUNTIME_DIR}`;
    expect(await ownerMode(copied)).toBe('root:root 755 directory');
    expect(await ownerMode(path.join(copied, EXECUTABLE))).toBe('root:root 755 regular file');
    expect(await ownerMode(path.join(copied, 'chrome-sandbox'))).toBe('root:root 755 regular empty file');
    expect(await readlink(path.join(copied, 'libffmpeg.so'))).toBe('libffmpeg.so.1');
    expect(await ownerMode(path.join(copied, 'locales'))).toBe('root:root 755 directory');
    expect(wrapperRuntime(await readFile(`${root}${INSTALLED_HELPER_PATH}`, 'utf8'))).toBe(`${INSTALLED_RUNTIME_DIR}/${EXECUTABLE}`);
    expect(await detectHelperInstall({ root })).toEqual({ installed: true, runtime: `${INSTALLED_RUNTIME_DIR}/${EXECUTABLE}` });

    // A later package install points the wrapper at /opt and drops the copy; remove cleans up the rest.
    expect((await afterInstall(root)).code).toBe(0);
    expect(await gone(copied)).toBe(true);
    expect((await run('/bin/sh', [`${root}${INSTALLED_INSTALL_SCRIPT}`, 'remove'], { env: env(root) })).code).toBe(0);
    expect(await gone(`${root}${path.dirname(INSTALLED_HELPER_PATH)}`)).toBe(true);
    expect(await gone(`${root}/usr/lib/svirt-manager`)).toBe(true);
    expect((await stat(`${root}${APP_DIR}`)).isDirectory()).toBe(true); // the package's own files are dpkg's
  });

  it('--copy-runtime refuses a runtime with a link pointing outside it (or nowhere), and installs nothing', async () => {
    const app = await fakePackageTree(await newRoot());
    const links: [string, string][] = [['libffmpeg.so', path.join(scratch, 'outside.so')], ['up', '../../outside.so'], ['dangling', 'missing.so'], ['top', '..']];
    for (const [name, target] of links) {
      const root = await newRoot();
      const userRuntime = path.join(scratch, `linked-runtime-${name}`, 'app');
      await mkdir(userRuntime, { recursive: true });
      await writeFile(path.join(scratch, 'outside.so'), 'library');
      await writeFile(path.join(userRuntime, EXECUTABLE), '#!/bin/sh\n', { mode: 0o755 });
      await symlink(target, path.join(userRuntime, name));
      const result = await installHelper(root, [
        'install', '--runtime', path.join(userRuntime, EXECUTABLE), '--copy-runtime',
        '--helper-script', path.join(app, 'resources/svirt-helper.js'), '--policy', path.join(app, 'resources/org.svirtmanager.helper.policy'),
      ]);
      expect(result.code, name).not.toBe(0);
      expect(result.stderr).toMatch(new RegExp(`has links pointing outside it, which root must not follow: .*/${name} -> `));
      expect(await gone(`${root}${INSTALLED_RUNTIME_DIR}`)).toBe(true);
      expect(await gone(`${root}/usr/lib/svirt-manager/.runtime.new`)).toBe(true);
      expect(await gone(`${root}${INSTALLED_HELPER_PATH}`)).toBe(true);
    }
  });

  it('writes a wrapper that refuses to run when PKEXEC_UID or SUDO_UID is set but is not a uid', async () => {
    const root = await newRoot();
    await fakePackageTree(root);
    expect((await afterInstall(root)).code).toBe(0);
    const wrapper = `${root}${INSTALLED_HELPER_PATH}`;
    const cases: [Record<string, string>, RegExp][] = [
      [{ PKEXEC_UID: 'abc' }, /PKEXEC_UID is not a uid; refusing to run/],
      [{ PKEXEC_UID: '' }, /PKEXEC_UID is not a uid/],
      [{ PKEXEC_UID: '4242', SUDO_UID: '-1' }, /SUDO_UID is not a uid/],
    ];
    for (const [vars, message] of cases) {
      const refused = await run('/bin/sh', [wrapper], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...vars } });
      expect(refused.code, JSON.stringify(vars)).toBe(2);
      expect(refused.stderr).toMatch(message);
    }
    // A good uid passes the check (the runtime then is the package's, absent from this scratch root).
    const passed = await run('/bin/sh', [wrapper], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PKEXEC_UID: '4242' } });
    expect(passed.stderr).not.toMatch(/not a uid/);
  });
});
