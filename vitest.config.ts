import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'test/**/*.test.tsx', 'renderer/**/*.test.tsx', 'electron/**/*.test.ts'],
    // qemu guests boot under TCG on 2 cores: give integration tests room, keep files in parallel modest.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
