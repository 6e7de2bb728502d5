// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { VmDetails, VmEdit } from '../../../src/contracts/ipc-contract';
import { ApiProvider } from '../api';
import { createFakeApi } from '../test-support/fake-api';
import { vmDefinition, vmSummary } from '../test-support/sample-data';
import { EditVmForm } from './EditVmForm';

afterEach(cleanup);

const details = (definition = vmDefinition('web', { network: { mode: 'user', portForwards: [{ hostPort: 2222, guestPort: 22 }] } })): VmDetails => ({
  summary: vmSummary({ name: 'web', state: 'stopped' }), definition, resources: [],
});

function renderForm(editVm: (request: VmEdit) => Promise<never> | Promise<ReturnType<typeof vmDefinition>>, d = details()) {
  const onChanged = vi.fn();
  render(
    <ApiProvider api={createFakeApi({ editVm })}>
      <EditVmForm details={d} onChanged={onChanged} onRenamed={vi.fn()} />
    </ApiProvider>,
  );
  return { form: screen.getByRole('form', { name: 'Edit the machine' }), onChanged };
}

describe('the edit form of a stopped VM', () => {
  it('sends the ISO, firmware, display and the forwards as edited, keeping the ones it had', async () => {
    let sent: VmEdit | null = null;
    const { form, onChanged } = renderForm(async (request) => {
      sent = request;
      return vmDefinition('web');
    });
    fireEvent.change(within(form).getByRole('textbox', { name: /Installer ISO/ }), { target: { value: '/iso/debian.iso' } });
    fireEvent.change(within(form).getByRole('combobox', { name: /Firmware/ }), { target: { value: 'uefi' } });
    fireEvent.click(within(form).getByRole('checkbox', { name: /Graphical display/ }));
    fireEvent.click(within(form).getByRole('button', { name: 'Add a port forward' }));
    fireEvent.change(within(form).getByRole('spinbutton', { name: 'Host port 2' }), { target: { value: '8080' } });
    fireEvent.change(within(form).getByRole('spinbutton', { name: 'Guest port 2' }), { target: { value: '80' } });
    fireEvent.submit(form);
    await waitFor(() => expect(onChanged).toHaveBeenCalled());
    expect(sent).toEqual({
      vm: 'web', name: 'web', memoryMiB: 2048, vcpus: 2, iso: '/iso/debian.iso', network: 'user',
      portForwards: [{ hostPort: 2222, guestPort: 22 }, { hostPort: 8080, guestPort: 80 }], display: true, firmware: 'uefi',
    });
  });

  it('detaches an ISO when its field is emptied, drops the forwards with the network, and shows a refusal as nothing changed', async () => {
    let sent: VmEdit | null = null;
    const { form } = renderForm(async (request) => {
      sent = request;
      throw new Error('ISO image: web has no disk to boot from once the ISO is gone; attach one first');
    }, details(vmDefinition('web', { boot: { kind: 'iso', iso: '/iso/old.iso' }, network: { mode: 'user', portForwards: [{ hostPort: 2222, guestPort: 22 }] } })));
    fireEvent.change(within(form).getByRole('textbox', { name: /Installer ISO/ }), { target: { value: '' } });
    fireEvent.change(within(form).getByRole('combobox', { name: /Network/ }), { target: { value: 'none' } });
    expect(within(form).queryByRole('group', { name: 'Port forwards' })).toBeNull();
    fireEvent.submit(form);
    expect(await screen.findByText(/web has no disk to boot from once the ISO is gone/)).toBeTruthy();
    expect(screen.getByText('Nothing was changed')).toBeTruthy();
    expect(sent).toMatchObject({ iso: null, network: 'none', portForwards: [] });
  });

  it('does not send an unchanged ISO', async () => {
    let sent: VmEdit | null = null;
    const { form, onChanged } = renderForm(async (request) => {
      sent = request;
      return vmDefinition('web');
    }, details(vmDefinition('web', { boot: { kind: 'iso', iso: '/iso/old.iso' } })));
    fireEvent.submit(form);
    await waitFor(() => expect(onChanged).toHaveBeenCalled());
    expect(sent).not.toHaveProperty('iso');
  });
});
