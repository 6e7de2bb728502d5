/**
 * The AppArmor mechanism the root helper uses: whether the kernel enforces AppArmor, which profiles it
 * holds, loading and removing the VMs' profiles, and the command prefix that execs qemu into one.
 *
 * Profiles are written to the helper's own directory (by default /var/lib/svirt-manager/apparmor),
 * never to /etc/apparmor.d: the boot-time loader reads that directory, and a VM's profile must not come
 * back after a reboot for a VM that no longer runs. The file is what `apparmor_parser -r` loaded, so it
 * is also what the audit reads (the helper's vmProfiles verb) to answer what a loaded profile grants. The kernel's own list
 * (securityfs `profiles`) says which are loaded; a VM's profile that is loaded or stored without a
 * running VM (a helper or host crash) is removed by sweep() at the next reconcile.
 *
 * apparmor_parser runs with argument vectors only (no shell), with the profile from a file the helper
 * wrote (root-only directory, mode 0600), and with the cache skipped (-K): the profile changes at every
 * start. qemu is exec'd into its profile by aa-exec (change_onexec, then exec in place), so no process
 * stays between the launcher and qemu, as with runcon under SELinux.
 */
import { execFile } from 'node:child_process';
import { access, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { isVmProfileName, parseAppArmorLabel, type AppArmorMode } from '../../core/apparmor/vm-profile';
import { writeFileAtomic } from '../../host/atomic-file';

const run = promisify(execFile);

export const APPARMOR_SECURITYFS = '/sys/kernel/security/apparmor';
export const APPARMOR_ENABLED_PARAMETER = '/sys/module/apparmor/parameters/enabled';
/** The abstraction every VM profile includes (assets/apparmor/abstractions/svirt-qemu, installed by install-helper.sh). */
export const VM_PROFILE_BASE = 'abstractions/svirt-qemu';

/** Where a helper with state directory `stateDir` keeps the VMs' profiles. */
export const vmProfileDir = (stateDir: string): string => path.join(stateDir, 'apparmor');

/** A stored profile's text is one the helper wrote: a few kilobytes. Anything larger is not read. */
const MAX_PROFILE_BYTES = 1 << 20;

export interface AppArmorHostPaths {
  readonly securityfs: string;
  readonly enabledParameter: string;
}

const HOST: AppArmorHostPaths = { securityfs: APPARMOR_SECURITYFS, enabledParameter: APPARMOR_ENABLED_PARAMETER };

export interface AppArmorProbe {
  readonly enabled: boolean;
  /** Why not, in the user's words, when not enabled. */
  readonly reason?: string;
}

/**
 * Whether profiles can be loaded and enforced now: the module is on (`Y`), and securityfs shows its
 * interface (the policy directory where profiles are loaded and listed).
 */
export async function probeAppArmor(paths: AppArmorHostPaths = HOST): Promise<AppArmorProbe> {
  const enabled = await readFile(paths.enabledParameter, 'utf8').then((t) => t.trim(), () => undefined);
  if (enabled !== 'Y') return { enabled: false, reason: enabled === undefined ? 'the kernel has no AppArmor' : 'AppArmor is disabled on this host' };
  const hasInterface = await access(path.join(paths.securityfs, 'profiles')).then(() => true, () => false);
  if (!hasInterface) return { enabled: false, reason: `AppArmor's interface ${paths.securityfs} is not mounted (securityfs)` };
  return { enabled: true };
}

export interface LoadedProfile {
  readonly name: string;
  readonly mode: AppArmorMode;
}

/** Every profile the kernel holds now (securityfs `profiles`: `NAME (MODE)` per line). */
export async function loadedProfiles(paths: AppArmorHostPaths = HOST): Promise<LoadedProfile[]> {
  const text = await readFile(path.join(paths.securityfs, 'profiles'), 'utf8');
  return text.split('\n').flatMap((line) => {
    const label = parseAppArmorLabel(line);
    return label && label.profile !== 'unconfined' ? [{ name: label.profile, mode: label.mode }] : [];
  });
}

/** A process's confinement, from the AppArmor-specific attribute when the kernel has it (stacked LSMs), else attr/current. */
export async function processConfinement(pid: number, procRoot = '/proc'): Promise<{ profile: string; mode: AppArmorMode } | undefined> {
  for (const attr of ['attr/apparmor/current', 'attr/current']) {
    const text = await readFile(path.join(procRoot, String(pid), attr), 'utf8').catch(() => undefined);
    if (text !== undefined) return parseAppArmorLabel(text);
  }
  return undefined;
}

/** The command prefix that execs the rest of the command line in `profile` (argv, no shell). */
export function confinedExecPrefix(profile: string): string[] {
  if (!isVmProfileName(profile)) throw new Error(`${profile} is not a VM profile name`);
  return ['aa-exec', '-p', profile, '--'];
}

export interface VmProfileStoreOptions {
  /** Where the loaded VM profiles' sources are kept (root-only). */
  readonly dir: string;
  readonly parser?: string;
  /** Extra include directories for apparmor_parser (-I), before its default /etc/apparmor.d. */
  readonly includeDirs?: readonly string[];
  readonly host?: AppArmorHostPaths;
}

export class AppArmorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AppArmorError';
  }
}

