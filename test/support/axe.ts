import axe from 'axe-core';
import type { Page } from 'playwright-core';

/**
 * axe-core on the page as it is now: its serious and critical violations, one line each (rule, impact,
 * what it asks, the first few elements). Injected by evaluate, not a <script>: the app's CSP allows only
 * its own scripts, rightly.
 */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(axe.source);
  const results = await page.evaluate(() => (window as unknown as { axe: typeof axe }).axe.run(document, { resultTypes: ['violations'] }));
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}
