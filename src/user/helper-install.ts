// First run without an installed helper (an AppImage, a checkout): install the helper and its polkit
// action once, with sudo-prompt; from then on the app starts the helper through pkexec (helper-client).
import { constants, type Stats } from 'node:fs';
import { copyFile, cp, lstat, mkdtemp, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { exec as sudoPromptExec } from 'sudo-prompt';
import { INSTALLED_HELPER_PATH, POLKIT_ACTION_ID } from './helper-client';

const LIBEXEC_DIR = path.posix.dirname(INSTALLED_HELPER_PATH);
/** The helper program itself; the wrapper at INSTALLED_HELPER_PATH runs it (install-helper.sh). */
export const INSTALLED_HELPER_SCRIPT = `${LIBEXEC_DIR}/svirt-helper.mjs`;
/** The helper's tree relabeler (label-tree.c): install-helper.sh takes it from beside the helper script. */
export const INSTALLED_LABEL_TOOL = `${LIBEXEC_DIR}/svirt-label-tree`;
const LABEL_TOOL_NAME = 'svirt-label-tree';
/** install-helper.sh keeps a copy of itself here, for after-remove and for `… remove` by hand. */
export const INSTALLED_INSTALL_SCRIPT = `${LIBEXEC_DIR}/install-helper.sh`;
export const POLICY_FILE_NAME = `${POLKIT_ACTION_ID}.policy`;
/** The SELinux module's sources (svirt_manager.te/.if/.fc): install-helper.sh compiles and loads them where SELinux is on. */
export const SELINUX_DIR_NAME = 'selinux';
export const APPARMOR_DIR_NAME = 'apparmor';
export const INSTALLED_POLICY_PATH = `/usr/share/polkit-1/actions/${POLICY_FILE_NAME}`;
/** Where an AppImage's runtime is copied (its own mount disappears when the app quits). */
export const INSTALLED_RUNTIME_DIR = '/usr/lib/svirt-manager/runtime';
/** sudo-prompt's dialog title: letters, digits and spaces only. */
export const SUDO_PROMPT_NAME = 'sVirt Manager';

// ---------------------------------------------------------------------------------------------------
// Detection

export type HelperInstallProblem = 'missing' | 'untrusted' | 'mismatch' | 'outdated';

export type HelperInstallStatus =
  | { readonly installed: true; readonly runtime: string }
  | { readonly installed: false; readonly problem: HelperInstallProblem; readonly detail: string };

export interface DetectOptions {
  /** A scratch root (tests, DESTDIR); '' is the running system. */
  readonly root?: string;
  /** The helper this app bundles (svirt-label-tree beside it): an installed helper with other contents is outdated. */
  readonly bundledHelperScript?: string;
}

class InstallProblem extends Error {
  constructor(readonly problem: HelperInstallProblem, detail: string) {
    super(detail);
  }
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Root-owned, not a link, writable by nobody else: a file root may execute or trust. */
function rootOnlyProblem(p: string, st: Stats): string | undefined {
  if (st.isSymbolicLink()) return `${p} is a symbolic link`;
  if (st.uid !== 0) return `${p} belongs to uid ${st.uid}, not root`;
  if ((st.mode & 0o022) !== 0) return `${p} is writable by its group or others (mode ${(st.mode & 0o7777).toString(8)})`;
  return undefined;
}

/** `target` (a path on the installed system) and every directory above it, below `root`. */
async function assertRootChain(root: string, target: string, missing: HelperInstallProblem = 'missing'): Promise<Stats> {
  const parts = target.split('/').filter(Boolean);
  let current = '';
  let st: Stats | null = null;
  for (const p of ['', ...parts]) {
    current = p === '' ? '' : `${current}/${p}`;
    const onDisk = `${root}${current}` || '/';
    st = await lstatOrNull(onDisk);
    if (!st) throw new InstallProblem(missing, `${current || '/'} does not exist`);
    const problem = rootOnlyProblem(current || '/', st);
    if (problem) throw new InstallProblem('untrusted', problem);
  }
  return st as Stats;
}

/** The runtime the wrapper execs, from the line install-helper.sh writes (a single-quoted word). */
export function wrapperRuntime(wrapper: string): string | undefined {
  const match = /^ {2}('(?:[^']|'\\'')*') (?:--jitless )?'[^']*'$/m.exec(wrapper);
  return match?.[1]?.slice(1, -1).replaceAll("'\\''", "'");
}

