// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DeviceChoice } from '../../../src/contracts/ipc-contract';
import { ApiProvider } from '../api';
import { createFakeApi } from '../test-support/fake-api';
import { DevicePicker } from './DevicePicker';

afterEach(cleanup);

const device = (over: Partial<DeviceChoice>): DeviceChoice => ({
  path: '/dev/vms/web', node: '/dev/dm-3', majMin: '253:3', sizeBytes: 20 * 1024 ** 3, type: 'lvm', content: null, label: null, inUse: [], ...over,
});

describe('the host block device picker', () => {
  it('lists the allowed devices with size, content and host use, and picks only a free one', async () => {
    const onPick = vi.fn();
    const api = createFakeApi({
      listDevices: async () => [device({}), device({ path: '/dev/loop7', node: '/dev/loop7', majMin: '7:7', sizeBytes: 16 * 1024 ** 2, content: 'ext4', inUse: ['it holds the filesystem mounted on /srv'] })],
    });
    render(<ApiProvider api={api}><DevicePicker onPick={onPick} /></ApiProvider>);
    fireEvent.click(screen.getByRole('button', { name: 'Host block devices…' }));
    const lv = await screen.findByTestId('device-/dev/vms/web');
    expect(lv.textContent).toContain('20 GiB');
    expect(lv.textContent).toContain('(/dev/dm-3)');
    expect(lv.textContent).toContain('not in use');
    const busy = screen.getByTestId('device-/dev/loop7');
    expect(busy.textContent).toContain('in use: it holds the filesystem mounted on /srv');
    expect(busy.textContent).toContain('ext4');
    expect(within(busy).getByRole('button', { name: 'Use' })).toHaveProperty('disabled', true);
    fireEvent.click(within(lv).getByRole('button', { name: 'Use' }));
    expect(onPick).toHaveBeenCalledWith('/dev/vms/web');
  });

  it('says how an administrator allows devices when none is allowed', async () => {
    render(<ApiProvider api={createFakeApi({ listDevices: async () => [] })}><DevicePicker onPick={() => undefined} /></ApiProvider>);
    fireEvent.click(screen.getByRole('button', { name: 'Host block devices…' }));
    expect((await screen.findByText(/No block device is allowed for you/)).textContent).toContain('/etc/svirt-manager/helper.json');
  });
});
