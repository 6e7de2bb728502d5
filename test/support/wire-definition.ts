import type { VmDefinitionInput } from '../../src/core/vm-definition';

/**
 * A definition as a test writes it: the JSON a client sends, some of it deliberately odd (a FIFO as a
 * disk, a missing file). The helper parses every `start` definition as untrusted input (toVmSpec), so the
 * tests claim the protocol's type here, in one place, rather than building typed definitions.
 */
export const wireDefinition = (json: object): VmDefinitionInput => json as VmDefinitionInput;