function policyAction(xml: string): { id?: string; execPath?: string } {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', processEntities: false, isArray: (name) => ['action', 'annotate'].includes(name) });
  const doc = parser.parse(xml) as { policyconfig?: { action?: { '@id'?: string; annotate?: ({ '@key'?: string; '#text'?: string } | string)[] }[] } };
  const actions = doc.policyconfig?.action ?? [];
  const action = actions.find((a) => a['@id'] === POLKIT_ACTION_ID) ?? actions[0];
  const exec = action?.annotate?.find((a) => typeof a === 'object' && a['@key'] === 'org.freedesktop.policykit.exec.path');
  return {
    ...(action?.['@id'] === undefined ? {} : { id: action['@id'] }),
    ...(typeof exec === 'object' && exec['#text'] !== undefined ? { execPath: String(exec['#text']).trim() } : {}),
  };
}

/**
 * Whether pkexec can start our helper: the wrapper, the helper program and the policy exist, belong to
 * root and nobody else can change them (nor the directories above), the policy's action is ours and
 * names the wrapper, the runtime the wrapper execs is there, and (if asked) the helper is this app's.
 */
export async function detectHelperInstall(options: DetectOptions = {}): Promise<HelperInstallStatus> {
  const root = options.root ?? '';
  try {
    const wrapperStat = await assertRootChain(root, INSTALLED_HELPER_PATH);
    if (!wrapperStat.isFile() || (wrapperStat.mode & 0o100) === 0) throw new InstallProblem('untrusted', `${INSTALLED_HELPER_PATH} is not an executable file`);
    await assertRootChain(root, INSTALLED_HELPER_SCRIPT);
    await assertRootChain(root, INSTALLED_LABEL_TOOL);
    await assertRootChain(root, INSTALLED_POLICY_PATH);

    const action = policyAction(await readFile(`${root}${INSTALLED_POLICY_PATH}`, 'utf8'));
    if (action.id !== POLKIT_ACTION_ID) throw new InstallProblem('mismatch', `${INSTALLED_POLICY_PATH} defines ${action.id ?? 'no action'}, not ${POLKIT_ACTION_ID}`);
    if (action.execPath !== INSTALLED_HELPER_PATH) {
      throw new InstallProblem('mismatch', `${INSTALLED_POLICY_PATH} names ${action.execPath ?? 'no program'} as the helper, not ${INSTALLED_HELPER_PATH}`);
    }

    const runtime = wrapperRuntime(await readFile(`${root}${INSTALLED_HELPER_PATH}`, 'utf8'));
    if (!runtime) throw new InstallProblem('mismatch', `${INSTALLED_HELPER_PATH} was not written by install-helper.sh`);
    const runtimeStat = await assertRootChain(root, runtime);
    if (!runtimeStat.isFile() || (runtimeStat.mode & 0o100) === 0) throw new InstallProblem('untrusted', `${runtime} is not an executable file`);

    if (options.bundledHelperScript) {
      const [installed, bundled] = await Promise.all([readFile(`${root}${INSTALLED_HELPER_SCRIPT}`), readFile(options.bundledHelperScript)]);
      if (!installed.equals(bundled)) throw new InstallProblem('outdated', `${INSTALLED_HELPER_SCRIPT} is another version than this app's helper`);
      const bundledTool = path.join(path.dirname(options.bundledHelperScript), LABEL_TOOL_NAME);
      const [installedTool, bundledToolBytes] = await Promise.all([readFile(`${root}${INSTALLED_LABEL_TOOL}`), readFile(bundledTool)]);
      if (!installedTool.equals(bundledToolBytes)) throw new InstallProblem('outdated', `${INSTALLED_LABEL_TOOL} is another version than this app's`);
    }
    return { installed: true, runtime };
  } catch (err) {
    if (err instanceof InstallProblem) return { installed: false, problem: err.problem, detail: err.message };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// What to install, from where

export interface HelperSources {
  /** assets/linux/install-helper.sh (resources/install-helper.sh when packaged). */
  readonly installScript: string;
  /** The bundled helper, dist/svirt-helper.js. */
  readonly helperScript: string;
  readonly policy: string;
  /** The SELinux policy module's sources (assets/selinux; resources/selinux when packaged). */
  readonly selinuxDir: string;
  /** The AppArmor abstraction every VM's profile includes (assets/apparmor; resources/apparmor when packaged). */
  readonly apparmorDir: string;
  /** Runs the helper with ELECTRON_RUN_AS_NODE=1: the app's Electron binary (or node). */
  readonly runtime: string;
  /** The runtime lies where a user can change it (AppImage mount, checkout): root copies it. */
  readonly copyRuntime: boolean;
}

export interface AppLocation {
  /** Electron's app.isPackaged. */
  readonly packaged: boolean;
  /** process.resourcesPath (packaged apps). */
  readonly resourcesPath?: string;
  /** The checkout's root (unpackaged): app.getAppPath(). */
  readonly appRoot?: string;
  /** process.execPath. */
  readonly execPath: string;
}

async function isRootOnlyChain(target: string): Promise<boolean> {
  try {
    await assertRootChain('', target);
    return true;
  } catch (err) {
    if (err instanceof InstallProblem) return false;
    throw err;
  }
}

export async function resolveHelperSources(app: AppLocation): Promise<HelperSources> {
  let base: Omit<HelperSources, 'runtime' | 'copyRuntime'>;
  if (app.packaged) {
    if (!app.resourcesPath) throw new Error('a packaged app needs its resources path');
    base = {
      installScript: path.join(app.resourcesPath, 'install-helper.sh'),
      helperScript: path.join(app.resourcesPath, 'svirt-helper.js'),
      policy: path.join(app.resourcesPath, POLICY_FILE_NAME),
      selinuxDir: path.join(app.resourcesPath, SELINUX_DIR_NAME),
      apparmorDir: path.join(app.resourcesPath, APPARMOR_DIR_NAME),
    };
  } else {
    if (!app.appRoot) throw new Error('an unpackaged app needs its checkout root');
    base = {
      installScript: path.join(app.appRoot, 'assets', 'linux', 'install-helper.sh'),
      helperScript: path.join(app.appRoot, 'dist', 'svirt-helper.js'),
      policy: path.join(app.appRoot, 'assets', 'polkit', POLICY_FILE_NAME),
      selinuxDir: path.join(app.appRoot, 'assets', SELINUX_DIR_NAME),
      apparmorDir: path.join(app.appRoot, 'assets', APPARMOR_DIR_NAME),
    };
  }
  return { ...base, runtime: app.execPath, copyRuntime: !(await isRootOnlyChain(app.execPath)) };
}

// ---------------------------------------------------------------------------------------------------
// The one elevated command

export class UnsafePathError extends Error {
  constructor(value: string, reason: string) {
    super(`cannot pass ${JSON.stringify(value)} to the install command: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/**
 * One word for a POSIX shell: single quotes, inside which nothing is special but the quote itself
 * (written '\''). Control characters are refused: a newline would end the command sudo-prompt builds.
 */
export function shellQuote(word: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(word)) throw new UnsafePathError(word, 'it contains a newline or another control character');
  return `'${word.replaceAll("'", "'\\''")}'`;
}

function checkAbsolute(p: string): string {
  if (!path.posix.isAbsolute(p)) throw new UnsafePathError(p, 'not an absolute path');
  if (p.split('/').some((seg) => seg === '.' || seg === '..')) throw new UnsafePathError(p, 'it has . or .. segments');
  shellQuote(p);
  return p;
}

/**
 * The command string for sudo-prompt 9.2.1, which runs `pkexec … /bin/bash -c "echo …; COMMAND"`
 * through /bin/sh and escapes only `"` in COMMAND. So the string passes two shells: the user's /bin/sh
 * reads it inside double quotes (where $, ` and \ act), then root's bash reads the result. Every word is
 * single-quoted for bash, and $, ` and \ are backslash-escaped for the double-quoted layer, which gives
 * bash exactly the single-quoted words back.
 */
export function sudoPromptCommand(argv: readonly string[]): string {
  const forBash = argv.map(shellQuote).join(' ');
  return forBash.replace(/[\\$`]/g, (c) => `\\${c}`);
}

/** `/bin/sh install-helper.sh install …`: fixed words and validated absolute paths only. */
export function installArgv(sources: HelperSources): string[] {
  return [
    '/bin/sh', checkAbsolute(sources.installScript), 'install',
    '--runtime', checkAbsolute(sources.runtime),
    '--helper-script', checkAbsolute(sources.helperScript),
    '--policy', checkAbsolute(sources.policy),
    '--selinux-dir', checkAbsolute(sources.selinuxDir),
    '--apparmor-dir', checkAbsolute(sources.apparmorDir),
    ...(sources.copyRuntime ? ['--copy-runtime'] : []),
  ];
}

export function installCommand(sources: HelperSources): string {
  return sudoPromptCommand(installArgv(sources));
}

/** What the app shows before it asks for the administrator password. */
export function installExplanation(sources: Pick<HelperSources, 'copyRuntime'>): string {
  return [
    'sVirt Manager needs a small helper that runs as root: it labels VM disk images with SELinux, starts each VM\'s qemu confined by sVirt (as an unprivileged user, under its own pair of MCS categories), and restores the labels when a VM stops. The app itself never runs as root.',
    '',
    'Installing it once needs an administrator password. It will place:',
    `  • ${INSTALLED_HELPER_PATH} — the helper, owned by root (0755), the helper program ${INSTALLED_HELPER_SCRIPT} and its tree relabeler ${INSTALLED_LABEL_TOOL};`,
    `  • ${INSTALLED_POLICY_PATH} — the polkit action ${POLKIT_ACTION_ID}, which lets polkit ask for the password once per session when the app starts the helper;`,
    ...(sources.copyRuntime ? [`  • ${INSTALLED_RUNTIME_DIR} — a root-owned copy of this app's runtime that the helper runs on (the app's own copy can be changed without an administrator).`] : []),
    `  • ${INSTALLED_INSTALL_SCRIPT} — removes all of this again: run it with "remove" as root.`,
    '',
    'Each time the app starts the helper afterwards, polkit asks for an administrator password (kept for a few minutes in an active session). The helper acts for you only: it relabels files you own and VMs you started.',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Installing

export type SudoExec = (command: string, options: { name: string }, callback: (error?: Error, stdout?: string | Buffer, stderr?: string | Buffer) => void) => void;

export class HelperInstallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HelperInstallError';
  }
}

/** sudo-prompt's fixed messages for "never elevated", as a user reads them. */
export function describeInstallFailure(error: Error, stderr: string): string {
  if (error.message === 'User did not grant permission.') {
    return 'The helper was not installed: the administrator password was not given (or the dialog was closed).';
  }
  if (error.message === 'No polkit authentication agent found.') {
    return 'The helper was not installed: no polkit authentication agent runs in this session, so nobody could be asked for the administrator password. Start your desktop\'s polkit agent, or install the deb/rpm package instead.';
  }
  const detail = stderr.trim().split('\n').slice(-3).join(' ');
  return `Installing the helper failed${detail ? `: ${detail}` : ` (${error.message})`}`;
}

/** Every symbolic link in the copied `tree` must resolve to a file inside it. */
async function refuseLinksOutside(tree: string, source: string): Promise<void> {
  const top = await realpath(tree);
  for (const entry of await readdir(tree, { recursive: true, withFileTypes: true })) {
    if (!entry.isSymbolicLink()) continue;
    const link = path.join(entry.parentPath, entry.name);
    const target = await realpath(link).catch(() => undefined);
    if (target === undefined || !(target === top || target.startsWith(`${top}/`))) {
      throw new HelperInstallError(
        `The app's runtime cannot be installed: ${path.join(source, path.relative(tree, link))} is a link to ${target ?? 'a file that does not exist'}, ` +
          'outside the runtime directory; root must not run files a user can change. Reinstall the app so that its directory holds no such link.',
      );
    }
  }
}

/**
 * Copies the sources into a fresh private directory first: root cannot read an AppImage's FUSE mount,
 * and the files root copies must not move under it. (The administrator approves installing what this
 * session hands over; staging adds no trust, it only makes the hand-over readable and stable.)
 */
async function stage(sources: HelperSources): Promise<{ sources: HelperSources; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'svirt-helper-install-'));
  try {
    const staged = {
      installScript: path.join(dir, 'install-helper.sh'),
      helperScript: path.join(dir, 'svirt-helper.js'),
      policy: path.join(dir, POLICY_FILE_NAME),
      selinuxDir: path.join(dir, SELINUX_DIR_NAME),
      apparmorDir: path.join(dir, APPARMOR_DIR_NAME),
    };
    await copyFile(sources.installScript, staged.installScript, constants.COPYFILE_EXCL);
    await copyFile(sources.helperScript, staged.helperScript, constants.COPYFILE_EXCL);
    // install-helper.sh takes the tree relabeler from beside the helper script.
    await copyFile(path.join(path.dirname(sources.helperScript), LABEL_TOOL_NAME), path.join(dir, LABEL_TOOL_NAME), constants.COPYFILE_EXCL);
    await copyFile(sources.policy, staged.policy, constants.COPYFILE_EXCL);
    await cp(sources.selinuxDir, staged.selinuxDir, { recursive: true, dereference: true, errorOnExist: true, force: false });
    await cp(sources.apparmorDir, staged.apparmorDir, { recursive: true, dereference: true, errorOnExist: true, force: false });
    let runtime = sources.runtime;
    if (sources.copyRuntime) {
      const runtimeDir = path.join(dir, 'runtime');
      // The helper runs Electron in Node mode and needs no app archive; inside Electron, fs would even
      // walk an .asar as a directory.
      // Links are copied as links, never followed: one naming a file elsewhere would have root run
      // whatever a user puts there later, so any link that resolves outside the copy is refused.
      const from = await realpath(path.dirname(sources.runtime));
      await cp(from, runtimeDir, { recursive: true, dereference: false, verbatimSymlinks: true, preserveTimestamps: true, filter: (src) => !src.endsWith('.asar') });
      await refuseLinksOutside(runtimeDir, from);
      runtime = path.join(runtimeDir, path.basename(sources.runtime));
    }
    return { sources: { ...staged, runtime, copyRuntime: sources.copyRuntime }, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface InstallOptions {
  /** sudo-prompt's exec (tests pass their own). */
  readonly exec?: SudoExec;
  /** Where to check the result (tests); '' is the running system. */
  readonly root?: string;
}

/**
 * Installs the helper and its polkit action with one sudo-prompt command (polkit's generic exec action,
 * auth_admin), then checks the result. Show installExplanation() first.
 */
export async function installHelper(sources: HelperSources, options: InstallOptions = {}): Promise<void> {
  const exec: SudoExec = options.exec ?? (sudoPromptExec as SudoExec);
  const staged = await stage(sources);
  try {
    const command = installCommand(staged.sources);
    await new Promise<void>((resolve, reject) => {
      exec(command, { name: SUDO_PROMPT_NAME }, (error, _stdout, stderr) => {
        if (error) reject(new HelperInstallError(describeInstallFailure(error, String(stderr ?? ''))));
        else resolve();
      });
    });
  } finally {
    await staged.dispose();
  }
  const status = await detectHelperInstall({ root: options.root ?? '', bundledHelperScript: sources.helperScript });
  if (!status.installed) throw new HelperInstallError(`The helper is still not usable after installing it: ${status.detail}`);
}
