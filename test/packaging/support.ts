import { execFile } from 'node:child_process';
import { chmod, copyFile, cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const repoPath = (...parts: string[]) => path.join(REPO, ...parts);

/** electron-builder's names for this app: /opt/<productName>/<executableName> (checked in builder-config.test). */
export const PRODUCT_DIR = 'sVirt Manager';
export const EXECUTABLE = 'svirt-manager';
export const APP_DIR = `/opt/${PRODUCT_DIR}`;

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program (argv, no shell) and reports how it ended instead of throwing. */
export function run(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(command, [...args], {
      env: options.env ?? process.env, cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8',
    }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, signal: (error?.signal as NodeJS.Signals | undefined) ?? null, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Like run, but a non-zero exit fails with the program's stderr. */
export async function runOk(command: string, args: readonly string[], options: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code ?? result.signal}: ${result.stderr.trim()}`);
  return result;
}

/**
 * electron-builder's template step for after-install/after-remove (FpmTarget's writeConfigFile): every
 * ${letters} is a macro, and an unknown one is an error. builder-config.test checks the source still reads so.
 */
export const BUILDER_MACRO = /\${([a-zA-Z]+)}/g;
export function expandBuilderTemplate(text: string, macros: Record<string, string> = { executable: EXECUTABLE, sanitizedProductName: PRODUCT_DIR, productFilename: PRODUCT_DIR }): string {
  return text.replace(BUILDER_MACRO, (_match, name: string) => {
    if (!(name in macros)) throw new Error(`Macro ${name} is not defined`);
    return macros[name] as string;
  });
}

export async function writeExpandedScripts(dir: string): Promise<{ afterInstall: string; afterRemove: string }> {
  const afterInstall = path.join(dir, 'after-install');
  const afterRemove = path.join(dir, 'after-remove');
  await writeFile(afterInstall, expandBuilderTemplate(await readFile(repoPath('assets/linux/after-install.sh'), 'utf8')), { mode: 0o755 });
  await writeFile(afterRemove, expandBuilderTemplate(await readFile(repoPath('assets/linux/after-remove.sh'), 'utf8')), { mode: 0o755 });
  return { afterInstall, afterRemove };
}

/**
 * What a deb/rpm unpacks under DESTDIR before its after-install runs: /opt/<product>/ with the
 * executable (a copy of `runtime`, or a small stand-in script), chrome-sandbox and the extraResources.
 */
export async function fakePackageTree(root: string, options: { runtime?: string; chromeSandbox?: boolean } = {}): Promise<string> {
  const app = path.join(root, APP_DIR);
  await mkdir(path.join(app, 'resources'), { recursive: true, mode: 0o755 });
  const exe = path.join(app, EXECUTABLE);
  if (options.runtime) await copyFile(options.runtime, exe);
  else await writeFile(exe, '#!/bin/sh\necho stand-in for the Electron binary\n');
  await chmod(exe, 0o755);
  if (options.chromeSandbox ?? true) await writeFile(path.join(app, 'chrome-sandbox'), '', { mode: 0o755 });
  await copyFile(repoPath('assets/linux/install-helper.sh'), path.join(app, 'resources', 'install-helper.sh'));
  await copyFile(repoPath('assets/polkit/org.svirtmanager.helper.policy'), path.join(app, 'resources', 'org.svirtmanager.helper.policy'));
  await copyFile(repoPath('dist/svirt-helper.js'), path.join(app, 'resources', 'svirt-helper.js'));
  await copyFile(repoPath('dist/svirt-label-tree'), path.join(app, 'resources', 'svirt-label-tree'));
  await cp(repoPath('assets/selinux'), path.join(app, 'resources', 'selinux'), { recursive: true });
  await cp(repoPath('assets/apparmor'), path.join(app, 'resources', 'apparmor'), { recursive: true });
  await writeFile(path.join(app, 'resources', 'apparmor-profile'), '# electron-builder writes this\n');
  return app;
}

/** `stat -c '%U:%G %a %F'` of a path (no links followed). */
export async function ownerMode(p: string): Promise<string> {
  return (await runOk('stat', ['-c', '%U:%G %a %F', p])).stdout.trim();
}
