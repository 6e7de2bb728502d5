import type { SelinuxMode, VmSummary } from '../../../src/contracts/ipc-contract';

/**
 * One vocabulary for how a VM is (or would be) held: `confined` (SELinux enforces its pair),
 * `permissive` (the pair is set but denials are only logged) and `unconfined` (seclabel none, or a host
 * without SELinux). The list, the details, the console header and the sidebar all speak it, so no screen
 * calls a VM confined that another calls unconfined.
 */
export type ConfinementState = 'confined' | 'permissive' | 'unconfined';

/** The helper's word for the VM (confined, permissive, unconfined-disabled, unconfined-none), for the screens. */
export function confinementOf(vm: Pick<VmSummary, 'confinement'>): ConfinementState {
  return vm.confinement === 'confined' || vm.confinement === 'permissive' ? vm.confinement : 'unconfined';
}

export const CONFINEMENT_TEXT: Record<ConfinementState, string> = {
  confined: 'Confined',
  permissive: 'Permissive: logged, not enforced',
  unconfined: 'Unconfined',
};

/** What SELinux on this host does for the VMs, in one sentence; never claims more than the mode allows. */
export function hostConfinementText(mode: SelinuxMode | null | undefined, unconfinedVms = 0): string {
  if (mode === undefined || mode === null) return 'Reading how this host confines VMs…';
  if (mode === 'disabled') return 'SELinux is off on this host: no VM is confined. Files are still labeled, ready for when it is on.';
  const some = unconfinedVms > 0 ? ` ${unconfinedVms} ${unconfinedVms === 1 ? 'VM runs' : 'VMs run'} unconfined.` : '';
  if (mode === 'permissive') return `SELinux is permissive: each VM gets its own pair, but denials are only logged.${some}`;
  return `SELinux enforces: each VM with a label runs in its own domain with a pair no other VM holds.${some}`;
}

/** The strongest warning the app has: a VM that nothing but the qemu user's rights keeps from the host. */
export function UnconfinedWarning({ vm, reason }: { vm: string; reason: string | null }) {
  return (
    <div className="unconfined-warning" role="alert" data-testid="unconfined-warning">
      <strong>⚠ {vm} runs unconfined.</strong> A guest that takes over qemu may open other VMs’ images and the host’s files
      {reason ? ` (${reason})` : ''}.
    </div>
  );
}