/** The VMs' profiles: written, loaded, listed, removed. */
export class VmProfileStore {
  private readonly parser: string;
  private readonly host: AppArmorHostPaths;

  constructor(private readonly options: VmProfileStoreOptions) {
    this.parser = options.parser ?? 'apparmor_parser';
    this.host = options.host ?? HOST;
  }

  private file(name: string): string {
    if (!isVmProfileName(name)) throw new AppArmorError(`${name} is not a VM profile name`);
    return path.join(this.options.dir, name);
  }

  private async parse(args: string[]): Promise<void> {
    const includes = (this.options.includeDirs ?? []).flatMap((d) => ['-I', d]);
    try {
      await run(this.parser, [...includes, ...args], { timeout: 120_000, maxBuffer: 4 << 20 });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      const said = (e.stderr ?? '').trim().split('\n').filter((l) => !/^Cache read\/write disabled/.test(l)).join('; ');
      throw new AppArmorError(`${this.parser} ${args.filter((a) => !a.startsWith('/')).join(' ')}: ${said || e.message}`);
    }
  }

  /** Writes the profile and loads it, replacing a loaded one of the same name (a restart). */
  async load(name: string, text: string): Promise<void> {
    const file = this.file(name);
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, text, 0o600);
    // -r: load, or replace the loaded one; -K: no cache (a VM's profile changes at every start).
    await this.parse(['-r', '-K', '--', file]);
  }

  /** Unloads the profile (if loaded) and removes its file. Safe to repeat. */
  async unload(name: string): Promise<void> {
    const file = this.file(name);
    const isLoaded = async () => (await loadedProfiles(this.host)).some((p) => p.name === name);
    if (await isLoaded()) {
      const hasFile = await access(file).then(() => true, () => false);
      // -R reads the names to remove from the file; without it (a crash between the two steps), or when it
      // no longer compiles (its base changed), the kernel removes a profile by name.
      const removed = hasFile && (await this.parse(['-R', '--', file]).then(() => true, () => false));
      if (!removed) await writeFile(path.join(this.host.securityfs, '.remove'), name);
      if (await isLoaded()) throw new AppArmorError(`profile ${name} is still loaded after its removal`);
    }
    await rm(file, { force: true });
  }

  /** The VM profiles stored here (loaded or left by a crash). */
  async stored(): Promise<string[]> {
    const names = await readdir(this.options.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    return names.filter(isVmProfileName);
  }

  /** The VM profiles the kernel holds. */
  async loaded(): Promise<LoadedProfile[]> {
    return (await loadedProfiles(this.host)).filter((p) => isVmProfileName(p.name));
  }

  /**
   * Removes every VM profile, loaded or stored, that is not in `keep` (the profiles of the VMs that run):
   * a VM's profile never outlives it. Returns the names removed; one that fails is reported and left
   * for the next round, never allowed to fail the others.
   */
  async sweep(keep: ReadonlySet<string>): Promise<{ removed: string[]; failed: { name: string; error: string }[] }> {
    const loaded = await this.loaded().catch(() => []);
    const names = new Set([...loaded.map((p) => p.name), ...(await this.stored())]);
    const removed: string[] = [];
    const failed: { name: string; error: string }[] = [];
    for (const name of names) {
      if (keep.has(name)) continue;
      try {
        await this.unload(name);
        removed.push(name);
      } catch (err) {
        failed.push({ name, error: (err as Error).message });
      }
    }
    return { removed, failed };
  }

  /**
   * The text the helper loaded as `name` (the stored source `apparmor_parser -r` read), with whether the
   * kernel holds it now and in which mode. `loaded` is null when the kernel's list cannot be read (no
   * securityfs): the text is then what was loaded, unconfirmed. `text` is null when none is stored.
   */
  async loadedText(name: string): Promise<{ text: string | null; loaded: boolean | null; mode: AppArmorMode | null }> {
    const kernel = await this.loaded().catch(() => undefined);
    const held = kernel?.find((p) => p.name === name);
    const file = this.file(name);
    const text = await stat(file).then(
      (st) => (st.isFile() && st.size <= MAX_PROFILE_BYTES ? readFile(file, 'utf8') : null),
      () => null,
    );
    return { text, loaded: kernel === undefined ? null : held !== undefined, mode: held?.mode ?? null };
  }
}
