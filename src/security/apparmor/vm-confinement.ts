/**
 * A VM's AppArmor confinement, start to stop: the profile made from the files the helper opened for this
 * start, loaded before qemu is exec'd into it, checked on the running qemu, removed once qemu is gone;
 * and the sweep that removes any VM profile whose VM no longer runs (a crash of qemu, of the helper or of
 * the host). The same steps as libvirt's AppArmor driver (generate, load, exec into, check, remove), with
 * the profile written by src/core/apparmor and loaded by apparmor-host.ts.
 */
import { renderVmProfile, vmProfileName, type ProfileFile } from '../../core/apparmor/vm-profile';
import { confinedExecPrefix, probeAppArmor, processConfinement, VM_PROFILE_BASE, type AppArmorProbe, type VmProfileStore } from './apparmor-host';

export interface VmConfinementRequest {
  readonly ownerUid: number;
  readonly name: string;
  /** Every file qemu gets, by the canonical path of what the helper opened, with how the VM uses it. */
  readonly files: readonly ProfileFile[];
  /** The VM's run and display directories. */
  readonly dirs: readonly string[];
}

export interface PreparedConfinement {
  readonly profile: string;
  /** Put before qemu's command line: execs it in the profile. */
  readonly execPrefix: readonly string[];
}

export class AppArmorVmConfinement {
  constructor(
    private readonly store: VmProfileStore,
    private readonly probe: () => Promise<AppArmorProbe> = () => probeAppArmor(),
  ) {}

  /** Whether this host enforces AppArmor profiles now. */
  async active(): Promise<boolean> {
    return (await this.probe()).enabled;
  }

  /** Writes and loads the VM's profile (replacing one a previous start left loaded). */
  async prepare(request: VmConfinementRequest): Promise<PreparedConfinement> {
    const profile = vmProfileName(request.ownerUid, request.name);
    const text = renderVmProfile({ name: profile, vm: `${request.ownerUid}/${request.name}`, files: request.files, dirs: request.dirs, base: VM_PROFILE_BASE });
    await this.store.load(profile, text);
    return { profile, execPrefix: confinedExecPrefix(profile) };
  }

  /** Null when qemu runs in its profile, enforced or complaining; else what is wrong, for the start's error. */
  async problem(pid: number, profile: string): Promise<string | null> {
    const actual = await processConfinement(pid);
    if (actual === undefined) return `qemu's AppArmor profile could not be read (expected ${profile})`;
    if (actual.profile !== profile) return `qemu runs as ${actual.profile} (${actual.mode}), not in its profile ${profile}`;
    return null;
  }

  /** Removes the VM's profile (qemu is gone). */
  release(profile: string): Promise<void> {
    return this.store.unload(profile);
  }

  /** Removes every VM profile not in `keep`: a VM's profile never outlives it. */
  sweep(keep: ReadonlySet<string>): ReturnType<VmProfileStore['sweep']> {
    return this.store.sweep(keep);
  }
}
