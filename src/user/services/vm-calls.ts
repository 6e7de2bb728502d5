import type { DiskClass } from '../../core/vm-definition';
import type { RunInfo } from '../../contracts/helper-protocol';
import type { SvirtCalls } from '../../contracts/ipc-contract';
import { parseDiskSize } from '../disk-images';
import { checkPortForwards, FORM_CHANGE_FIELDS, readableIso } from '../vm-changes';
import { probeDiskImage } from '../vm-import';
import { memo, type ServiceContext } from './service-context';

type VmCallName =
  | 'listVms' | 'getVm' | 'defineVm' | 'deleteVm' | 'startVm' | 'shutdownVm' | 'forceOffVm' | 'controlVm' | 'snapshot' | 'cloneVm'
  | 'editVm' | 'createDisk' | 'pickDiskFile' | 'listDevices' | 'attachDisk' | 'detachDisk';

/** Defining, running and changing VMs and their disks; every answer about a VM comes from the views. */
export function vmCalls({ emit, service, mode, activeModel, connection, views }: ServiceContext): Pick<SvirtCalls, VmCallName> {
  /**
   * A disk's format as qemu-img reads it; a block device (root's to open) is checked by the helper as a
   * start would check it and is raw.
   */
  const probeDisk = async (p: string, cls: DiskClass): Promise<{ path: string; format: 'raw' | 'qcow2' }> => {
    if (!p.startsWith('/dev/')) return probeDiskImage(p);
    await connection.helper().request('checkDevice', { path: p, class: cls });
    return { path: p, format: 'raw' };
  };
  const stateChanged = (vm: string, state: 'starting' | 'running' | 'stopping' | 'stopped', pid: number | null = null) =>
    emit({ event: 'vmStateChanged', payload: { vm, state, pid } });

  return {
    listVms: async () => {
      const hostMode = mode();
      const model = memo(activeModel);
      return Promise.all((await service.list()).vms.map((vm) => views.toSummary(vm, hostMode, model)));
    },
    getVm: ({ name }) => views.details(name),
    defineVm: async (input) => {
      // The image's format is what qemu-img reads in it, never what a form said (qemu would misread the disk).
      const disks = await Promise.all(input.disks.map(async (d) => ({ ...d, ...(await probeDisk(d.path, d.class)) })));
      if (input.network?.mode === 'user') checkPortForwards(input.network.portForwards ?? [], FORM_CHANGE_FIELDS.portForwards);
      return service.define({ ...input, disks }, FORM_CHANGE_FIELDS);
    },
    deleteVm: ({ name }) => service.undefine(name),

    startVm: async ({ name, allowUnconfined }) => {
      stateChanged(name, 'starting');
      try {
        const run: RunInfo = await service.start(name, { allowUnconfined });
        stateChanged(name, 'running', run.pid);
      } catch (err) {
        stateChanged(name, 'stopped');
        throw err;
      }
      return views.summaryOf(name);
    },
    shutdownVm: async ({ name }) => {
      stateChanged(name, 'stopping');
      await service.stop(name);
      stateChanged(name, 'stopped');
    },
    forceOffVm: async ({ name }) => {
      await service.stop(name, { force: true });
      stateChanged(name, 'stopped');
    },
    controlVm: async ({ name, action }) => {
      await service.control(name, action);
      return views.summaryOf(name);
    },
    snapshot: async ({ vm, op, snapshot }) => {
      const result = await service.snapshot(vm, op, snapshot);
      return { vm, via: result.via, disks: result.disks.map((d) => ({ disk: d.disk, snapshots: d.snapshots.map((x) => ({ name: x.name, date: x.date })) })) };
    },
    cloneVm: async ({ name, newName }) => {
      const result = await service.clone(name, newName);
      return { name: result.definition.name, note: result.note };
    },
    editVm: async ({ vm, iso, ...changes }) => {
      // The ISO is the user's file: stored as the file itself, checked now rather than at the next start.
      const isoPath = iso === undefined || iso === null ? iso : await readableIso(iso, FORM_CHANGE_FIELDS.iso);
      return service.edit(vm, { ...changes, ...(isoPath === undefined ? {} : { iso: isoPath }) }, FORM_CHANGE_FIELDS);
    },

    createDisk: ({ path: target, format, size }) => service.createDisk({ path: target, format, sizeBytes: parseDiskSize(size, 'Size') }),
    // Outside Electron there is no native picker: the page offers its path field.
    pickDiskFile: async () => null,
    listDevices: () => connection.helper().request('listDevices'),
    attachDisk: async ({ vm, path: image, class: diskClass }) => {
      const probed = await probeDisk(image, diskClass);
      return service.edit(vm, { addDisks: [{ path: probed.path, format: probed.format, class: diskClass, relabel: true }] }, FORM_CHANGE_FIELDS);
    },
    detachDisk: ({ vm, path: image }) => service.edit(vm, { removeDisks: [image] }, FORM_CHANGE_FIELDS),
  };
}
