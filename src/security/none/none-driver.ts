/**
 * The `none` driver: the host runs no MAC model the product knows (no SELinux policy, no AppArmor). It
 * answers every verb with "nothing to do", so the lifecycle has no special case for such a host; the
 * stack still runs DAC under it, and a start asks before it runs qemu without MAC confinement.
 */
import type { ConfinementDescription, FileHolds, LabelBook, LiveLabel, ProbeResult, ProcessConfinement, SecuredVm, SecurityDriver, VmLabel } from '../security-driver';

export const NONE_LABEL: VmLabel = { model: 'none', dynamic: false, process: null, image: null, distinct: null };

export class NoneDriver implements SecurityDriver {
  readonly model = 'none' as const;
  readonly modelName = 'no MAC model';

  async probe(): Promise<ProbeResult> {
    return { model: this.model, state: 'absent' };
  }

  async prepare(_vm: SecuredVm): Promise<void> {}

  async generate(_vm: SecuredVm, _book: LabelBook): Promise<VmLabel> {
    return NONE_LABEL;
  }

  release(_vmId: string, _label: VmLabel, _book: LabelBook): void {}

  async sweep(_book: LabelBook, _keep: ReadonlySet<string>): Promise<readonly string[]> {
    return [];
  }

  async setAll(_vm: SecuredVm, _label: VmLabel, _files: FileHolds): Promise<void> {}

  async restoreAll(_vmId: string, _label: VmLabel): Promise<void> {}

  confineProcess(_vm: SecuredVm, _label: VmLabel): ProcessConfinement {
    return {};
  }

  async verifyProcess(_pid: number, _label: VmLabel): Promise<string | null> {
    return null;
  }

  async liveLabels(): Promise<LiveLabel[]> {
    return [];
  }

  async labelPrivateCopy(_path: string, _label: VmLabel, _original: string | null): Promise<void> {}

  async fileLabel(_path: string): Promise<string | null> {
    return null;
  }

  sharedLabel(_kind: 'shared' | 'readonly'): string | null {
    return null;
  }

  describe(_label: VmLabel): ConfinementDescription {
    return {
      model: this.model,
      modelName: 'no MAC confinement',
      processLabel: null,
      imageLabel: null,
      distinct: null,
      summary: 'this host runs neither SELinux nor AppArmor: qemu is kept apart by its own uid only',
      processParts: [],
      imageParts: [],
      layers: [],
    };
  }
}
