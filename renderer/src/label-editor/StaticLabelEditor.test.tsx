// @vitest-environment happy-dom
import { act, cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { StaticLabelCheck, StaticLabelVerdict } from '../../../src/contracts/ipc-contract';
import { ApiProvider } from '../api';
import { createFakeApi } from '../test-support/fake-api';
import { sampleHandlers } from '../test-support/sample-data';
import { StaticLabelEditor, type StaticLabelDraft } from './StaticLabelEditor';

afterEach(cleanup);

const GOOD = 'system_u:system_r:svirt_t:s0:c1,c2';

/** The main process's answers, reduced to the three cases the editor must show. */
async function verdictFor({ label, relabel }: StaticLabelCheck): Promise<StaticLabelVerdict> {
  const shown = { processParts: [], processLevel: null, imageParts: [], imageLevel: null };
  if (label !== GOOD) return { errors: [`invalid level in "${label}": "x0" is not a sensitivity sN`], warnings: [], imageLabel: null, ...shown };
  if (!relabel) return { errors: [], warnings: ["relabel is off: label the VM's files yourself"], imageLabel: null, ...shown };
  return { errors: [], warnings: [], imageLabel: 'system_u:object_r:svirt_image_t:s0:c1,c2', ...shown };
}

function renderEditor(props: { initialLabel?: string; initialRelabel?: boolean; onChange?: (d: StaticLabelDraft) => void } = {}) {
  const validateStaticLabel = vi.fn(verdictFor);
  render(
    <ApiProvider api={createFakeApi({ validateStaticLabel, staticLabelForm: sampleHandlers(() => { throw new Error('no events'); }).staticLabelForm })}>
      <StaticLabelEditor vm="web" initialLabel={GOOD} initialRelabel {...props} />
    </ApiProvider>,
  );
  return { validateStaticLabel };
}

describe('StaticLabelEditor', () => {
  it('shows the image label that follows from a valid label', async () => {
    const { validateStaticLabel } = renderEditor();
    await screen.findByText('The label is valid and its pair is free');
    expect(screen.getByTestId('image-label').textContent).toContain('system_u:object_r:svirt_image_t:s0:c1,c2');
    expect(validateStaticLabel).toHaveBeenCalledWith({ vm: 'web', label: GOOD, relabel: true });
  });

  it('shows the error for a malformed context and no image label', async () => {
    renderEditor();
    fireEvent.change(await screen.findByRole('textbox', { name: /^Level/ }), { target: { value: 'x0:c1,c2' } });
    const errors = await screen.findByRole('list', { name: 'Label errors' });
    expect(within(errors).getByText(/"x0" is not a sensitivity/)).toBeTruthy();
    expect(screen.getByTestId('image-label').textContent).toMatch(/no image label/);
  });

  it('warns that with relabel off the user must label the files', async () => {
    renderEditor({ initialRelabel: false });
    const warnings = await screen.findByRole('list', { name: 'Label warnings' });
    expect(warnings.textContent).toMatch(/label the VM's files yourself/);
    expect(screen.getByTestId('image-label').textContent).toMatch(/relabel is off/);
  });

  it('rechecks when relabel is switched, and asks only about the label the typing settled on', async () => {
    const { validateStaticLabel } = renderEditor();
    await screen.findByText('The label is valid and its pair is free');
    const level = screen.getByRole('textbox', { name: /^Level/ });
    for (const text of ['s0:c1', 's0:c1,', 's0:c1,c2']) fireEvent.change(level, { target: { value: text } });
    fireEvent.click(screen.getByRole('checkbox', { name: /Relabel/ }));
    await screen.findByRole('list', { name: 'Label warnings' });
    const asked = validateStaticLabel.mock.calls.map(([request]) => request.label);
    expect(asked).not.toContain('system_u:system_r:svirt_t:s0:c1');
    expect(asked).not.toContain('system_u:system_r:svirt_t:s0:c1,');
    expect(validateStaticLabel).toHaveBeenLastCalledWith({ vm: 'web', label: GOOD, relabel: false });
  });

  it('reports the draft with its verdict, and no verdict while one is pending', async () => {
    const drafts: StaticLabelDraft[] = [];
    renderEditor({ onChange: (d) => drafts.push(d) });
    await screen.findByText('The label is valid and its pair is free');
    expect(drafts.at(-1)).toEqual({ label: GOOD, relabel: true, verdict: { errors: [], warnings: [], imageLabel: 'system_u:object_r:svirt_image_t:s0:c1,c2', processParts: [], processLevel: null, imageParts: [], imageLevel: null } });
    act(() => {
      fireEvent.change(screen.getByRole('textbox', { name: /^Type/ }), { target: { value: 'svirt_tcg_t' } });
    });
    expect(drafts.at(-1)).toEqual({ label: 'system_u:system_r:svirt_tcg_t:s0:c1,c2', relabel: true, verdict: null });
  });
});
