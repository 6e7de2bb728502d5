// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditReport } from '../../../src/main/ipc-contract';
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

  it('shows the rule behind a cell from a button, so a keyboard reaches it', async () => {
    renderAudit();
    const cell = await screen.findByTestId('access-web-/var/lib/svirt/images/db.qcow2');
    const button = within(cell).getByRole('button');
    expect(button.getAttribute('aria-label')).toMatch(/^web on \/var\/lib\/svirt\/images\/db\.qcow2: none/);
    fireEvent.click(button);
    expect(screen.getByTestId('access-rule').textContent).toContain('MCS constraint: s0:c23,c611 does not dominate s0:c88,c901');
    expect(button.getAttribute('aria-pressed')).toBe('true');
  });

  it('says, when SELinux is off, that the matrix is what the policy would decide and that nothing is enforced', async () => {
    renderAudit({ ...sampleAudit, source: { kind: 'evaluator', why: 'SELinux is disabled in this kernel' } });
    expect(await screen.findByText('SELinux is off: nothing below is enforced now')).toBeTruthy();
    expect(screen.getByRole('heading', { name: 'Who could access what, once SELinux is on' })).toBeTruthy();
  });
});
