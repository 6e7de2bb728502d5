// @vitest-environment happy-dom
import { cleanup, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RelabelPreview } from '../../../src/contracts/ipc-contract';
import { ApiProvider } from '../api';
import { createFakeApi } from '../test-support/fake-api';
import { diskResource } from '../test-support/sample-data';
import { RelabelDialog } from './RelabelDialog';

afterEach(cleanup);

const TREE = '/srv/site';
const SHARED = 'system_u:object_r:svirt_image_t:s0';

function bigPreview(count: number): RelabelPreview {
  const changes = Array.from({ length: count }, (_, i) => ({ path: `${TREE}/f${i}`, from: 'unconfined_u:object_r:user_home_t:s0', to: SHARED }));
  return { vm: 'web', path: TREE, to: 'shared', changes, count, warnings: [] };
}

describe('RelabelDialog', () => {
  it('puts only a window of a 20,000-file change list in the DOM, with the whole count in its ARIA row count', async () => {
    const api = createFakeApi({ previewRelabel: vi.fn(async () => bigPreview(20_000)) });
    render(
      <ApiProvider api={api}>
        <RelabelDialog vm="web" resource={diskResource(TREE, { target: 'vdb', isTree: true })} to="shared" onClose={vi.fn()} onApplied={vi.fn()} />
      </ApiProvider>,
    );
    expect((await screen.findByTestId('change-count')).textContent).toBe('20000 files change label:');
    const table = screen.getByRole('table', { name: 'Files that change label' });
    expect(table.getAttribute('aria-rowcount')).toBe('20001');
    const rows = within(table).getAllByRole('row');
    expect(rows.length).toBeGreaterThan(5);
    expect(rows.length).toBeLessThan(100);
    expect(within(table).getByTitle(`${TREE}/f0`)).toBeTruthy();
  });
});
