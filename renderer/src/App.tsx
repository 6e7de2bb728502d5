import { useState } from 'react';
import { useApi, useSvirtEvent } from './api';
import { AuditScreen } from './audit/AuditScreen';
import { hostConfinementText } from './common/confinement';
import { useTheme, type ThemeSetting } from './common/theme';
import { useAsync } from './common/use-async';
import { CreateVmForm } from './create-vm/CreateVmForm';
import { HostStatusBar } from './host/HostStatusBar';
import type { Route } from './navigation';
import { VmDetailsScreen } from './vm-details/VmDetailsScreen';
import { VmListScreen } from './vms/VmListScreen';

const NAV: readonly { view: 'vms' | 'create' | 'audit'; label: string }[] = [
  { view: 'vms', label: 'Virtual machines' },
  { view: 'create', label: 'New VM' },
  { view: 'audit', label: 'Access audit' },
];

function Shield() {
  return (
    <svg className="brand__mark" viewBox="0 0 24 24" aria-hidden="true">
      <path d="M12 2.5 4 5.5v6.2c0 4.6 3.3 8.6 8 9.8 4.7-1.2 8-5.2 8-9.8V5.5l-8-3Z" fill="currentColor" opacity="0.18" />
      <path d="M12 2.5 4 5.5v6.2c0 4.6 3.3 8.6 8 9.8 4.7-1.2 8-5.2 8-9.8V5.5l-8-3Z" fill="none" stroke="currentColor" strokeWidth="1.6" />
      <path d="m8.5 12 2.4 2.4 4.6-4.8" fill="none" stroke="currentColor" strokeWidth="1.8" strokeLinecap="round" strokeLinejoin="round" />
    </svg>
  );
}

export function App({ initialRoute = { view: 'vms' } }: { initialRoute?: Route }) {
  const api = useApi();
  const [route, setRoute] = useState<Route>(initialRoute);
  const info = useAsync(() => api.appInfo(), [api]);
  const host = useAsync(() => api.hostStatus(), [api]);
  const [theme, setTheme] = useTheme();
  const openVm = (name: string) => setRoute({ view: 'vm', name, tab: 'overview' });
  const current = route.view === 'vm' ? 'vms' : route.view;
  // The application menu's navigation; Start and Shut down are VmActions' own, on the VM shown.
  useSvirtEvent('menuCommand', ({ command }) => {
    if (command === 'newVm') setRoute({ view: 'create' });
    else if (command === 'showVms') setRoute({ view: 'vms' });
    else if (command === 'openAudit') setRoute({ view: 'audit' });
    else if (command === 'openConsole' && route.view === 'vm') setRoute({ ...route, tab: 'console' });
  });

  return (
    <div className="app">
      <nav className="sidebar" aria-label="Main">
        <div className="brand">
          <Shield />
          <div>
            <div className="brand__name">sVirt Manager</div>
            {info.data && (
              <div className="brand__version" data-testid="version">
                version {info.data.version}
              </div>
            )}
          </div>
        </div>
        <ul className="nav">
          {NAV.map((item) => (
            <li key={item.view}>
              <button
                type="button"
                className={`nav__item${current === item.view ? ' nav__item--current' : ''}`}
                aria-current={current === item.view ? 'page' : undefined}
                onClick={() => setRoute({ view: item.view })}
              >
                {item.label}
              </button>
            </li>
          ))}
        </ul>
        <p className="sidebar__note" data-testid="sidebar-note">
          {host.error ? 'Host status unavailable.' : hostConfinementText(host.data?.security)}
        </p>
        <label className="sidebar__setting">
          Theme
          <select className="input input--sidebar" value={theme} onChange={(e) => setTheme(e.target.value as ThemeSetting)}>
            <option value="system">Follow the system</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
        </label>
      </nav>
      <main className="content">
        {route.view === 'vms' && <VmListScreen onOpen={openVm} onCreate={() => setRoute({ view: 'create' })} />}
        {route.view === 'vm' && (
          <VmDetailsScreen
            key={route.name}
            name={route.name}
            tab={route.tab}
            onTab={(tab) => setRoute({ ...route, tab })}
            onBack={() => setRoute({ view: 'vms' })}
            onDeleted={() => setRoute({ view: 'vms' })}
          />
        )}
        {route.view === 'create' && <CreateVmForm onCreated={openVm} onCancel={() => setRoute({ view: 'vms' })} />}
        {route.view === 'audit' && <AuditScreen onOpenVm={(name, tab) => setRoute({ view: 'vm', name, tab })} />}
      </main>
      <HostStatusBar />
    </div>
  );
}
