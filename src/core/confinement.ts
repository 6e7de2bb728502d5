/**
 * How a VM is held, in one vocabulary for the helper's RunInfo, the CLI and the app:
 *
 *   confined             the kernel enforces, and qemu runs in the VM's label (read from /proc/PID/attr/current
 *                        after the start, not assumed from the plan);
 *   permissive           qemu runs in its label, but the model (SELinux, AppArmor) is permissive: denials are
 *                        logged, nothing is enforced;
 *   unconfined-disabled  the model is disabled: qemu runs without a label (started with allowUnconfined);
 *   unconfined-none      seclabel none: qemu runs without a label by the VM's own definition.
 *
 * "Confined" is never inferred from the SELinux mode alone: a VM whose qemu did not end up in its label is
 * not a state at all, the helper stops it. The enforcing mode is read when the state is reported, so a host
 * switched from permissive to enforcing reports its running VMs confined from then on. Pure: no I/O.
 */
import { canonicalContext } from './selinux/context';

export type Confinement = 'confined' | 'permissive' | 'unconfined-disabled' | 'unconfined-none';
export type SelinuxModeName = 'enforcing' | 'permissive' | 'disabled';

export const CONFINEMENTS: readonly Confinement[] = ['confined', 'permissive', 'unconfined-disabled', 'unconfined-none'];

/** Why a VM is not confined, in words for the CLI and the app, naming the host's model; null when it is. */
export function notConfinedReason(confinement: Confinement, modelName: string): string | null {
  switch (confinement) {
    case 'confined': return null;
    case 'permissive': return `labels applied, not enforced: ${modelName} is permissive`;
    case 'unconfined-disabled': return `not confined: ${modelName} disabled`;
    case 'unconfined-none': return 'seclabel none: runs unconfined';
  }
}

/** A model's state (security-driver.ts) as the mode this vocabulary judges by: only a running model confines. */
export function modeOfState(state: 'enforcing' | 'permissive' | 'inactive' | 'absent'): SelinuxModeName {
  return state === 'enforcing' || state === 'permissive' ? state : 'disabled';
}

export interface ConfinementFacts {
  /** The kernel's mode now. */
  readonly mode: SelinuxModeName;
  readonly seclabelMode: 'dynamic' | 'static' | 'none';
  /**
   * Whether qemu runs in the VM's label: for a running VM, checked after its start; for a stopped VM,
   * whether a start would put it there (SELinux enabled and a label to run in).
   */
  readonly inLabel: boolean;
}

export function confinementOf(facts: ConfinementFacts): Confinement {
  if (facts.seclabelMode === 'none') return 'unconfined-none';
  if (!facts.inLabel || facts.mode === 'disabled') return 'unconfined-disabled';
  return facts.mode === 'enforcing' ? 'confined' : 'permissive';
}

/**
 * Compares the label the kernel reports for qemu with the one it was started in; null when they are the
 * same context (spelled the kernel's way or not), else what went wrong, for the start's error.
 */
export function processLabelProblem(expected: string, actual: string | null): string | null {
  if (actual === null) return `qemu's label could not be read (expected ${expected})`;
  let same: boolean;
  try {
    same = canonicalContext(actual) === canonicalContext(expected);
  } catch {
    same = false;
  }
  return same ? null : `qemu runs as ${actual}, not in its label ${expected}`;
}
