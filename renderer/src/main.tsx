import { createRoot } from 'react-dom/client';
import { ApiProvider } from './api';
import { App } from './App';
import { Notice } from './common/Notice';
import './styles/app.css';

const root = document.getElementById('root');
if (root) {
  const api = window.svirt;
  createRoot(root).render(
    api ? (
      <ApiProvider api={api}>
        <App />
      </ApiProvider>
    ) : (
      <Notice tone="error" title="The app’s bridge to the main process is missing">
        window.svirt is not defined: the page was opened outside the app.
      </Notice>
    ),
  );
}
