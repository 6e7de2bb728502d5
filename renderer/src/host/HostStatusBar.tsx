import { useEffect, useState } from 'react';
import type { HelperStatus } from '../../../src/contracts/ipc-contract';
import { useApi, useSvirtEvent } from '../api';
import { useAsync } from '../common/use-async';

const MODE_TONE = { enforcing: 'ok', permissive: 'warning', disabled: 'error' } as const;
const MODE_MEANING = {
  enforcing: 'SELinux enforces: a confined VM is refused what its label does not allow.',
  permissive: 'SELinux only logs: a VM is allowed what its label does not allow, and the denial is recorded.',
  disabled: 'SELinux is off: no VM is confined; labels are still written to files.',
} as const;

/** The policy's type names, each explained on hover: what a user sees here is jargon otherwise. */
function TypeName({ name, meaning }: { name: string; meaning: string }) {
  return (
    <span className="statusbar__type" title={`${name}: ${meaning}`} data-testid={`type-${name}`}>
      {name}
    </span>
  );
}

/** The host facts everything else depends on: which model confines VMs and its state (SELinux: its policy), KVM or TCG, is the helper up. */
export function HostStatusBar() {
  const api = useApi();
  const status = useAsync(() => api.hostStatus(), [api]);
  const [helper, setHelper] = useState<HelperStatus | null>(null);
  useEffect(() => setHelper(status.data?.helper ?? null), [status.data]);
  useSvirtEvent('helperStatus', setHelper);

  if (status.error) {
    return (
      <footer className="statusbar" aria-label="Host status">
        <span className="statusbar__item statusbar__item--error" role="alert">
          Host status unavailable: {status.error}
        </span>
      </footer>
    );
  }
  const host = status.data;
  if (!host) {
    return (
      <footer className="statusbar" aria-label="Host status">
        <span className="statusbar__item">Reading host status…</span>
      </footer>
    );
  }
  const { security, selinux, profile, accel } = host;
  return (
    <footer className="statusbar" aria-label="Host status">
      <span className="statusbar__item" data-testid="security-model" title={`The security model that confines this host's VMs, stacked over: ${security.layers.join(', ') || 'nothing'}`}>
        {security.modelName} ({security.state})
      </span>
      {/* SELinux's mode and policy types matter where SELinux is the model; on an AppArmor host a red "SELinux disabled" would read as a fault. */}
      {security.model === 'selinux' && (
        <>
          <span className={`statusbar__item statusbar__item--${MODE_TONE[selinux.mode]}`} data-testid="selinux-mode" title={MODE_MEANING[selinux.mode]}>
            <span className="statusbar__dot" aria-hidden="true" />
            SELinux {selinux.mode}
          </span>
          <span className="statusbar__item" title="SELINUXTYPE in /etc/selinux/config">
            policy {selinux.policyType ?? 'unknown'}
          </span>
          <span className={`statusbar__item${profile.fallback ? ' statusbar__item--warning' : ''}`} data-testid="profile">
            <TypeName name={profile.processType} meaning="the domain a VM's qemu runs in when confined" />
            {profile.tcgProcessType && (
              <>
                {' / '}
                <TypeName name={profile.tcgProcessType} meaning="the same, for a guest emulated without KVM" />
              </>
            )}
            {' · '}
            <TypeName name={profile.imageType} meaning="the type of VM disk images; a private one also carries its VM's pair" />
            {' · '}
            <TypeName name={profile.contentType} meaning="read-only files every VM may read (kernels, shared content)" />
            {profile.fallback && <span title={profile.notes.join('\n')}> (built-in defaults)</span>}
          </span>
        </>
      )}
      <span className={`statusbar__item${accel.kind === 'tcg' ? ' statusbar__item--muted' : ''}`} title={accel.reason} data-testid="accel">
        {accel.kind === 'kvm' ? 'KVM' : 'TCG (emulated)'}
      </span>
      <span className="statusbar__spacer" />
      {helper && (
        <span
          className={`statusbar__item statusbar__item--${helper.connected ? 'ok' : 'error'}`}
          title={helper.error ?? (helper.launchedVia ? `started via ${helper.launchedVia}` : undefined)}
          data-testid="helper-status"
        >
          <span className="statusbar__dot" aria-hidden="true" />
          {helper.connected ? `helper ${helper.version ?? ''} connected` : 'helper not connected'}
        </span>
      )}
    </footer>
  );
}
