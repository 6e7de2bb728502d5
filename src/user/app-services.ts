import { randomUUID } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { confinementOf, NOT_CONFINED_REASON } from '../core/confinement';
import { formatContext, formatRange, parseContext } from '../core/selinux/context';
import { EMPTY_TRANSLATION_TABLE, parseSetrans, type TranslationTable } from '../core/selinux/setrans';
import { checkStaticLabel, type LevelInUse } from '../core/selinux/static-label-check';
import type { AuditedVm } from '../core/selinux/audit-report';
import { auditedVms, auditRunningVms, idleContent } from './audit-service';
import { HelperClient, resolveHelperLaunch, type HelperLaunch } from './helper-client';
import type { RunInfo } from '../contracts/helper-protocol';
import { selinuxMode, type SelinuxMode } from '../security/selinux/host-selinux';
import type {
  AuditReport, HelperStatus, HostStatus, LabelChange, McsLevel, RelabelPreview, RelabelRequest, RelabelResult,
  SvirtCalls, SvirtEvent, Unsubscribe, VmDetails, VmResource, VmSummary,
} from '../contracts/ipc-contract';
import { hostUseOfDevice } from '../host/block-devices';
import { readLabels } from '../security/selinux/file-labels';
import { loadPolicyProfile, readPolicyFiles } from '../security/selinux/selinux-files';
import type { DiskClass, VmDefinition } from '../core/vm-definition';
import { checkPortForwards, FORM_CHANGE_FIELDS, readableIso } from './vm-changes';
import { probeDiskImage } from './vm-import';
import { parseDiskSize } from './disk-images';
import { VmService, type ResourceLabel, type VmStatus } from './vm-service';
import { defaultVmDirectory, VmStore } from './vm-store';
import { inUserWords } from '../core/user-words';
import { PRODUCT_VERSION } from '../core/version';

/** The services behind every contract call, free of Electron so the browser tests drive the same code. */
export type Services = SvirtCalls & {
  /** Contract events for the renderer (VM state, console bytes, relabel progress, helper status). */
  onEvent(listener: (event: SvirtEvent) => void): Unsubscribe;
  /** Ends the helper session on quit; VMs keep running. */
  dispose?(): Promise<void>;
};

export interface ServiceOptions {
  /** Where VM definitions live (default: $XDG_CONFIG_HOME/svirt-manager/vms). */
  readonly vmDirectory?: string;
  /** How to start the root helper (default: pkexec, or direct when root). */
  readonly helperLaunch?: HelperLaunch;
  readonly helperEnv?: NodeJS.ProcessEnv;
  /**
   * Where the audit takes the running VMs and their files from (default: the helper's running VMs, their
   * files' labels read from disk). The scale bench passes 100 VMs' records over real labeled files: 100
   * qemu processes do not fit its machine, and everything after this point is the app's own path.
   */
  readonly auditedVms?: () => Promise<AuditedVm[]>;
}

function memo<T>(fn: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => {
    value ??= fn();
    value.catch(() => (value = undefined));
    return value;
  };
}

const rangeOfLabel = (label: string | null): string | null => {
  if (!label) return null;
  try {
    const range = parseContext(label).range;
    return range ? formatRange(range) : null;
  } catch {
    return null;
  }
};

/** Files of a tree (or the file itself), without following symlinks, as the helper will label them. */
async function filesOf(root: string): Promise<{ files: string[]; isTree: boolean }> {
  const st = await stat(root);
  if (!st.isDirectory()) return { files: [root], isTree: false };
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const files = entries.filter((e) => e.isFile() || e.isDirectory()).map((e) => path.join(e.parentPath, e.name));
  return { files: [root, ...files], isTree: true };
}

