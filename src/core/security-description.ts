/**
 * How a VM is confined, as data the user side shows without knowing the model: the helper's security
 * driver writes it (SecurityDriver.describe), the helper's answers carry it, and the CLI and the renderer
 * print its fields as they are. Nothing here is parsed again: a context string, a profile name and a uid
 * arrive already split into labelled parts, so no user-side code splits `user:role:type:level` itself and
 * a model added later (AppArmor) needs no change on the user side.
 */

/** The security models a helper may run; `none` confines nothing. */
export type SecurityModelId = 'selinux' | 'apparmor' | 'dac' | 'none';

/**
 * What the kernel does with a model: enforcing, permissive (logs only), inactive (installed, not run by
 * the kernel), absent.
 */
export type ModelStateName = 'enforcing' | 'permissive' | 'inactive' | 'absent';

/** One named piece of a label, in the order the model writes them (SELinux: user, role, type, level). */
export interface LabelPart {
  /** What the piece is, in words: "type", "MCS pair", "profile", "uid". */
  readonly name: string;
  readonly value: string;
  /** What it means for this VM, when there is something to say ("only this VM's files carry it"). */
  readonly meaning?: string;
}

export interface ConfinementDescription {
  readonly model: SecurityModelId;
  /** The model's name for people: "SELinux (sVirt)", "AppArmor", "no confinement". */
  readonly modelName: string;
  /** What qemu runs as, in the model's own spelling (a context, a profile name); null when it runs unconfined. */
  readonly processLabel: string | null;
  /** What the VM's private files carry, in the model's spelling; null when the model labels no files. */
  readonly imageLabel: string | null;
  /** What makes this VM's label its own (an MCS pair, a profile name); null when nothing does. */
  readonly distinct: string | null;
  /** One sentence for people: how this VM is kept apart from the others. */
  readonly summary: string;
  /** The process label's pieces, for display. */
  readonly processParts: readonly LabelPart[];
  /** The image label's pieces, for display. */
  readonly imageParts: readonly LabelPart[];
  /** The layers stacked under the model (DAC: the VM's own uid and gid), each described the same way. */
  readonly layers: readonly ConfinementLayer[];
}

/** A model stacked under the main one (DAC), as labelled parts and a sentence. */
export interface ConfinementLayer {
  readonly model: SecurityModelId;
  readonly modelName: string;
  readonly summary: string;
  readonly parts: readonly LabelPart[];
}
