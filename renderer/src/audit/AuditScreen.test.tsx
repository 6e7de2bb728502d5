// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditReport } from '../../../src/contracts/ipc-contract';
import { ApiProvider } from '../api';
import { createFakeApi } from '../test-support/fake-api';
import { sampleAudit } from '../test-support/sample-data';
import { AuditScreen } from './AuditScreen';

afterEach(cleanup);

function renderAudit(report: AuditReport = sampleAudit, overrides: Parameters<typeof createFakeApi>[0] = {}) {
  const onOpenVm = vi.fn();
  const api = createFakeApi({ audit: async () => report, ...overrides });
  render(
    <ApiProvider api={api}>
      <AuditScreen onOpenVm={onOpenVm} />
    </ApiProvider>,
  );
  return onOpenVm;
}

const problem = (kind: string) => screen.getByRole('list', { name: 'Problems' }).querySelector(`[data-kind="${kind}"]`) as HTMLElement;

describe('AuditScreen', () => {
  it('offers the fix with each problem: edit the label, relabel, shut down', async () => {
    const shutdownVm = vi.fn(async () => undefined);
    const onOpenVm = renderAudit(sampleAudit, { shutdownVm });
    await screen.findByRole('list', { name: 'Problems' });
    fireEvent.click(within(problem('duplicate-pair')).getByRole('button', { name: 'Edit the label of reports' }));
    expect(onOpenVm).toHaveBeenCalledWith('reports', 'seclabel');
    fireEvent.click(within(problem('label-drift')).getByRole('button', { name: 'Relabel site-content in web' }));
    expect(onOpenVm).toHaveBeenCalledWith('web', 'overview');
    fireEvent.click(within(problem('unconfined-vm')).getByRole('button', { name: 'Shut down legacy-xp' }));
    expect(shutdownVm).toHaveBeenCalledWith({ name: 'legacy-xp' });
  });

  it('shows the rule behind a cell from the keyboard: Tab to the grid, arrow keys, Enter', async () => {
    renderAudit();
    const grid = await screen.findByRole('grid', { name: 'Access matrix' });
    expect(grid.getAttribute('tabindex')).toBe('0');
    grid.focus();
    fireEvent.keyDown(grid, { key: 'ArrowRight' });
    const active = document.getElementById(grid.getAttribute('aria-activedescendant') ?? '') as HTMLElement;
    expect(active.getAttribute('aria-label')).toMatch(/^web on \/var\/lib\/svirt\/images\/db\.qcow2: none/);
    fireEvent.keyDown(grid, { key: 'Enter' });
    expect(screen.getByTestId('access-rule').textContent).toContain('MCS constraint: s0:c23,c611 does not dominate s0:c88,c901');
    expect(active.getAttribute('aria-selected')).toBe('true');
  });

  it('gives an unconfined VM a row of its own and a content tree a column', async () => {
    renderAudit();
    const grid = await screen.findByRole('grid', { name: 'Access matrix' });
    expect(within(grid).getByRole('rowheader', { name: /legacy-xp/ }).textContent).toContain('unconfined');
    expect(screen.getByTestId('access-legacy-xp-/var/lib/svirt/images/db.qcow2').getAttribute('title')).toMatch(/unconfined/);
    expect(screen.getByTestId('access-web-/srv/site-content').textContent).toBe('read');
  });

  it('says, when SELinux is off, that the matrix is what the policy would decide and that nothing is enforced', async () => {
    renderAudit({ ...sampleAudit, source: { kind: 'evaluator', model: 'selinux', modelName: 'SELinux', why: 'SELinux is disabled in this kernel' } });
    expect(await screen.findByText('SELinux is off: nothing below is enforced now')).toBeTruthy();
    expect(screen.getByRole('heading', { name: 'Who could access what, once SELinux is on' })).toBeTruthy();
  });

  it('names AppArmor as the model that answers when the loaded profiles do, with no SELinux warning', async () => {
    renderAudit({ ...sampleAudit, source: { kind: 'profiles', model: 'apparmor', modelName: 'AppArmor', why: 'each cell is read from the VM\'s profile' } });
    expect((await screen.findByTestId('audit-source')).textContent).toBe('AppArmor: Answered by the loaded AppArmor profiles — each cell is read from the VM\'s profile');
    expect(screen.getByText(/as AppArmor decides it/)).toBeTruthy();
    expect(screen.queryByText('SELinux is off: nothing below is enforced now')).toBeNull();
    expect(screen.getByRole('heading', { name: 'Who can access what' })).toBeTruthy();
  });
});
