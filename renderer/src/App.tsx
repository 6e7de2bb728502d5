import { useEffect, useState } from 'react';
import type { AppInfo } from '../../src/main/ipc-contract';
import { api } from './api';

export function App({ loadInfo = () => api().appInfo() }: { loadInfo?: () => Promise<AppInfo> }) {
  const [info, setInfo] = useState<AppInfo | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    loadInfo().then(setInfo, (e: Error) => setError(e.message));
  }, [loadInfo]);
  return (
    <main>
      <h1>sVirt Manager</h1>
      {info && <p data-testid="version">version {info.version}</p>}
      {error && <p role="alert">{error}</p>}
    </main>
  );
}
