import { afterEach, describe, expect, it, vi } from 'vitest';
import * as path from 'node:path';
import { ensureHelperInstalled } from './first-run';

const app = { packaged: false, appRoot: path.resolve('.'), execPath: process.execPath };
const dist = path.resolve('dist');

afterEach(() => vi.restoreAllMocks());

describe('first run without an installed helper', () => {
  it('needs nothing when the app runs as root (the bundled helper runs directly)', async () => {
    vi.spyOn(process, 'getuid').mockReturnValue(0);
    const showMessageBox = vi.fn();
    expect(await ensureHelperInstalled({ showMessageBox }, app, dist)).toBe('not-needed');
    expect(showMessageBox).not.toHaveBeenCalled();
  });

  it('explains what will be installed and why, and installs nothing when the user says not now', async () => {
    vi.spyOn(process, 'getuid').mockReturnValue(1000);
    const showMessageBox = vi.fn(async () => ({ response: 1, checkboxChecked: false }));
    expect(await ensureHelperInstalled({ showMessageBox }, app, dist)).toBe('declined');
    const [options] = showMessageBox.mock.calls[0] as unknown as [{ message: string; detail: string; buttons: string[] }];
    expect(options.message).toMatch(/helper/);
    expect(options.detail).toContain('/usr/libexec/svirt-manager/svirt-helper');
    expect(options.detail).toContain('/usr/share/polkit-1/actions/org.svirtmanager.helper.policy');
    expect(options.buttons).toEqual(['Install…', 'Not now']);
  });
});
