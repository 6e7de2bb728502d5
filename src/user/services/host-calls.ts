import type { AuditReport, HostStatus, SvirtCalls } from '../../contracts/ipc-contract';
import { PRODUCT_VERSION } from '../../core/version';
import { auditedVms, auditHost, idleContent } from '../audit-service';
import { modelWithoutHelper, type ServiceContext } from './service-context';

/** The host as the status bar shows it (SELinux, the policy's VM types, the accelerator, the helper) and the audit. */
export function hostCalls({ options, store, service, profile, mode, connection, views }: ServiceContext): Pick<SvirtCalls, 'appInfo' | 'hostStatus' | 'audit'> {
  return {
    appInfo: async () => ({ name: 'sVirt Manager', version: PRODUCT_VERSION }),

    hostStatus: async (): Promise<HostStatus> => {
      const p = await profile();
      const profileView = {
        processType: p.processContext.type, tcgProcessType: p.tcgProcessType ?? null, imageType: p.imageContext.type,
        contentType: p.contentContext.type, fallback: p.fallback, notes: [...p.notes],
      };
      try {
        const status = await connection.helper().request('status');
        connection.answered(status.version);
        return { security: status.security, selinux: { mode: status.selinux, policyType: p.policyType }, profile: profileView, accel: status.accel, helper: connection.status() };
      } catch (err) {
        const selinux = await mode();
        return {
          security: modelWithoutHelper(selinux), selinux: { mode: selinux, policyType: p.policyType }, profile: profileView,
          accel: { kind: 'tcg', reason: `unknown: the helper is not available (${(err as Error).message})` }, helper: connection.status(),
        };
      }
    },

    audit: async (): Promise<AuditReport> => {
      const [audited, selinux] = await Promise.all([options.auditedVms?.() ?? auditedVms(service), mode()]);
      const matrix = await auditHost(selinux, audited, () => service.vmProfiles(), { idle: await idleContent(store, audited) });
      const withLevels = await Promise.all(matrix.vms.map(async (v) => ({ ...v, processLevel: await views.mcsLevel(v.processLabel) })));
      return { ...matrix, vms: withLevels, resourceLevels: await Promise.all(matrix.resources.map((r) => views.mcsLevel(r.label))) };
    },
  };
}
