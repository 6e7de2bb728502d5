import type { RelabelTarget } from '../../../src/contracts/ipc-contract';

/**
 * What each one-click sharing choice means, in the words the buttons and the confirmation use: plain
 * words first (meaning), then the exact label it gives (exact) for those who read SELinux.
 */
export const RELABEL_TARGETS: readonly { target: RelabelTarget; button: string; meaning: string; exact: string }[] = [
  {
    target: 'private',
    button: 'Private',
    meaning: 'Only this VM may open these files; their own label comes back when the VM stops.',
    exact: 'the VM’s image type with its MCS pair',
  },
  {
    target: 'shared',
    button: 'Shared read-write',
    meaning: 'Every VM may read and write these files.',
    exact: 'the image type at s0, without categories',
  },
  {
    target: 'readonly',
    button: 'Shared read-only',
    meaning: 'Every VM may read these files and none may write them.',
    exact: 'the read-only content type at s0',
  },
];

export const relabelTarget = (target: RelabelTarget) => RELABEL_TARGETS.find((t) => t.target === target) ?? RELABEL_TARGETS[0]!;
