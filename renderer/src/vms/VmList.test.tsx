// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { VmSummary } from '../../../src/contracts/ipc-contract';
import { apparmorSecurity, confinedVm, mcs, vmSummary } from '../test-support/sample-data';
import { VmList } from './VmList';

afterEach(cleanup);

const row = (name: string) => screen.getByTestId(`vm-row-${name}`);
const chips = (element: HTMLElement) => within(element).getAllByTestId('mcs-chip');
const processChip = (name: string) => chips(within(row(name)).getByTestId('process-context'))[0] as HTMLElement;
const imageChip = (name: string) => chips(within(row(name)).getByTestId('image-context'))[0] as HTMLElement;
const shownNames = () => screen.queryAllByTestId(/^vm-row-/).map((r) => r.dataset.testid?.replace('vm-row-', ''));

function renderList(vms: VmSummary[], onOpen = vi.fn()) {
  render(<VmList vms={vms} onOpen={onOpen} />);
  return onOpen;
}

describe('VmList chips', () => {
  it('gives one pair one colour: process and images of a VM, across renders, and however the pair is spelled', () => {
    renderList([confinedVm('web', 's0:c12,c345'), confinedVm('db', 's0:c7,c8')]);
    const webColour = processChip('web').dataset.colour;
    expect(webColour).toMatch(/^#[0-9a-f]{6}$/);
    expect(imageChip('web').dataset.colour).toBe(webColour);
    expect(processChip('db').dataset.colour).not.toBe(webColour);
    cleanup();

    // The same pair written the other way round is the same pair.
    renderList([confinedVm('web', 's0:c345,c12')]);
    expect(processChip('web').dataset.colour).toBe(webColour);
    expect(processChip('web').dataset.pair).toBe('s0:c12,c345');
  });

  it('shows the setrans name of a pair where one is defined', () => {
    renderList([confinedVm('web', 's0:c12,c345', { processLevel: mcs('s0:c12,c345', 'Web frontend') })]);
    expect(processChip('web').textContent).toContain('Web frontend');
    expect(processChip('web').textContent).toContain('s0:c12,c345');
  });

  it('makes two VMs with the same pair stand out, both of them', () => {
    renderList([confinedVm('db', 's0:c88,c901'), confinedVm('reports', 's0:c88,c901'), confinedVm('web', 's0:c1,c2')]);
    for (const [name, other] of [
      ['db', 'reports'],
      ['reports', 'db'],
    ] as const) {
      expect(processChip(name).dataset.warning).toBe('true');
      expect(row(name).className).toContain('row--warning');
      expect(within(row(name)).getByText(new RegExp(`Same MCS pair as ${other}`))).toBeTruthy();
    }
    expect(processChip('db').dataset.colour).toBe(processChip('reports').dataset.colour);
    expect(processChip('web').dataset.warning).toBeUndefined();
    expect(row('web').className).not.toContain('row--warning');
  });

  it("makes an image whose pair differs from its VM's stand out", () => {
    renderList([confinedVm('build', 's0:c5,c6', {}, 's0:c5,c7'), confinedVm('web', 's0:c1,c2')]);
    expect(imageChip('build').dataset.warning).toBe('true');
    expect(imageChip('build').dataset.colour).not.toBe(processChip('build').dataset.colour);
    expect(processChip('build').dataset.warning).toBeUndefined();
    expect(within(row('build')).getByText(/Image pair differs/)).toBeTruthy();
    expect(imageChip('web').dataset.warning).toBeUndefined();
  });

  it('shows shared (s0) and unconfined labels with neutral chips, and says why a VM is not confined', () => {
    renderList([
      vmSummary({ name: 'legacy', state: 'running', confined: false, notConfinedReason: 'seclabel is none', processLabel: 'unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023', processLevel: mcs('s0-s0:c0.c1023') }),
    ]);
    expect(processChip('legacy').dataset.colour).toBeUndefined();
    expect(within(row('legacy')).getByText(/Unconfined/)).toBeTruthy();
    expect(within(row('legacy')).getByText('seclabel is none')).toBeTruthy();
  });
});

describe('VmList filter and rows', () => {
  const vms = [confinedVm('web-1', 's0:c1,c2'), confinedVm('web-2', 's0:c3,c4', { state: 'stopped' }), confinedVm('db', 's0:c5,c6')];

  it('filters by name, case-insensitively', () => {
    renderList(vms);
    fireEvent.change(screen.getByRole('searchbox', { name: 'Filter by name' }), { target: { value: 'WEB' } });
    expect(shownNames()).toEqual(['web-1', 'web-2']);
    expect(screen.getByText('2 of 3 VMs')).toBeTruthy();
  });

  it('filters by state, together with the name', () => {
    renderList(vms);
    fireEvent.change(screen.getByRole('combobox', { name: 'Filter by state' }), { target: { value: 'running' } });
    expect(shownNames()).toEqual(['web-1', 'db']);
    fireEvent.change(screen.getByRole('searchbox', { name: 'Filter by name' }), { target: { value: 'web' } });
    expect(shownNames()).toEqual(['web-1']);
    fireEvent.change(screen.getByRole('searchbox', { name: 'Filter by name' }), { target: { value: 'nothing' } });
    expect(screen.getByText('No VM matches the filter.')).toBeTruthy();
  });

  it('still flags a pair conflict with a VM the filter hides', () => {
    renderList([confinedVm('db', 's0:c8,c9'), confinedVm('reports', 's0:c8,c9')]);
    fireEvent.change(screen.getByRole('searchbox', { name: 'Filter by name' }), { target: { value: 'rep' } });
    expect(processChip('reports').dataset.warning).toBe('true');
  });

  it('shows vCPUs and memory, and opens a VM by its name', () => {
    const onOpen = renderList([confinedVm('db', 's0:c5,c6', { vcpus: 4, memoryMiB: 8192 })]);
    expect(within(row('db')).getByText('4')).toBeTruthy();
    expect(within(row('db')).getByText('8 GiB')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'db' }));
    expect(onOpen).toHaveBeenCalledWith('db');
  });
});

