/**
 * The SELinux boundary of the layout: only the SELinux driver (src/security/selinux) and its pure model
 * (src/core/selinux) may name an SELinux type or build or split a context string (`user:role:type:level`).
 * Everything else speaks through the security seam and the plain-data ConfinementDescription, so another
 * model (AppArmor, DAC, none) needs no change there.
 *
 * Code is scanned, comments are not: a comment that explains why qemu's fds carry its image label names
 * the mechanism it explains, and that is no leak. Tests and fixtures are left out (they assert labels).
 */
import { readdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..');
const SCANNED = ['src', 'electron', 'renderer/src'];
const DRIVER = [/^src\/security\/selinux\//, /^src\/core\/selinux\//];
const NOT_CODE = [/\.test\.tsx?$/, /\/test-support\//, /\/fixtures\//];

/** What counts as speaking SELinux, each with the words the failure uses. */
const RULES: { what: string; pattern: RegExp }[] = [
  { what: 'names an SELinux VM type', pattern: /\b(svirt_t|svirt_image_t|svirt_tcg_t|virt_content_t)\b/ },
  { what: 'names a type at a level (…_t:s0)', pattern: /\b[a-z][a-z0-9_]*_t:s\d/ },
  { what: 'writes a context (…_u:…_r:…)', pattern: /\b[a-z][a-z0-9_]*_u:[a-z][a-z0-9_]*_r:/ },
  { what: 'builds or parses a context (formatContext/parseContext)', pattern: /\b(formatContext|parseContext)\s*\(/ },
  { what: 'joins user:role:type:level itself', pattern: /\$\{[^}]+\}:\$\{[^}]+\}:\$\{[^}]+\}/ },
];

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, dir), { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && /\.(ts|tsx)$/.test(e.name))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .filter((file) => !DRIVER.some((d) => d.test(file)) && !NOT_CODE.some((n) => n.test(file)));
}

/** The code without its comments (line and block), so that only what runs is judged. */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

async function offenders(): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  for (const file of (await Promise.all(SCANNED.map(sourceFiles))).flat()) {
    const code = withoutComments(await readFile(path.join(ROOT, file), 'utf8'));
    const hits = RULES.filter((r) => r.pattern.test(code)).map((r) => r.what);
    if (hits.length > 0) found.set(file, hits);
  }
  return found;
}

describe('the SELinux boundary of the layout', () => {
  it('finds SELinux types and context strings in code, not in comments', () => {
    expect(RULES.some((r) => r.pattern.test(withoutComments("const t = 'system_u:system_r:svirt_t:s0';")))).toBe(true);
    expect(RULES.some((r) => r.pattern.test(withoutComments('const c = `${user}:${role}:${type}:${level}`;')))).toBe(true);
    expect(RULES.some((r) => r.pattern.test(withoutComments('// qemu runs as svirt_t\n/* svirt_image_t:s0 */\nconst x = 1;')))).toBe(false);
  });

  it('no module outside the SELinux driver and model names an SELinux type or builds a context', async () => {
    const found = await offenders();
    expect([...found].map(([file, hits]) => `${file}: ${hits.join('; ')}`)).toEqual([]);
  });
});
