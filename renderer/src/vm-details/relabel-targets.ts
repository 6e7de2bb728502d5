import type { RelabelTarget } from '../../../src/main/ipc-contract';

/** What each one-click sharing choice means, in the words the buttons and the confirmation use. */
export const RELABEL_TARGETS: readonly { target: RelabelTarget; button: string; meaning: string }[] = [
  {
    target: 'private',
    button: 'Private',
    meaning: 'Only this VM may open it: it gets the VM’s own image label (its MCS pair), restored when the VM stops.',
  },
  {
    target: 'shared',
    button: 'Shared read-write',
    meaning: 'Every confined VM may read and write it: it gets the image type at s0, without categories.',
  },
  {
    target: 'readonly',
    button: 'Shared read-only',
    meaning: 'Every confined VM may read it and none may write it: it gets the read-only content type.',
  },
];

export const relabelTarget = (target: RelabelTarget) => RELABEL_TARGETS.find((t) => t.target === target) ?? RELABEL_TARGETS[0]!;