describe('VmList confinement', () => {
  const unconfined = vmSummary({ name: 'legacy', state: 'running', confined: false, notConfinedReason: 'not confined: SELinux disabled', processLabel: 'system_u:system_r:svirt_t:s0:c1,c2', processLevel: mcs('s0:c1,c2') });

  it('gives an unconfined VM the strongest warning and never a coloured pair chip', () => {
    render(<VmList vms={[unconfined, confinedVm('web', 's0:c3,c4')]} onOpen={vi.fn()} />);
    expect(row('legacy').className).toContain('row--danger');
    const cell = within(row('legacy')).getByTestId('confinement');
    expect(cell.textContent).toContain('⚠ Unconfined');
    expect(cell.querySelector('.confined--yes')).toBeNull();
    expect(processChip('legacy').dataset.colour).toBeUndefined();
    expect(processChip('legacy').dataset.unenforced).toBe('true');
    expect(within(row('web')).getByTestId('confinement').textContent).toBe('Confined by SELinux (sVirt)');
    expect(processChip('web').dataset.colour).toMatch(/^#/);
  });

  it('says what the helper reports: unconfined on a host with SELinux off, only logged on a permissive one', () => {
    const off = { confinement: 'unconfined-disabled', confined: false, notConfinedReason: 'not confined: SELinux disabled' } as const;
    render(<VmList vms={[confinedVm('web', 's0:c3,c4', off)]} onOpen={vi.fn()} />);
    expect(within(row('web')).getByTestId('confinement').textContent).toContain('Unconfined');
    cleanup();
    const permissive = { confinement: 'permissive', confined: false, notConfinedReason: 'labels applied, not enforced: SELinux is permissive' } as const;
    render(<VmList vms={[confinedVm('web', 's0:c3,c4', permissive)]} onOpen={vi.fn()} />);
    expect(within(row('web')).getByTestId('confinement').textContent).toBe('Permissive: logged, not enforced by SELinux (sVirt)');
  });
});

describe('VmList security models', () => {
  it("names each VM's model, and shows an AppArmor VM's profile from its description's parts with a chip of its own", () => {
    const profile = 'svirt-1000-kiosk';
    renderList([
      confinedVm('web', 's0:c12,c345'),
      vmSummary({ name: 'kiosk', state: 'running', processLabel: profile, processLevel: { level: profile, name: null, pair: profile }, security: apparmorSecurity(profile) }),
    ]);
    expect(within(row('web')).getByTestId('vm-model').textContent).toBe('by SELinux (sVirt)');
    expect(within(row('kiosk')).getByTestId('vm-model').textContent).toBe('by AppArmor');
    const shown = within(row('kiosk')).getByTestId('process-context').querySelector('[data-part="profile"]');
    expect(shown?.textContent).toBe(profile);
    expect(processChip('kiosk').dataset.pair).toBe(profile);
    expect(processChip('kiosk').dataset.colour).toMatch(/^#[0-9a-f]{6}$/);
    // The SELinux VM's context is marked part by part as the description splits it, its type and level apart.
    const context = within(row('web')).getByTestId('process-context');
    expect(context.querySelector('[data-part="type"]')?.textContent).toBe('svirt_t');
    expect(context.querySelector('[data-part="level"]')?.textContent).toBe('s0:c12,c345');
  });
});
