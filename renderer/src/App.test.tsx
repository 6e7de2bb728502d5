// @vitest-environment happy-dom
import { render, screen, cleanup } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from './App';

afterEach(cleanup);

describe('App', () => {
  it('shows the version the main process reports', async () => {
    render(<App loadInfo={async () => ({ name: 'sVirt Manager', version: '9.8.7' })} />);
    expect(await screen.findByTestId('version')).toHaveProperty('textContent', 'version 9.8.7');
  });

  it('shows an error when the main process fails', async () => {
    render(<App loadInfo={async () => { throw new Error('helper not running'); }} />);
    expect((await screen.findByRole('alert')).textContent).toBe('helper not running');
  });
});
