import { randomUUID } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { sharedContentLabel } from '../../core/selinux/policy-profile';
import { checkStaticLabel } from '../../core/selinux/static-label-check';
import { labelParts, staticLabelForm } from '../../core/selinux/label-parts';
import type { LabelChange, RelabelPreview, RelabelRequest, RelabelResult, SvirtCalls, VmSummary } from '../../contracts/ipc-contract';
import { readLabels } from '../../security/selinux/file-labels';
import type { ServiceContext } from './service-context';

type LabelCallName = 'previewRelabel' | 'applyRelabel' | 'cancelRelabel' | 'validateStaticLabel' | 'staticLabelForm' | 'updateSeclabel';

/** Files of a tree (or the file itself), without following symlinks, as the helper will label them. */
async function filesOf(root: string): Promise<{ files: string[]; isTree: boolean }> {
  const st = await stat(root);
  if (!st.isDirectory()) return { files: [root], isTree: false };
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const files = entries.filter((e) => e.isFile() || e.isDirectory()).map((e) => path.join(e.parentPath, e.name));
  return { files: [root, ...files], isTree: true };
}

/**
 * Relabeling a VM's disk (preview, apply with progress, cancel) and its seclabel (a static label checked
 * against the policy and the other VMs' pairs before it is saved).
 */
export function labelCalls({ emit, store, service, profile, connection, views }: ServiceContext): Pick<SvirtCalls, LabelCallName> {
  // The helper job of each running applyRelabel, by VM and path, so that the page can cancel it.
  const relabelJobs = new Map<string, string>();

  /** The label a resource gets when turned into `to`; null for private on a stopped VM (its own label comes back). */
  const targetLabel = async (request: RelabelRequest, vm: VmSummary): Promise<string | null> => {
    if (request.to === 'shared' || request.to === 'readonly') return sharedContentLabel(await profile(), request.to);
    return vm.state === 'stopped' ? null : vm.imageLabel;
  };

  const preview = async (request: RelabelRequest): Promise<RelabelPreview> => {
    const definition = await store.get(request.vm);
    if (!definition.disks.some((d) => d.path === request.path)) throw new Error(`${request.path} is not a disk of ${request.vm}`);
    const vm = await views.summaryOf(request.vm);
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

  return {
    previewRelabel: preview,

    applyRelabel: async (request): Promise<RelabelResult> => {
      const before = await preview(request);
      const vm = await views.summaryOf(request.vm);
      const onProgress = (name: string, data: { path: string; done: number; total: number }) => {
        if (name === 'relabel-progress' && data.path === request.path) emit({ event: 'relabelProgress', payload: { vm: request.vm, ...data } });
      };
      const h = connection.helper();
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
      const after = await views.details(request.vm);
      const resource = after.resources.find((r) => r.path === request.path);
      if (!resource) throw new Error(`${request.path} is no longer a resource of ${request.vm}`);
      return { ...request, changed: failed.length === 0 ? before.count : 0, failed, resource };
    },

    cancelRelabel: async ({ vm, path: target }) => {
      const job = relabelJobs.get(`${vm}\0${target}`);
      if (!job) throw new Error(`no relabel of ${target} is running for ${vm}`);
      await connection.helper().request('cancelRelabel', { job });
    },

    validateStaticLabel: async ({ vm, label, relabel }) => {
      const verdict = checkStaticLabel(label, relabel, await profile(), await views.levelsInUse(vm));
      const shown = verdict.errors.length > 0 ? null : label.trim();
      return {
        ...verdict,
        processParts: labelParts(shown), processLevel: await views.mcsLevel(shown),
        imageParts: labelParts(verdict.imageLabel), imageLevel: await views.mcsLevel(verdict.imageLabel),
      };
    },

    staticLabelForm: async ({ label }) => staticLabelForm(label, (await profile()).processContext),

    updateSeclabel: async ({ vm, seclabel }) => {
      if (seclabel.mode === 'static') {
        const verdict = checkStaticLabel(seclabel.label, seclabel.relabel, await profile(), await views.levelsInUse(vm));
        if (verdict.errors.length > 0) throw new Error(verdict.errors.join('; '));
      }
      const definition = await store.get(vm);
      const { version: _v, createdAt: _c, ...input } = definition;
      return store.update(vm, { ...input, seclabel });
    },
  };
}
