import { useEffect, useState } from 'react';
import type { HelperStatus } from '../../../src/main/ipc-contract';
import { useApi, useSvirtEvent } from '../api';
import { useAsync } from '../common/use-async';

const MODE_TONE = { enforcing: 'ok', permissive: 'warning', disabled: 'error' } as const;

/** The host facts everything else depends on: is SELinux enforcing, which policy, KVM or TCG, is the helper up. */
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
  const { selinux, profile, accel } = host;
  const profileText = `${profile.processType}${profile.tcgProcessType ? ` / ${profile.tcgProcessType}` : ''} · ${profile.imageType} · ${profile.contentType}`;
  return (
    <footer className="statusbar" aria-label="Host status">
      <span className={`statusbar__item statusbar__item--${MODE_TONE[selinux.mode]}`} data-testid="selinux-mode">
        <span className="statusbar__dot" aria-hidden="true" />
        SELinux {selinux.mode}
      </span>
      <span className="statusbar__item" title="SELINUXTYPE in /etc/selinux/config">
        policy {selinux.policyType ?? 'unknown'}
      </span>
      <span className={`statusbar__item${profile.fallback ? ' statusbar__item--warning' : ''}`} title={profile.notes.join('\n') || 'types read from the policy'}>
        {profileText}
        {profile.fallback && ' (built-in defaults)'}
      </span>
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
