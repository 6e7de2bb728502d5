import type { VmState } from '../../../src/contracts/ipc-contract';

const STATE_TEXT: Record<VmState, string> = { stopped: 'Stopped', starting: 'Starting', running: 'Running', stopping: 'Stopping' };

export function StateBadge({ state }: { state: VmState }) {
  return (
    <span className={`state state--${state}`} data-testid="vm-state">
      <span className="state__dot" aria-hidden="true" />
      {STATE_TEXT[state]}
    </span>
  );
}
