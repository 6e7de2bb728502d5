/**
 * `svirt context CONTEXT`: the canonical spelling of a security context and, where the policy's
 * setrans.conf names its range, the translated form mcstrans would show. The range may itself be
 * given as a name (`…:SystemHigh`).
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { canonicalContext, ContextSyntaxError, parseContext } from '../../core/selinux/context';
import { EMPTY_TRANSLATION_TABLE, parseSetrans, type TranslationTable } from '../../core/selinux/setrans';
import { policyTypeOf, readPolicyFiles, SELINUX_ROOT } from '../../security/selinux/selinux-files';
import { CliError, EXIT } from './exit-codes';

/**
 * The translation table of the installed policy. Translation is an extra: an unreadable or malformed
 * setrans.conf is a warning, and the canonical form is still printed.
 */
async function loadTranslations(root: string, warn: (text: string) => void): Promise<TranslationTable> {
  try {
    const files = await readPolicyFiles(root);
    if (files.setransConf === undefined) return EMPTY_TRANSLATION_TABLE;
    try {
      return parseSetrans(files.setransConf);
    } catch (e) {
      warn(`svirt: warning: ${join(root, policyTypeOf(files) ?? '', 'setrans.conf')}: ${(e as Error).message}; not translating\n`);
      return EMPTY_TRANSLATION_TABLE;
    }
  } catch (e) {
    warn(`svirt: warning: ${(e as Error).message}; not translating\n`);
    return EMPTY_TRANSLATION_TABLE;
  }
}

function canonicalOf(text: string, table: TranslationTable): string {
  try {
    return canonicalContext(text);
  } catch (e) {
    if (!(e instanceof ContextSyntaxError)) throw e;
    try {
      return table.untranslateContext(text);
    } catch {
      // The raw parse error says what is wrong with the input as typed.
      throw new CliError(e.message, EXIT.badInput);
    }
  }
}

/**
 * The policy's last category: SystemHigh of its setrans.conf where it names one, else c1023 (both
 * Debian's and Fedora's policies are built with 1024 categories).
 */
export function lastCategoryOf(table: TranslationTable): number {
  try {
    const last = parseContext(table.untranslateContext('u:r:t:SystemHigh')).range?.high.categories.at(-1);
    if (last !== undefined) return last;
  } catch {
    // No SystemHigh name: the default below.
  }
  return 1023;
}

function checkCategoriesInPolicy(canonical: string, last: number): void {
  const range = parseContext(canonical).range;
  const highest = Math.max(-1, ...(range ? [...range.low.categories, ...range.high.categories] : []));
  if (highest > last) {
    throw new CliError(`category c${highest} is past the policy's last category c${last}: use categories c0…c${last}`, EXIT.badInput);
  }
}

export function registerContextCommand(program: Command): void {
  program
    .command('context')
    .description('print a security context in canonical form, and its translation where setrans.conf names the range')
    .argument('<context>', 'user:role:type[:range], e.g. system_u:object_r:svirt_image_t:s0:c2,c1,c0; the range may be a setrans.conf name')
    .option('--selinux-dir <dir>', 'SELinux configuration directory', SELINUX_ROOT)
    .action(async (text: string, options: { selinuxDir: string }) => {
      const table = await loadTranslations(options.selinuxDir, (line) => process.stderr.write(line));
      const canonical = canonicalOf(text, table);
      checkCategoriesInPolicy(canonical, lastCategoryOf(table));
      process.stdout.write(`${canonical}\n`);
      const translated = table.translateContext(canonical);
      if (translated !== canonical) process.stdout.write(`translated: ${translated}\n`);
    });
}
