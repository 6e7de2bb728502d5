// @vitest-environment happy-dom
import { act, cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RelabelPreview, RelabelResult, VmDetails } from '../../../src/contracts/ipc-contract';
import { ApiProvider } from '../api';
import { createFakeApi, type FakeApi } from '../test-support/fake-api';
import { apparmorSecurity, diskResource, mcs, sampleHandlers, vmDefinition, vmSummary } from '../test-support/sample-data';
import { VmDetailsScreen } from './VmDetailsScreen';

afterEach(cleanup);

const IMAGE = 'system_u:object_r:svirt_image_t:s0:c12,c345';
const SHARED = 'system_u:object_r:svirt_image_t:s0';
const TREE = '/srv/site';

function details(overrides: Partial<VmDetails['summary']> = {}): VmDetails {
  return {
    summary: vmSummary({ name: 'web', state: 'stopped', processLabel: 'system_u:system_r:svirt_t:s0:c12,c345', imageLabel: IMAGE, processLevel: mcs('s0:c12,c345'), imageLevel: mcs('s0:c12,c345'), seclabel: { mode: 'static', relabel: true }, ...overrides }),
    definition: vmDefinition('web'),
    resources: [
      diskResource('/images/web.qcow2', { expectedLabel: IMAGE, actualLabel: IMAGE }),
      diskResource(TREE, { target: 'vdb', isTree: true, expectedLabel: IMAGE, actualLabel: 'unconfined_u:object_r:user_home_t:s0', match: false }),
      { ...diskResource('/boot/vmlinuz', { expectedLabel: 'system_u:object_r:virt_content_t:s0', actualLabel: 'system_u:object_r:virt_content_t:s0' }), kind: 'kernel', class: 'content', target: null },
    ],
  };
}

const treePreview: RelabelPreview = {
  vm: 'web',
  path: TREE,
  to: 'shared',
  changes: [
    { path: `${TREE}/index.html`, from: IMAGE, to: SHARED },
    { path: `${TREE}/img/logo.png`, from: 'unconfined_u:object_r:user_home_t:s0', to: SHARED },
    { path: `${TREE}/notes.txt`, from: null, to: SHARED },
  ],
  count: 3,
  warnings: ['db also uses this directory'],
};

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function renderDetails(api: FakeApi) {
  render(
    <ApiProvider api={api}>
      <VmDetailsScreen name="web" tab="overview" onTab={vi.fn()} onBack={vi.fn()} onDeleted={vi.fn()} />
    </ApiProvider>,
  );
}

const resourceRow = (path: string) => screen.getByTestId(`resource-${path}`);