/** Every call's error in the words of the app's form (user-words.ts), the one place the app's messages pass. */
function inAppWords(calls: SvirtCalls): SvirtCalls {
  const wrapped: Record<string, (request: never) => Promise<unknown>> = {};
  for (const [name, call] of Object.entries(calls) as [string, (request: never) => Promise<unknown>][]) {
    wrapped[name] = async (request) => {
      try {
        return await call(request);
      } catch (err) {
        if (err instanceof Error) err.message = inUserWords(err.message, 'app');
        throw err;
      }
    };
  }
  return wrapped as unknown as SvirtCalls;
}

export function createServices(options: ServiceOptions = {}): Services {
  const listeners = new Set<(event: SvirtEvent) => void>();
  const emit = (event: SvirtEvent) => listeners.forEach((l) => l(event));
  const store = new VmStore(options.vmDirectory ?? defaultVmDirectory());
  const profile = memo(() => loadPolicyProfile());
  const translations = memo(async (): Promise<TranslationTable> => {
    const conf = (await readPolicyFiles()).setransConf;
    try {
      return conf === undefined ? EMPTY_TRANSLATION_TABLE : parseSetrans(conf);
    } catch {
      return EMPTY_TRANSLATION_TABLE;
    }
  });

  let helperStatus: HelperStatus = { connected: false, version: null, launchedVia: null, error: null };
  const setHelperStatus = (status: HelperStatus) => {
    helperStatus = status;
    emit({ event: 'helperStatus', payload: status });
  };
  let client: HelperClient | undefined;
  // Console sessions this app holds, to name the VM in consoleEnded.
  const consoleVm = new Map<string, string>();
  // The helper job of each running applyRelabel, by VM and path, so that the page can cancel it.
  const relabelJobs = new Map<string, string>();

  const helper = (): HelperClient => {
    if (client) return client;
    const launch = options.helperLaunch ?? resolveHelperLaunch(options.helperEnv);
    const started = HelperClient.start(launch, options.helperEnv ?? process.env);
    client = started;
    setHelperStatus({ connected: true, version: null, launchedVia: launch.via, error: null });
    started.on('event', (name: string, data: Record<string, unknown>) => {
      if (name === 'console-data') emit({ event: 'consoleData', payload: { session: String(data.session), data: String(data.data) } });
      else if (name === 'console-end') {
        const session = String(data.session);
        emit({ event: 'consoleEnded', payload: { session, vm: consoleVm.get(session) ?? '', reason: String(data.reason) } });
        consoleVm.delete(session);
      } else if (name === 'display-data') emit({ event: 'displayData', payload: { session: String(data.session), data: String(data.data) } });
      else if (name === 'display-end') emit({ event: 'displayEnded', payload: { session: String(data.session), reason: String(data.reason) } });
      else if (name === 'vm-stopped') {
        const id = String(data.id);
        emit({ event: 'vmStateChanged', payload: { vm: id.slice(id.indexOf('/') + 1), state: 'stopped', pid: null } });
      }
    });
    started.on('exit', (err: Error) => {
      if (client === started) client = undefined;
      setHelperStatus({ connected: false, version: null, launchedVia: launch.via, error: err.message });
    });
    return started;
  };
  const service = new VmService(store, helper, profile);

  const mcsLevel = async (label: string | null): Promise<McsLevel | null> => {
    const level = rangeOfLabel(label);
    if (!level) return null;
    const name = (await translations()).toName(level);
    return { level, name: name === level ? null : name };
  };

  // Read at each use (a file read): the mode can change under a running app (setenforce).
  const mode = () => selinuxMode();
  /** A running VM as the helper reports it; a stopped one as it would start on this host now. */
  const confinementNow = async (vm: VmStatus, hostMode?: Promise<SelinuxMode>): Promise<Pick<VmSummary, 'confinement' | 'confined' | 'notConfinedReason'>> => {
    if (vm.state !== 'stopped' && vm.confinement !== null) return { confinement: vm.confinement, confined: vm.confined, notConfinedReason: vm.notConfinedReason };
    const selinux = await (hostMode ?? mode());
    const confinement = confinementOf({ mode: selinux, seclabelMode: vm.seclabel.mode, inLabel: selinux !== 'disabled' });
    return { confinement, confined: confinement === 'confined', notConfinedReason: NOT_CONFINED_REASON[confinement] };
  };

  /** `hostMode`: the mode read once for a whole list (1,000 VMs are not 1,000 reads of selinuxfs). */
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

  /** A UEFI VM's own variable store, copied from the template beside its definition, as the user. */
  /**
   * A disk's format as qemu-img reads it; a block device (root's to open) is checked by the helper as a
   * start would check it and is raw.
   */
  const probeDisk = async (p: string, cls: DiskClass): Promise<{ path: string; format: 'raw' | 'qcow2' }> => {
    if (!p.startsWith('/dev/')) return probeDiskImage(p);
    await helper().request('checkDevice', { path: p, class: cls });
    return { path: p, format: 'raw' };
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

  /** The label a resource gets when turned into `to`; null for private on a stopped VM (its own label comes back). */
  const targetLabel = async (request: RelabelRequest, vm: VmSummary): Promise<string | null> => {
    const p = await profile();
    const s0 = { low: { sensitivity: p.categoryRange.sensitivity, categories: [] }, high: { sensitivity: p.categoryRange.sensitivity, categories: [] } };
    if (request.to === 'shared') return formatContext({ ...p.imageContext, range: s0 });
    if (request.to === 'readonly') return formatContext({ ...p.contentContext, range: s0 });
    return vm.state === 'stopped' ? null : vm.imageLabel;
  };

  const preview = async (request: RelabelRequest): Promise<RelabelPreview> => {
    const definition = await store.get(request.vm);
    if (!definition.disks.some((d) => d.path === request.path)) throw new Error(`${request.path} is not a disk of ${request.vm}`);
    const vm = await summaryOf(request.vm);
    const warnings: string[] = [];
    if (vm.state !== 'stopped') warnings.push(`${request.vm} is running: the new label applies at once`);
    const to = await targetLabel(request, vm);
    const { files } = await filesOf(request.path);
    const current = await readLabels(files);
    const changes: LabelChange[] = [];
    for (const file of files) {
      const from = current.get(file) ?? null;
      if (to === null) changes.push({ path: file, from, to: '(its label from before it was shared)' });
      else if (from !== to) changes.push({ path: file, from, to });
    }
    if (to === null) warnings.push('private: the helper puts back the labels these files had before; the VM gives them its own pair when it starts');
    for (const other of (await store.list()).definitions) {
      if (other.name !== request.vm && other.disks.some((d) => d.path === request.path)) warnings.push(`${other.name} also uses this file (${other.disks.find((d) => d.path === request.path)?.class})`);
    }
    return { ...request, changes, count: changes.length, warnings };
  };

  const levelsInUse = async (except?: string): Promise<LevelInUse[]> => {
    const { vms } = await service.list();
    return vms.flatMap((vm) => {
      const label = vm.processLabel ?? (vm.seclabel.mode === 'static' ? vm.seclabel.label : null);
      const range = vm.name === except ? null : rangeOfLabel(label);
      return range ? [{ range, holder: `VM ${vm.name}` }] : [];
    });
  };

  const calls: SvirtCalls = {
    appInfo: async () => ({ name: 'sVirt Manager', version: PRODUCT_VERSION }),

    hostStatus: async (): Promise<HostStatus> => {
      const p = await profile();
      const profileView = {
        processType: p.processContext.type, tcgProcessType: p.tcgProcessType ?? null, imageType: p.imageContext.type,
        contentType: p.contentContext.type, fallback: p.fallback, notes: [...p.notes],
      };
      try {
        const status = await helper().request('status');
        setHelperStatus({ ...helperStatus, connected: true, version: status.version, error: null });
        return { selinux: { mode: status.selinux, policyType: p.policyType }, profile: profileView, accel: status.accel, helper: helperStatus };
      } catch (err) {
        return {
          selinux: { mode: await mode(), policyType: p.policyType }, profile: profileView,
          accel: { kind: 'tcg', reason: `unknown: the helper is not available (${(err as Error).message})` }, helper: helperStatus,
        };
      }
    },

    listVms: async () => {
      const hostMode = mode();
      return Promise.all((await service.list()).vms.map((vm) => toSummary(vm, hostMode)));
    },
    getVm: ({ name }) => details(name),
    defineVm: async (input) => {
      // The image's format is what qemu-img reads in it, never what a form said (qemu would misread the disk).
      const disks = await Promise.all(input.disks.map(async (d) => ({ ...d, ...(await probeDisk(d.path, d.class)) })));
      if (input.network?.mode === 'user') checkPortForwards(input.network.portForwards ?? [], FORM_CHANGE_FIELDS.portForwards);
      return service.define({ ...input, disks }, FORM_CHANGE_FIELDS);
    },
    deleteVm: ({ name }) => service.undefine(name),

    startVm: async ({ name, allowUnconfined }) => {
      emit({ event: 'vmStateChanged', payload: { vm: name, state: 'starting', pid: null } });
      try {
        const run: RunInfo = await service.start(name, { allowUnconfined });
        emit({ event: 'vmStateChanged', payload: { vm: name, state: 'running', pid: run.pid } });
      } catch (err) {
        emit({ event: 'vmStateChanged', payload: { vm: name, state: 'stopped', pid: null } });
        throw err;
      }
      return summaryOf(name);
    },

    shutdownVm: async ({ name }) => {
      emit({ event: 'vmStateChanged', payload: { vm: name, state: 'stopping', pid: null } });
      await service.stop(name);
      emit({ event: 'vmStateChanged', payload: { vm: name, state: 'stopped', pid: null } });
    },

    forceOffVm: async ({ name }) => {
      await service.stop(name, { force: true });
      emit({ event: 'vmStateChanged', payload: { vm: name, state: 'stopped', pid: null } });
    },

    previewRelabel: preview,

    applyRelabel: async (request): Promise<RelabelResult> => {
      const before = await preview(request);
      const vm = await summaryOf(request.vm);
      const onProgress = (name: string, data: { path: string; done: number; total: number }) => {
        if (name === 'relabel-progress' && data.path === request.path) emit({ event: 'relabelProgress', payload: { vm: request.vm, ...data } });
      };
      const h = helper();
      h.on('event', onProgress);
      const failed: { path: string; error: string }[] = [];
      try {
        const mode = request.to === 'private' ? (vm.state === 'stopped' ? 'restore' : 'private') : request.to;
        const job = randomUUID();
        relabelJobs.set(`${request.vm}\0${request.path}`, job);
        await service.relabel(request.path, mode, mode === 'private' ? request.vm : undefined, job).finally(() => relabelJobs.delete(`${request.vm}\0${request.path}`));
      } catch (err) {
        failed.push({ path: request.path, error: (err as Error).message });
      } finally {
        h.off('event', onProgress);
      }
      if (failed.length === 0) {
        // The class is part of the definition: the next start labels the disk the same way.
        const definition = await store.get(request.vm);
        const disks = definition.disks.map((d) => (d.path === request.path ? { ...d, class: request.to } : d));
        const { version: _v, createdAt: _c, ...input } = definition;
        await store.update(request.vm, { ...input, disks });
      }
      const after = await details(request.vm);
      const resource = after.resources.find((r) => r.path === request.path);
      if (!resource) throw new Error(`${request.path} is no longer a resource of ${request.vm}`);
      return { ...request, changed: failed.length === 0 ? before.count : 0, failed, resource };
    },

    cancelRelabel: async ({ vm, path: target }) => {
      const job = relabelJobs.get(`${vm}\0${target}`);
      if (!job) throw new Error(`no relabel of ${target} is running for ${vm}`);
      await helper().request('cancelRelabel', { job });
    },

    validateStaticLabel: async ({ vm, label, relabel }) => checkStaticLabel(label, relabel, await profile(), await levelsInUse(vm)),

    updateSeclabel: async ({ vm, seclabel }) => {
      if (seclabel.mode === 'static') {
        const verdict = checkStaticLabel(seclabel.label, seclabel.relabel, await profile(), await levelsInUse(vm));
        if (verdict.errors.length > 0) throw new Error(verdict.errors.join('; '));
      }
      const definition = await store.get(vm);
      const { version: _v, createdAt: _c, ...input } = definition;
      return store.update(vm, { ...input, seclabel });
    },

    consoleAttach: async ({ vm }) => {
      const attached = await helper().request('consoleAttach', { vm });
      consoleVm.set(attached.session, vm);
      return { session: attached.session, replayedBytes: attached.replayedBytes };
    },
    consoleInput: async ({ session, data }) => {
      await helper().request('consoleInput', { session, data });
    },
    consoleResize: async ({ session, cols, rows }) => {
      await helper().request('consoleResize', { session, cols, rows });
    },
    consoleDetach: async ({ session }) => {
      consoleVm.delete(session);
      await helper().request('consoleDetach', { session });
    },

    displayAttach: async ({ vm }) => {
      const attached = await helper().request('displayAttach', { vm });
      return { session: attached.session };
    },
    displayInput: async ({ session, data }) => {
      await helper().request('displayInput', { session, data });
    },
    displayDetach: async ({ session }) => {
      await helper().request('displayDetach', { session });
    },

    audit: async (): Promise<AuditReport> => {
      const [audited, selinux] = await Promise.all([options.auditedVms?.() ?? auditedVms(service), mode()]);
      const matrix = await auditRunningVms(selinux, audited, { idle: await idleContent(store, audited) });
      const withLevels = await Promise.all(matrix.vms.map(async (v) => ({ ...v, processLevel: await mcsLevel(v.processLabel) })));
      return { ...matrix, vms: withLevels };
    },

    createDisk: ({ path: target, format, size }) => service.createDisk({ path: target, format, sizeBytes: parseDiskSize(size, 'Size') }),
    // Outside Electron there is no native picker: the page offers its path field.
    pickDiskFile: async () => null,
    listDevices: () => helper().request('listDevices'),
    attachDisk: async ({ vm, path: image, class: diskClass }) => {
      const probed = await probeDisk(image, diskClass);
      return service.edit(vm, { addDisks: [{ path: probed.path, format: probed.format, class: diskClass, relabel: true }] }, FORM_CHANGE_FIELDS);
    },
    detachDisk: ({ vm, path: image }) => service.edit(vm, { removeDisks: [image] }, FORM_CHANGE_FIELDS),
    editVm: async ({ vm, iso, ...changes }) => {
      // The ISO is the user's file: stored as the file itself, checked now rather than at the next start.
      const isoPath = iso === undefined || iso === null ? iso : await readableIso(iso, FORM_CHANGE_FIELDS.iso);
      return service.edit(vm, { ...changes, ...(isoPath === undefined ? {} : { iso: isoPath }) }, FORM_CHANGE_FIELDS);
    },
    controlVm: async ({ name, action }) => {
      await service.control(name, action);
      return summaryOf(name);
    },
    snapshot: async ({ vm, op, snapshot }) => {
      const result = await service.snapshot(vm, op, snapshot);
      return { vm, via: result.via, disks: result.disks.map((d) => ({ disk: d.disk, snapshots: d.snapshots.map((x) => ({ name: x.name, date: x.date })) })) };
    },
    cloneVm: async ({ name, newName }) => {
      const result = await service.clone(name, newName);
      return { name: result.definition.name, note: result.note };
    },
  };

  return {
    ...inAppWords(calls),
    onEvent: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose: async () => {
      await client?.close();
    },
  };
}
