import { stat } from 'node:fs/promises';
import { confinementOf, modeOfState, notConfinedReason } from '../../core/confinement';
import { levelOfLabel } from '../../core/selinux/context';
import { describeSelinuxLabel, labelParts, levelMark } from '../../core/selinux/label-parts';
import { EMPTY_TRANSLATION_TABLE, parseSetrans, type TranslationTable } from '../../core/selinux/setrans';
import type { LevelInUse } from '../../core/selinux/static-label-check';
import type { VmDefinition } from '../../core/vm-definition';
import type { ActiveModel, ConfinementDescription, McsLevel, VmDetails, VmResource, VmSummary } from '../../contracts/ipc-contract';
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
  /** `hostMode`, `model`: read once for a whole list (1,000 VMs are not 1,000 reads of selinuxfs or helper calls). */
  readonly toSummary: (vm: VmStatus, hostMode?: Promise<SelinuxMode>, model?: () => Promise<ActiveModel>) => Promise<VmSummary>;
  readonly summaryOf: (name: string) => Promise<VmSummary>;
  readonly details: (name: string) => Promise<VmDetails>;
  /** The levels the user's VMs hold (running) or name (static), for checking a new static label. */
  readonly levelsInUse: (except?: string) => Promise<LevelInUse[]>;
}

/**
 * A stopped VM's confinement as the host's model would take it at its next start. A running VM's
 * description is the helper's (its driver's describe); a stopped one has no run, so the user side
 * describes its seclabel here, taking SELinux's parts from the SELinux model, never splitting a context.
 */
export function describeStopped(active: Pick<ActiveModel, 'model' | 'modelName'>, seclabel: VmDefinition['seclabel']): ConfinementDescription {
  const base = { model: active.model, modelName: active.modelName, processLabel: null, imageLabel: null, distinct: null, processParts: [], imageParts: [], layers: [] };
  if (seclabel.mode === 'none') return { ...base, summary: `seclabel none: qemu will run unconfined, ${active.modelName} keeps it from nothing` };
  if (active.model === 'selinux') {
    if (seclabel.mode === 'static') return { model: 'selinux', ...describeSelinuxLabel({ process: seclabel.label, image: null, dynamic: false, distinct: levelMark(seclabel.label)?.pair ?? null }) };
    return { ...base, modelName: describeSelinuxLabel({ process: null, image: null, dynamic: true, distinct: null }).modelName, summary: 'a fresh MCS pair is drawn at each start: only this VM and its private files will carry it' };
  }
  if (active.model === 'apparmor') return { ...base, summary: 'a profile is generated from this VM\'s own files at each start and removed when it stops' };
  return { ...base, summary: `no mandatory access control confines VMs on this host (${active.modelName})` };
}

/** The chip of a description whose model writes no level (an AppArmor profile): its distinct value. */
const distinctMark = (security: ConfinementDescription): McsLevel | null =>
  security.distinct === null ? null : { level: security.distinct, name: null, pair: security.distinct };

export function createVmViews(store: VmStore, service: VmService, mode: () => Promise<SelinuxMode>, activeModel: () => Promise<ActiveModel>): VmViews {
  const translations = memo(async (): Promise<TranslationTable> => {
    const conf = (await readPolicyFiles()).setransConf;
    try {
      return conf === undefined ? EMPTY_TRANSLATION_TABLE : parseSetrans(conf);
    } catch {
      return EMPTY_TRANSLATION_TABLE;
    }
  });

  const mcsLevel = async (label: string | null): Promise<McsLevel | null> => {
    const mark = levelMark(label);
    if (!mark) return null;
    const name = (await translations()).toName(mark.level);
    return { ...mark, name: name === mark.level ? null : name };
  };

  /** A running VM as the helper reports it; a stopped one as it would start on this host now. */
  const confinementNow = async (vm: VmStatus, hostMode: Promise<SelinuxMode> | undefined, model: () => Promise<ActiveModel>): Promise<Pick<VmSummary, 'confinement' | 'confined' | 'notConfinedReason'>> => {
    if (vm.state !== 'stopped' && vm.confinement !== null) return { confinement: vm.confinement, confined: vm.confined, notConfinedReason: vm.notConfinedReason };
    const active = await model();
    // A stopped VM as a start would hold it now: under the host's model (SELinux's mode read here, as the helper may not run).
    const now = active.model === 'selinux' ? await (hostMode ?? mode()) : modeOfState(active.state);
    const confinement = confinementOf({ mode: now, seclabelMode: vm.seclabel.mode, inLabel: now !== 'disabled' });
    return { confinement, confined: confinement === 'confined', notConfinedReason: notConfinedReason(confinement, active.modelName) };
  };

  const toSummary = async (vm: VmStatus, hostMode?: Promise<SelinuxMode>, model: () => Promise<ActiveModel> = activeModel): Promise<VmSummary> => {
    const staticLabel = vm.seclabel.mode === 'static' ? vm.seclabel.label : null;
    const processLabel = vm.processLabel ?? staticLabel;
    // The host's model (a helper request) only for what the helper's answer does not describe: a stopped VM.
    const active = memo(model);
    const security = vm.state !== 'stopped' && vm.security ? vm.security : describeStopped(await active(), vm.seclabel);
    return {
      name: vm.name,
      state: vm.state,
      ...(await confinementNow(vm, hostMode, active)),
      processLabel,
      imageLabel: vm.imageLabel,
      processLevel: (await mcsLevel(processLabel)) ?? distinctMark(security),
      imageLevel: await mcsLevel(vm.imageLabel),
      seclabel: { mode: vm.seclabel.mode, relabel: vm.seclabel.mode === 'dynamic' || (vm.seclabel.mode === 'static' && vm.seclabel.relabel) },
      security,
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
      expectedParts: labelParts(expected),
      expectedLevel: await mcsLevel(expected),
      freshPair: !running && label.freshPair,
      actualLabel: label.actualLabel,
      actualParts: labelParts(label.actualLabel),
      actualLevel: await mcsLevel(label.actualLabel),
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