describe('VmDetailsScreen resources', () => {
  it('shows each resource with its class, expected and found labels, and a mismatch badge', async () => {
    renderDetails(createFakeApi({ getVm: async () => details() }));
    const tree = await screen.findByTestId(`resource-${TREE}`);
    expect(within(tree).getByTestId('mismatch-badge')).toBeTruthy();
    expect(within(tree).getByText('user_home_t')).toBeTruthy();
    expect(within(resourceRow('/images/web.qcow2')).queryByTestId('mismatch-badge')).toBeNull();
    expect(within(resourceRow('/images/web.qcow2')).getByText('matches')).toBeTruthy();
    // A kernel is always read-only content: no sharing choice.
    expect(within(resourceRow('/boot/vmlinuz')).queryByRole('group')).toBeNull();
    expect(within(resourceRow('/boot/vmlinuz')).getByText('read-only content')).toBeTruthy();
  });

  it('says a stopped dynamic VM\'s private files get a fresh pair at start, with no made-up level', async () => {
    const stopped = details({ seclabel: { mode: 'dynamic', relabel: true }, processLabel: null, imageLabel: null, processLevel: null, imageLevel: null });
    stopped.resources = [diskResource('/images/web.qcow2', { expectedLabel: null, actualLabel: 'unconfined_u:object_r:user_home_t:s0', freshPair: true })];
    renderDetails(createFakeApi({ getVm: async () => stopped }));
    const row = await screen.findByTestId('resource-/images/web.qcow2');
    expect(within(row).getByText('a fresh pair at start')).toBeTruthy();
    expect(row.textContent).not.toMatch(/svirt_image_t/);
  });

  it('turns a tree into shared read-write with one click: confirms the exact files, then shows progress', async () => {
    const apply = deferred<RelabelResult>();
    let getVmCalls = 0;
    const api = createFakeApi({
      getVm: async () => {
        getVmCalls++;
        return details();
      },
      previewRelabel: vi.fn(async () => treePreview),
      applyRelabel: vi.fn(() => apply.promise),
    });
    renderDetails(api);
    const sharing = within(await screen.findByTestId(`resource-${TREE}`)).getByRole('group', { name: `Sharing of ${TREE}` });
    fireEvent.click(within(sharing).getByRole('button', { name: 'Shared read-write' }));

    const dialog = await screen.findByRole('dialog', { name: 'Make vdb shared read-write?' });
    expect(api.previewRelabel).toHaveBeenCalledWith({ vm: 'web', path: TREE, to: 'shared' });
    expect(await within(dialog).findByTestId('change-count')).toHaveProperty('textContent', '3 files change label:');
    const files = within(dialog).getByRole('table', { name: 'Files that change label' });
    for (const change of treePreview.changes) expect(within(files).getByTitle(change.path).textContent).toBe(change.path);
    expect(within(files).getByText('unreadable')).toBeTruthy();
    expect(within(dialog).getByText('db also uses this directory')).toBeTruthy();

    fireEvent.click(within(dialog).getByRole('button', { name: 'Relabel 3 files' }));
    expect(api.applyRelabel).toHaveBeenCalledWith({ vm: 'web', path: TREE, to: 'shared' });
    const progress = within(dialog).getByRole('progressbar', { name: 'Relabel progress' }) as HTMLProgressElement;
    // During the helper's walk the total is unknown (0): the preview's count stands in.
    act(() => api.emit('relabelProgress', { vm: 'web', path: TREE, done: 2, total: 0 }));
    act(() => api.emit('relabelProgress', { vm: 'other', path: TREE, done: 3, total: 3 }));
    expect(progress.value).toBe(2);
    expect(within(dialog).getByText('2 of 3 files relabeled')).toBeTruthy();
    expect(within(dialog).queryByRole('button', { name: 'Close' })).toBeNull();

    const callsBefore = getVmCalls;
    await act(async () => apply.resolve({ vm: 'web', path: TREE, to: 'shared', changed: 3, failed: [], resource: diskResource(TREE) }));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(getVmCalls).toBeGreaterThan(callsBefore);
  });

  it('cancels a running relabel from its Cancel button, for that VM and path, and shows that nothing stayed changed', async () => {
    const apply = deferred<RelabelResult>();
    const cancelRelabel = vi.fn(async () => {
      apply.resolve({ vm: 'web', path: TREE, to: 'shared', changed: 0, failed: [{ path: TREE, error: `relabel of ${TREE} cancelled: every label it changed is back` }], resource: diskResource(TREE) });
    });
    renderDetails(createFakeApi({ getVm: async () => details(), previewRelabel: async () => treePreview, applyRelabel: () => apply.promise, cancelRelabel }));
    await screen.findByTestId(`resource-${TREE}`);
    fireEvent.click(within(screen.getByRole('group', { name: `Sharing of ${TREE}` })).getByRole('button', { name: 'Shared read-write' }));
    const dialog = await screen.findByRole('dialog');
    fireEvent.click(await within(dialog).findByRole('button', { name: 'Relabel 3 files' }));
    await act(async () => fireEvent.click(within(dialog).getByRole('button', { name: 'Cancel' })));
    expect(cancelRelabel).toHaveBeenCalledWith({ vm: 'web', path: TREE });
    expect(await within(dialog).findByText(/cancelled: every label it changed is back/)).toBeTruthy();
  });

  it('keeps the dialog still between confirm and progress: the progress slot is there from the start and stays the same element', async () => {
    const apply = deferred<RelabelResult>();
    renderDetails(createFakeApi({ getVm: async () => details(), previewRelabel: async () => treePreview, applyRelabel: () => apply.promise }));
    await screen.findByTestId(`resource-${TREE}`);
    fireEvent.click(within(screen.getByRole('group', { name: `Sharing of ${TREE}` })).getByRole('button', { name: 'Shared read-write' }));
    const slot = await screen.findByTestId('relabel-status');
    expect(slot.textContent).toContain('Nothing changes until you confirm');
    fireEvent.click(screen.getByRole('button', { name: 'Relabel 3 files' }));
    expect(screen.getByTestId('relabel-status')).toBe(slot);
    expect(slot.textContent).toContain('0 of 3 files relabeled');
  });

  it('changes nothing when the confirmation is cancelled', async () => {
    const api = createFakeApi({ getVm: async () => details(), previewRelabel: async () => ({ ...treePreview, to: 'private' }), applyRelabel: vi.fn() });
    renderDetails(api);
    const sharing = within(await screen.findByTestId('resource-/images/web.qcow2')).getByRole('group');
    expect(within(sharing).getByRole('button', { name: 'Private' })).toHaveProperty('disabled', true); // already private
    fireEvent.click(within(sharing).getByRole('button', { name: 'Shared read-only' }));
    const dialog = await screen.findByRole('dialog');
    await within(dialog).findByTestId('change-count');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(api.applyRelabel).not.toHaveBeenCalled();
  });

  it('lists failed files after a partial relabel', async () => {
    const api = createFakeApi({
      getVm: async () => details(),
      previewRelabel: async () => treePreview,
      applyRelabel: async () => ({ vm: 'web', path: TREE, to: 'shared', changed: 2, failed: [{ path: `${TREE}/notes.txt`, error: 'Operation not supported' }], resource: diskResource(TREE) }),
    });
    renderDetails(api);
    fireEvent.click(within(await screen.findByTestId(`resource-${TREE}`)).getByRole('button', { name: 'Shared read-write' }));
    const dialog = await screen.findByRole('dialog');
    fireEvent.click(await within(dialog).findByRole('button', { name: 'Relabel 3 files' }));
    expect(await within(dialog).findByText('2 relabeled, 1 failed')).toBeTruthy();
    expect(within(dialog).getByText(/Operation not supported/)).toBeTruthy();
  });

  it('offers no relabel while the VM runs', async () => {
    renderDetails(createFakeApi({ getVm: async () => details({ state: 'running', pid: 99 }) }));
    const sharing = within(await screen.findByTestId(`resource-${TREE}`)).getByRole('group');
    for (const button of within(sharing).getAllByRole('button')) expect(button).toHaveProperty('disabled', true);
  });
});

