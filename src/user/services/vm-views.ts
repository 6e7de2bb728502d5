import { stat } from 'node:fs/promises';
import { confinementOf, NOT_CONFINED_REASON } from '../../core/confinement';
import { levelOfLabel } from '../../core/selinux/context';
import { EMPTY_TRANSLATION_TABLE, parseSetrans, type TranslationTable } from '../../core/selinux/setrans';
import type { LevelInUse } from '../../core/selinux/static-label-check';
import type { VmDefinition } from '../../core/vm-definition';
import type { McsLevel, VmDetails, VmResource, VmSummary } from '../../contracts/ipc-contract';
import { hostUseOfDevice } from '../../host/block-devices';
import type { SelinuxMode } from '../../security/selinux/host-selinux';
import { readPolicyFiles } from '../../security/selinux/selinux-files';
import type { ResourceLabel, VmService, VmStatus } from '../vm-service';
import type { VmStore } from '../vm-store';
import { memo } from './service-context';

/**
 * The VMs as the page shows them: a summary (state, confinement, labels with their setrans names) and the
 * details (definition and every resource with its expected and actual label). Every call that answers with
 * a VM builds it here, so the list, the details and a start's answer never disagree.
 */
export interface VmViews {
  readonly mcsLevel: (label: string | null) => Promise<McsLevel | null>;
  /** `hostMode`: the mode read once for a whole list (1,000 VMs are not 1,000 reads of selinuxfs). */
  readonly toSummary: (vm: VmStatus, hostMode?: Promise<SelinuxMode>) => Promise<VmSummary>;
  readonly summaryOf: (name: string) => Promise<VmSummary>;
  readonly details: (name: string) => Promise<VmDetails>;
  /** The levels the user's VMs hold (running) or name (static), for checking a new static label. */
  readonly levelsInUse: (except?: string) => Promise<LevelInUse[]>;
}

export function createVmViews(store: VmStore, service: VmService, mode: () => Promise<SelinuxMode>): VmViews {
  const translations = memo(async (): Promise<TranslationTable> => {
    const conf = (await readPolicyFiles()).setransConf;
    try {
      return conf === undefined ? EMPTY_TRANSLATION_TABLE : parseSetrans(conf);
    } catch {
      return EMPTY_TRANSLATION_TABLE;
    }
  });

  const mcsLevel = async (label: string | null): Promise<McsLevel | null> => {
    const level = levelOfLabel(label);
    if (!level) return null;
    const name = (await translations()).toName(level);
    return { level, name: name === level ? null : name };
  };

  /** A running VM as the helper reports it; a stopped one as it would start on this host now. */
  const confinementNow = async (vm: VmStatus, hostMode?: Promise<SelinuxMode>): Promise<Pick<VmSummary, 'confinement' | 'confined' | 'notConfinedReason'>> => {
    if (vm.state !== 'stopped' && vm.confinement !== null) return { confinement: vm.confinement, confined: vm.confined, notConfinedReason: vm.notConfinedReason };
    const selinux = await (hostMode ?? mode());
    const confinement = confinementOf({ mode: selinux, seclabelMode: vm.seclabel.mode, inLabel: selinux !== 'disabled' });
    return { confinement, confined: confinement === 'confined', notConfinedReason: NOT_CONFINED_REASON[confinement] };
  };

  const toSummary = async (vm: VmStatus, hostMode?: Promise<SelinuxMode>): Promise<VmSummary> => {
    const staticLabel = vm.seclabel.mode === 'static' ? vm.seclabel.label : null;
    const processLabel = vm.processLabel ?? staticLabel;
    return {
      name: vm.name,
      state: vm.state,
      ...(await confinementNow(vm, hostMode)),
      processLabel,
      imageLabel: vm.imageLabel,
      processLevel: await mcsLevel(processLabel),
      imageLevel: await mcsLevel(vm.imageLabel),
      seclabel: { mode: vm.seclabel.mode, relabel: vm.seclabel.mode === 'dynamic' || (vm.seclabel.mode === 'static' && vm.seclabel.relabel) },
      vcpus: vm.vcpus,
      memoryMiB: vm.memoryMiB,
      pid: vm.pid,
    };
  };

  const summaryOf = async (name: string): Promise<VmSummary> => {
    const found = (await service.list()).vms.find((vm) => vm.name === name);
    if (!found) throw new Error(`no VM named ${name}`);
    return toSummary(found);
  };

  const toResource = async (definition: VmDefinition, label: ResourceLabel, running: boolean): Promise<VmResource> => {
    const isCdrom = definition.boot.kind === 'iso' && definition.boot.iso === label.path;
    const kind = label.resource === 'disk' ? (isCdrom ? 'cdrom' : 'disk') : label.resource === 'kernel' || label.resource === 'initrd' || label.resource === 'dtb' || label.resource === 'nvram' ? label.resource : 'serial';
    const st = await stat(label.path).catch(() => null);
    // Shared and read-only content keeps its label when the VM stops; everything else is put back.
    const keepsLabel = label.class === 'shared' || label.class === 'readonly';
    const expected = running ? label.expectedLabel : keepsLabel ? label.plannedLabel : null;
    return {
      path: label.path,
      kind,
      class: label.class,
      // Guest device names exist for disks and CD-ROMs only (`disk vda` → `vda`).
      target: /^(disk|cdrom) /.test(label.device) ? label.device.replace(/^(disk|cdrom) /, '') : null,
      relabel: label.plannedLabel !== null,
      isTree: Boolean(st?.isDirectory()),
      expectedLabel: expected,
      freshPair: !running && label.freshPair,
      actualLabel: label.actualLabel,
      match: expected === null || expected === label.actualLabel,
      // Every planned path comes from the definition itself, so the only problem to report is a missing file.
      problem: st === null ? 'file not found' : null,
      ...(st?.isBlockDevice() ? await hostUseOfDevice(label.path).then((hostDevice) => (hostDevice ? { hostDevice } : {})) : {}),
    };
  };

  const details = async (name: string): Promise<VmDetails> => {
    const [definition, summary, labels] = await Promise.all([store.get(name), summaryOf(name), service.labels(name)]);
    const running = summary.state !== 'stopped';
    return { summary, definition, resources: await Promise.all(labels.map((l) => toResource(definition, l, running))) };
  };

  const levelsInUse = async (except?: string): Promise<LevelInUse[]> => {
    const { vms } = await service.list();
    return vms.flatMap((vm) => {
      const label = vm.processLabel ?? (vm.seclabel.mode === 'static' ? vm.seclabel.label : null);
      const range = vm.name === except ? null : levelOfLabel(label);
      return range ? [{ range, holder: `VM ${vm.name}` }] : [];
    });
  };

  return { mcsLevel, toSummary, summaryOf, details, levelsInUse };
}
