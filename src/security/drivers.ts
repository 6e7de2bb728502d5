/**
 * The security drivers this helper has, and which one confines this host's VMs. Like libvirt's
 * security_driver.c: one list, probed in order, ending with `none`. A new model registers by adding its
 * factory to MAC_DRIVERS before `none` (AppArmor goes after SELinux: a host that runs SELinux keeps it).
 *
 * The first driver whose model the kernel runs (enforcing or permissive) wins; if none runs, the first
 * that is installed but inactive (SELinux with a policy, booted without it: files are still labelled as
 * data, and each start asks before it runs qemu unconfined); else `none`. DAC runs under whichever wins.
 */
import type { PolicyProfile } from '../core/selinux/policy-profile';
import type { VmTypeSets } from '../core/selinux/seclabel-rules';
import type { HelperConfig } from '../root/helper/helper-config';
import path from 'node:path';
import { HelperStateStore } from '../root/state/helper-state';
import { AppArmorDriver } from './apparmor/apparmor-driver';
import { DacDriver } from './dac/dac-driver';
import { NoneDriver } from './none/none-driver';
import { confines, type SecurityDriver } from './security-driver';
import { SecurityStack } from './security-stack';
import { SelinuxDriver } from './selinux/selinux-driver';

/** What any driver may need from the helper to be built. */
export interface DriverHost {
  readonly config: Pick<HelperConfig, 'categoryRange' | 'allowSeclabelNone' | 'configPath' | 'vmIdRange' | 'stateDir'>;
  /** The installed SELinux policy's profile (built-in defaults where it is absent). */
  readonly profile: PolicyProfile;
  /** The SELinux policy's VM types (slow: asked at the first start). */
  readonly vmTypes: () => Promise<VmTypeSets>;
}

export type DriverFactory = (host: DriverHost) => SecurityDriver;

/** The MAC drivers in probe order; `none` last. */
export const MAC_DRIVERS: readonly DriverFactory[] = [
  (host) => new SelinuxDriver({
    profile: host.profile, vmTypes: host.vmTypes, categoryRange: host.config.categoryRange,
    allowSeclabelNone: host.config.allowSeclabelNone, configPath: host.config.configPath,
  }),
  (host) => {
    const store = new HelperStateStore(host.config.stateDir);
    return new AppArmorDriver({
      profileDir: path.join(host.config.stateDir, 'apparmor'),
      vmDirs: (vm) => Object.values(store.vmDirs(vm.ownerUid, vm.name)),
    });
  },
  () => new NoneDriver(),
];

/** Picks the MAC driver the host runs (see the header) from `drivers`, which must end with `none`. */
export async function pickMacDriver(drivers: readonly SecurityDriver[]): Promise<SecurityDriver> {
  const probed = await Promise.all(drivers.map(async (driver) => ({ driver, state: (await driver.probe()).state })));
  const chosen = probed.find((p) => confines(p.state)) ?? probed.find((p) => p.state === 'inactive') ?? probed[probed.length - 1];
  if (!chosen) throw new Error('no security driver registered');
  return chosen.driver;
}

/** The host's stack: its MAC driver over DAC, with every other driver kept to release old records' labels. */
export async function createSecurityStack(host: DriverHost, factories: readonly DriverFactory[] = MAC_DRIVERS): Promise<SecurityStack> {
  const drivers = factories.map((make) => make(host));
  const mac = await pickMacDriver(drivers);
  return new SecurityStack(mac, new DacDriver({ range: host.config.vmIdRange }), drivers);
}
