import type { VmSummary } from '../../../src/contracts/ipc-contract';

export interface PairConflicts {
  /** Other VMs holding the same process pair: each can open the other's private images. */
  sharesPairWith: string[];
  /** The image label's pair is not the process's: the VM cannot open its own private images, or opens another's. */
  imagePairDiffers: boolean;
}

/** What is wrong with each VM's pairs, by VM name; VMs without a pair (stopped dynamic, unconfined) have none. */
export function findPairConflicts(vms: readonly VmSummary[]): Map<string, PairConflicts> {
  const holders = new Map<string, string[]>();
  for (const vm of vms) {
    const pair = vm.processLevel?.pair ?? null;
    if (pair) holders.set(pair, [...(holders.get(pair) ?? []), vm.name]);
  }
  const result = new Map<string, PairConflicts>();
  for (const vm of vms) {
    const pair = vm.processLevel?.pair ?? null;
    const imagePair = vm.imageLevel?.pair ?? null;
    result.set(vm.name, {
      sharesPairWith: pair ? (holders.get(pair) ?? []).filter((name) => name !== vm.name) : [],
      imagePairDiffers: pair !== null && imagePair !== null && pair !== imagePair,
    });
  }
  return result;
}