describe('VmDetailsScreen actions', () => {
  it('asks before starting a VM that SELinux will not confine, then starts it unconfined', async () => {
    const startVm = vi.fn(async () => vmSummary({ name: 'web', state: 'running' }));
    renderDetails(createFakeApi({ getVm: async () => details({ confined: false, notConfinedReason: 'seclabel is none' }), startVm }));
    fireEvent.click(await screen.findByRole('button', { name: 'Start' }));
    const dialog = await screen.findByRole('dialog', { name: 'Start web unconfined?' });
    expect(within(dialog).getByText(/seclabel is none/)).toBeTruthy();
    expect(startVm).not.toHaveBeenCalled();
    fireEvent.click(within(dialog).getByRole('button', { name: 'Start unconfined' }));
    expect(startVm).toHaveBeenCalledWith({ name: 'web', allowUnconfined: true });
  });

  it('starts a confined VM at once, and shows the error the main process gives', async () => {
    const startVm = vi.fn(async () => {
      throw new Error('no free MCS pair in c0.c1023');
    });
    renderDetails(createFakeApi({ getVm: async () => details(), startVm }));
    fireEvent.click(await screen.findByRole('button', { name: 'Start' }));
    expect(startVm).toHaveBeenCalledWith({ name: 'web', allowUnconfined: false });
    expect((await screen.findByRole('alert')).textContent).toContain('no free MCS pair in c0.c1023');
  });

  it('starts and shuts down from the application menu as its buttons do, asking first for an unconfined VM', async () => {
    const startVm = vi.fn(async () => vmSummary({ name: 'web', state: 'running' }));
    const api = createFakeApi({ getVm: async () => details({ confined: false, notConfinedReason: 'seclabel is none' }), startVm });
    renderDetails(api);
    await screen.findByRole('button', { name: 'Start' });
    await vi.waitFor(() => expect(api.listenerCount('menuCommand')).toBeGreaterThan(0)); // subscribed in an effect
    act(() => api.emit('menuCommand', { command: 'startVm' }));
    expect(await screen.findByRole('dialog', { name: 'Start web unconfined?' })).toBeTruthy();
    expect(startVm).not.toHaveBeenCalled();
    cleanup();

    const shutdownVm = vi.fn(async () => undefined);
    const running = createFakeApi({ getVm: async () => details({ state: 'running', pid: 7 }), shutdownVm, startVm });
    renderDetails(running);
    await screen.findByRole('button', { name: 'Shut down' });
    await vi.waitFor(() => expect(running.listenerCount('menuCommand')).toBeGreaterThan(0));
    act(() => running.emit('menuCommand', { command: 'startVm' }));
    act(() => running.emit('menuCommand', { command: 'shutdownVm' }));
    expect(shutdownVm).toHaveBeenCalledWith({ name: 'web' });
    expect(startVm).not.toHaveBeenCalled();
  });

  it('reloads when its VM changes state', async () => {
    let state: 'stopped' | 'running' = 'stopped';
    const api = createFakeApi({ getVm: async () => details({ state }) });
    renderDetails(api);
    expect((await screen.findByTestId('vm-state')).textContent).toBe('Stopped');
    state = 'running';
    act(() => api.emit('vmStateChanged', { vm: 'web', state: 'running', pid: 7 }));
    await vi.waitFor(() => expect(screen.getByTestId('vm-state').textContent).toBe('Running'));
  });
});

