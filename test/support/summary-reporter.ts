import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends the run with one plain "Tests: N passed, N failed, N skipped" line, a form CI tools read
 * regardless of the runner (vitest's own summary is a table).
 */
export default class SummaryLineReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      if (module.state() === 'failed' && !module.ok()) {
        // A file that failed to load has no tests; count it so a broken suite never reads as green.
        if ([...module.children.allTests()].length === 0) failed++;
      }
    }
    process.stdout.write(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
