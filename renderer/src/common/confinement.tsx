import type { ActiveModel, VmSummary } from '../../../src/contracts/ipc-contract';

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

/**
 * What the host's security model does for the VMs, in one sentence, naming the model the helper probed;
 * never claims more than its state allows.
 */
export function hostConfinementText(security: ActiveModel | null | undefined, unconfinedVms = 0): string {
  if (security === undefined || security === null) return 'Reading how this host confines VMs…';
  const { model, modelName, state } = security;
  if (model === 'none' || state === 'inactive' || state === 'absent') {
    // An SELinux host without SELinux running still labels files, so they are ready when it runs.
    const labels = model === 'selinux' ? ' Files are still labeled, ready for when it is on.' : '';
    return `${model === 'none' ? 'No security model' : modelName} is off on this host: no VM is confined.${labels}`;
  }
  const some = unconfinedVms > 0 ? ` ${unconfinedVms} ${unconfinedVms === 1 ? 'VM runs' : 'VMs run'} unconfined.` : '';
  if (state === 'permissive') return `${modelName} is permissive: each VM gets its own label, but denials are only logged.${some}`;
  return `${modelName} enforces: each VM with a label runs confined by a label no other VM holds.${some}`;
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
