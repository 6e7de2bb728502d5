import type { Dialog } from 'electron';
import * as path from 'node:path';
import {
  detectHelperInstall, installExplanation, installHelper, resolveHelperSources, type AppLocation,
} from '../src/user/helper-install';

/**
 * First run without an installed helper (AppImage, dev checkout): explain what will be installed and
 * why, then install it with one sudo-prompt command. Afterwards the helper is always started through
 * pkexec, so polkit's own action (auth_admin_keep) applies. Root needs none of this: it runs the
 * bundled helper directly.
 */
export async function ensureHelperInstalled(dialog: Pick<Dialog, 'showMessageBox'>, app: AppLocation, distDir: string): Promise<'installed' | 'declined' | 'not-needed'> {
  if (process.getuid?.() === 0) return 'not-needed';
  const status = await detectHelperInstall({ bundledHelperScript: path.join(distDir, 'svirt-helper.js') });
  if (status.installed) return 'not-needed';
  const sources = await resolveHelperSources(app);
  const answer = await dialog.showMessageBox({
    type: 'info',
    title: 'Install the sVirt helper',
    message: status.problem === 'missing' ? 'sVirt Manager needs its helper installed once.' : `The installed helper needs attention: ${status.detail}`,
    detail: installExplanation(sources),
    buttons: ['Install…', 'Not now'],
    defaultId: 0,
    cancelId: 1,
  });
  if (answer.response !== 0) return 'declined';
  try {
    await installHelper(sources);
    return 'installed';
  } catch (err) {
    await dialog.showMessageBox({ type: 'error', title: 'The helper was not installed', message: (err as Error).message });
    return 'declined';
  }
}