describe('VmDetailsScreen wording', () => {
  it('says what the label does in plain words first and the seclabel terms second', async () => {
    renderDetails(createFakeApi({ getVm: async () => details({ seclabel: { mode: 'dynamic', relabel: true } }) }));
    const words = await screen.findByTestId('label-words');
    expect(words.textContent).toMatch(/^a fresh pair at each start; files relabeled/);
    expect(words.textContent).toContain('seclabel dynamic, relabel');
  });

  it('says "every VM may read and write these files" before the exact label when a file is shared', async () => {
    renderDetails(createFakeApi({ getVm: async () => details(), previewRelabel: async () => treePreview }));
    await screen.findByTestId(`resource-${TREE}`);
    fireEvent.click(within(screen.getByRole('group', { name: `Sharing of ${TREE}` })).getByRole('button', { name: 'Shared read-write' }));
    const meaning = await screen.findByTestId('relabel-meaning');
    expect(meaning.textContent).toMatch(/^Every VM may read and write these files\. Label: the image type at s0/);
  });

  it('warns at the top, in the strongest words, while a VM runs unconfined, and gives its pair no colour', async () => {
    const running = details({ state: 'running', confined: false, notConfinedReason: 'not confined: SELinux disabled', pid: 7 });
    renderDetails(createFakeApi({ getVm: async () => running }));
    expect((await screen.findByTestId('unconfined-warning')).textContent).toMatch(/web runs unconfined/);
    const chip = within(screen.getByRole('heading', { level: 1 }).parentElement as HTMLElement).getByTestId('mcs-chip');
    expect(chip.dataset.colour).toBeUndefined();
  });

  it("shows an AppArmor VM's profile from its description, names AppArmor and the DAC layer under it, and colours the profile as its own", async () => {
    const profile = 'svirt-1000-kiosk';
    const kiosk = { ...details({ name: 'kiosk', state: 'running', pid: 9, processLabel: profile, imageLabel: null, processLevel: { level: profile, name: null, pair: profile }, imageLevel: null, seclabel: { mode: 'dynamic', relabel: true }, security: apparmorSecurity(profile) }), resources: [] };
    renderDetails(createFakeApi({ getVm: async () => kiosk }));
    const model = await screen.findByTestId('security-model');
    expect(model.textContent).toMatch(/^AppArmor/);
    expect(model.textContent).toContain(`qemu runs in the AppArmor profile ${profile}`);
    expect(screen.getByTestId('security-layer-dac').textContent).toContain('DAC (per-VM uid)');
    expect(document.querySelector('[data-part="profile"]')?.textContent).toBe(profile);
    const chip = within(screen.getByRole('heading', { level: 1 }).parentElement as HTMLElement).getByTestId('mcs-chip');
    expect(chip.dataset.pair).toBe(profile);
    expect(chip.dataset.colour).toMatch(/^#[0-9a-f]{6}$/);
  });

  it('does not style a disabled Start as the primary action', async () => {
    renderDetails(createFakeApi({ getVm: async () => details({ state: 'running', pid: 7 }) }));
    const start = await screen.findByRole('button', { name: 'Start' });
    expect(start).toHaveProperty('disabled', true);
    expect(start.className).not.toContain('button--primary');
  });
});

describe('VmDetailsScreen fixes', () => {
  it('offers "Fix" on a mismatch row, which relabels the file to its own class', async () => {
    const previewRelabel = vi.fn(async () => ({ ...treePreview, to: 'private' as const }));
    renderDetails(createFakeApi({ getVm: async () => details(), previewRelabel }));
    fireEvent.click(await screen.findByRole('button', { name: `Fix the label of ${TREE}` }));
    await screen.findByTestId('change-count');
    expect(previewRelabel).toHaveBeenCalledWith({ vm: 'web', path: TREE, to: 'private' });
    expect(within(resourceRow('/images/web.qcow2')).queryByRole('button', { name: /^Fix/ })).toBeNull();
  });

  it('keeps "Save label" disabled while the editor warns that another VM uses the pair, until the user confirms', async () => {
    const api = createFakeApi({
      getVm: async () => ({ ...details(), definition: vmDefinition('web', { seclabel: { mode: 'static', label: 'system_u:system_r:svirt_t:s0:c12,c345', relabel: true } }) }),
      validateStaticLabel: async () => ({ errors: [], warnings: ['db already uses s0:c12,c345: the two VMs could open each other’s images'], imageLabel: IMAGE, processParts: [], processLevel: null, imageParts: [], imageLevel: null }),
      staticLabelForm: sampleHandlers(() => api).staticLabelForm,
    });
    render(
      <ApiProvider api={api}>
        <VmDetailsScreen name="web" tab="seclabel" onTab={vi.fn()} onBack={vi.fn()} onDeleted={vi.fn()} />
      </ApiProvider>,
    );
    const confirm = await screen.findByRole('checkbox', { name: 'Save this label despite the warnings above' }, { timeout: 3000 });
    const save = screen.getByRole('button', { name: 'Save label' });
    expect(save).toHaveProperty('disabled', true);
    fireEvent.click(confirm);
    expect(save).toHaveProperty('disabled', false);
  });
});
