// @vitest-environment happy-dom
import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiProvider } from './api';
import { App } from './App';
import { createFakeApi, type FakeApi } from './test-support/fake-api';
import { sampleAudit, sampleHandlers, sampleHost } from './test-support/sample-data';

afterEach(cleanup);

function renderApp(overrides: Parameters<typeof createFakeApi>[0] = {}): FakeApi {
  const api: FakeApi = createFakeApi({ ...sampleHandlers(() => api), ...overrides });
  render(
    <ApiProvider api={api}>
      <App />
    </ApiProvider>,
  );
  return api;
}

describe('App', () => {
  it('shows the version, the VM list and the host status', async () => {
    renderApp();
    expect(await screen.findByTestId('version')).toHaveProperty('textContent', 'version 0.1.0');
    expect(await screen.findByTestId('vm-row-web')).toBeTruthy();
    const status = screen.getByRole('contentinfo', { name: 'Host status' });
    expect(within(status).getByTestId('selinux-mode').textContent).toContain('SELinux enforcing');
    expect(within(status).getByText('policy targeted')).toBeTruthy();
    expect(within(status).getByTestId('accel').textContent).toBe('KVM');
    // The helper's status arrives by its own call, maybe after the host's.
    expect((await within(status).findByTestId('helper-status')).textContent).toContain('connected');
  });

  it('follows helper status events', async () => {
    const api = renderApp();
    await screen.findByTestId('helper-status', undefined, { timeout: 5000 }); // the first render of the whole app is slow on a loaded host
    act(() => api.emit('helperStatus', { connected: false, version: null, launchedVia: 'pkexec', error: 'Authentication was dismissed' }));
    expect(screen.getByTestId('helper-status').textContent).toBe('helper not connected');
  });

  it('shows a permissive host and TCG plainly', async () => {
    renderApp({ hostStatus: async () => ({ ...sampleHost, selinux: { mode: 'permissive', policyType: 'default' }, accel: { kind: 'tcg', reason: 'nested KVM hangs' } }) });
    expect((await screen.findByTestId('selinux-mode')).className).toContain('warning');
    expect(screen.getByTestId('accel').textContent).toBe('TCG (emulated)');
    expect(screen.getByTestId('accel').title).toBe('nested KVM hangs');
  });

  it('opens a VM from the list and comes back', async () => {
    renderApp();
    fireEvent.click(await screen.findByRole('button', { name: 'web' }));
    expect(await screen.findByRole('heading', { name: 'web', level: 1 })).toBeTruthy();
    expect(screen.getByRole('tab', { name: 'Overview', selected: true })).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: '← Virtual machines' }));
    expect(await screen.findByRole('heading', { name: 'Virtual machines' })).toBeTruthy();
  });

  it('shows the audit: its source, the problems, and the access matrix', async () => {
    renderApp();
    fireEvent.click(within(screen.getByRole('navigation', { name: 'Main' })).getByRole('button', { name: 'Access audit' }));
    expect((await screen.findByTestId('audit-source')).textContent).toContain('Answered by the kernel');
    const problems = screen.getByRole('list', { name: 'Problems' });
    expect(within(problems).getAllByRole('listitem')).toHaveLength(sampleAudit.problems.length);
    expect(within(problems).getAllByRole('listitem')[0]?.dataset.kind).toBe('duplicate-pair');
    const matrix = screen.getByRole('grid', { name: 'Access matrix' });
    expect(within(matrix).getAllByRole('row')).toHaveLength(1 + sampleAudit.vms.length);
    expect(screen.getByTestId('access-web-/var/lib/svirt/images/web.qcow2').textContent).toBe('write');
    expect(screen.getByTestId('access-web-/var/lib/svirt/images/db.qcow2').textContent).toBe('none');
    // reports writes db's image, which it does not use: flagged.
    expect(screen.getByTestId('access-reports-/var/lib/svirt/images/db.qcow2').className).toContain('access--unintended');
  });

  it('creates a VM from an ISO and opens it', async () => {
    let created: unknown = null;
    renderApp({
      defineVm: async (input) => {
        created = input;
        return { ...input, version: 1, createdAt: '2025-01-01T00:00:00.000Z' };
      },
    });
    fireEvent.click(within(screen.getByRole('navigation', { name: 'Main' })).getByRole('button', { name: 'New VM' }));
    const form = await screen.findByRole('form', { name: 'New VM' });
    fireEvent.change(within(form).getByRole('textbox', { name: 'Name' }), { target: { value: 'web' } });
    fireEvent.click(within(form).getByRole('radio', { name: /ISO installer/ }));
    fireEvent.change(within(form).getByRole('textbox', { name: 'ISO image' }), { target: { value: '/iso/debian.iso' } });
    fireEvent.change(within(form).getByRole('textbox', { name: /Disk image/ }), { target: { value: '/images/web.qcow2' } });
    fireEvent.submit(form);
    expect(await screen.findByRole('heading', { name: 'web', level: 1 })).toBeTruthy();
    expect(created).toEqual({
      name: 'web',
      memoryMiB: 2048,
      vcpus: 2,
      boot: { kind: 'iso', iso: '/iso/debian.iso' },
      disks: [{ path: '/images/web.qcow2', format: 'raw', class: 'private', relabel: true }],
      seclabel: { mode: 'dynamic' },
      // An installer gets a display and user-mode networking by default.
      network: { mode: 'user' },
      firmware: { kind: 'bios' },
      display: 'vnc',
    });
  });

  it('creates a UEFI VM without network or display when asked, with memory given in GiB', async () => {
    let created: unknown = null;
    renderApp({
      defineVm: async (input) => {
        created = input;
        return { ...input, version: 1, createdAt: '2025-01-01T00:00:00.000Z' };
      },
    });
    fireEvent.click(within(screen.getByRole('navigation', { name: 'Main' })).getByRole('button', { name: 'New VM' }));
    const form = await screen.findByRole('form', { name: 'New VM' });
    fireEvent.change(within(form).getByRole('textbox', { name: 'Name' }), { target: { value: 'efi' } });
    fireEvent.click(within(form).getByRole('radio', { name: /ISO installer/ }));
    fireEvent.change(within(form).getByRole('textbox', { name: 'ISO image' }), { target: { value: '/iso/debian.iso' } });
    fireEvent.change(within(form).getByRole('combobox', { name: 'Memory unit' }), { target: { value: 'GiB' } });
    fireEvent.change(within(form).getByRole('spinbutton', { name: 'Memory (GiB)' }), { target: { value: '1.5' } });
    fireEvent.change(within(form).getByRole('combobox', { name: /^Firmware/ }), { target: { value: 'uefi' } });
    fireEvent.change(within(form).getByRole('combobox', { name: /^Network/ }), { target: { value: 'none' } });
    fireEvent.click(within(form).getByRole('checkbox', { name: /Graphical display/ }));
    fireEvent.submit(form);
    await waitFor(() => expect(created).not.toBeNull());
    expect(created).toMatchObject({ memoryMiB: 1536, network: { mode: 'none' }, firmware: { kind: 'uefi', nvram: '' }, display: 'none' });
  });

  it('creates a VM with port forwards from the host loopback to the guest, only with user-mode networking', async () => {
    let created: unknown = null;
    renderApp({
      defineVm: async (input) => {
        created = input;
        return { ...input, version: 1, createdAt: '2025-01-01T00:00:00.000Z' };
      },
    });
    fireEvent.click(within(screen.getByRole('navigation', { name: 'Main' })).getByRole('button', { name: 'New VM' }));
    const form = await screen.findByRole('form', { name: 'New VM' });
    fireEvent.change(within(form).getByRole('textbox', { name: 'Name' }), { target: { value: 'srv' } });
    fireEvent.change(within(form).getByRole('textbox', { name: /Disk image/ }), { target: { value: '/images/srv.qcow2' } });
    fireEvent.click(within(form).getByRole('button', { name: 'Add a port forward' }));
    fireEvent.change(within(form).getByRole('spinbutton', { name: 'Host port 1' }), { target: { value: '2222' } });
    fireEvent.change(within(form).getByRole('spinbutton', { name: 'Guest port 1' }), { target: { value: '22' } });
    fireEvent.change(within(form).getByRole('combobox', { name: /^Network/ }), { target: { value: 'none' } });
    expect(within(form).queryByRole('group', { name: 'Port forwards' })).toBeNull();
    fireEvent.change(within(form).getByRole('combobox', { name: /^Network/ }), { target: { value: 'user' } });
    fireEvent.submit(form);
    await waitFor(() => expect(created).not.toBeNull());
    expect(created).toMatchObject({ network: { mode: 'user', portForwards: [{ hostPort: 2222, guestPort: 22 }] } });
  });

  it('does not say the VMs are confined when SELinux is off, in the sidebar or the list', async () => {
    renderApp({ hostStatus: async () => ({ ...sampleHost, security: { ...sampleHost.security, state: 'inactive' }, selinux: { mode: 'disabled', policyType: null } }) });
    await screen.findByTestId('vm-row-web');
    await waitFor(() => expect(screen.getByTestId('sidebar-note').textContent).toMatch(/SELinux is off.*no VM is confined/));
    expect(screen.getByTestId('list-lede').textContent).toMatch(/no VM is confined/);
    expect(document.body.textContent).not.toMatch(/Every VM runs confined/);
  });

  it('names the model the helper probed, AppArmor on an AppArmor host, in the sidebar, the list and the status bar', async () => {
    renderApp({ hostStatus: async () => ({ ...sampleHost, security: { model: 'apparmor', modelName: 'AppArmor', state: 'enforcing', layers: ['apparmor', 'dac'] }, selinux: { mode: 'disabled', policyType: null } }) });
    await screen.findByTestId('vm-row-web');
    await waitFor(() => expect(screen.getByTestId('sidebar-note').textContent).toMatch(/^AppArmor enforces/));
    expect(screen.getByTestId('list-lede').textContent).toMatch(/^AppArmor enforces/);
    expect(document.body.textContent).not.toMatch(/SELinux is off/);
    await waitFor(() => expect(screen.getAllByTestId('security-model').some((e) => e.textContent === 'AppArmor (enforcing)')).toBe(true));
    // SELinux's own facts (its mode, the policy's type names) are not shown where it does not confine the VMs.
    const status = screen.getByRole('contentinfo', { name: 'Host status' });
    expect(within(status).queryByTestId('selinux-mode')).toBeNull();
    expect(within(status).queryByTestId('profile')).toBeNull();
    expect(status.textContent).not.toMatch(/svirt_t|SELinux/);
  });

  it('counts the unconfined VMs in the list subtitle on an enforcing host', async () => {
    renderApp();
    await waitFor(() => expect(screen.getByTestId('list-lede').textContent).toMatch(/1 VM runs unconfined/));
  });

  it('explains the policy type names of the status bar on hover', async () => {
    renderApp();
    expect((await screen.findByTestId('type-svirt_image_t')).title).toMatch(/disk images/);
    expect(screen.getByTestId('type-svirt_t').title).toMatch(/qemu runs/);
    expect(screen.getByTestId('selinux-mode').title).toMatch(/refused/);
  });

  it('goes where the application menu says: new VM, audit, a VM console, back to the list', async () => {
    const api = renderApp();
    await screen.findByTestId('vm-row-web');
    await waitFor(() => expect(api.listenerCount('menuCommand')).toBeGreaterThan(0));
    act(() => api.emit('menuCommand', { command: 'newVm' }));
    expect(await screen.findByRole('heading', { name: 'New VM', level: 1 })).toBeTruthy();
    act(() => api.emit('menuCommand', { command: 'openAudit' }));
    expect(await screen.findByRole('heading', { name: 'Access audit', level: 1 })).toBeTruthy();
    act(() => api.emit('menuCommand', { command: 'showVms' }));
    fireEvent.click(await screen.findByRole('button', { name: 'web' }));
    await screen.findByRole('heading', { name: 'web', level: 1 });
    await waitFor(() => expect(api.listenerCount('menuCommand')).toBeGreaterThan(1)); // App's and VmActions'
    act(() => api.emit('menuCommand', { command: 'openConsole' }));
    expect(await screen.findByRole('tab', { name: 'Console', selected: true })).toBeTruthy();
  });
});
