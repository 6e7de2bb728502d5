/**
 * The security description is part of both contracts (the helper's answers and the IPC's): its types live
 * in the pure core (src/core/security-description.ts), where the models' pure code writes it too.
 */
export * from '../core/security-description';
