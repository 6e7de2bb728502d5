import type { PolicyProfile } from '../../core/selinux/policy-profile';
import type { SelinuxMode } from '../../security/selinux/host-selinux';
import type { ActiveModel, SvirtEvent } from '../../contracts/ipc-contract';
import type { ServiceOptions } from '../app-services';
import type { VmService } from '../vm-service';
import type { VmStore } from '../vm-store';
import type { HelperConnection } from './helper-connection';
import type { VmViews } from './vm-views';

/** What every area of the app's services shares: built once by createServices, in the order the data flows. */
export interface ServiceContext {
  readonly options: ServiceOptions;
  readonly emit: (event: SvirtEvent) => void;
  readonly store: VmStore;
  readonly service: VmService;
  readonly profile: () => Promise<PolicyProfile>;
  /** The kernel's SELinux mode, read at each use: it can change under a running app (setenforce). */
  readonly mode: () => Promise<SelinuxMode>;
  /** The model that confines this host's VMs, as the helper probed it (SELinux's mode alone without a helper). */
  readonly activeModel: () => Promise<ActiveModel>;
  readonly connection: HelperConnection;
  readonly views: VmViews;
}

/** What SELinux's own mode says of the host when no helper answers (nothing is confined until one does). */
export function modelWithoutHelper(selinux: SelinuxMode): ActiveModel {
  return { model: 'selinux', modelName: 'SELinux', state: selinux === 'disabled' ? 'inactive' : selinux, layers: [] };
}

export function memo<T>(fn: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => {
    value ??= fn();
    value.catch(() => (value = undefined));
    return value;
  };
}
