/**
 * `svirt context CONTEXT` on the SELinux side: the canonical spelling of a security context and, where
 * the policy's setrans.conf names its range, the translated form mcstrans would show. The range may
 * itself be given as a name (`…:SystemHigh`). The CLI prints what this returns.
 */
import { join } from 'node:path';
import { canonicalContext, ContextSyntaxError, parseContext } from '../../../core/selinux/context';
import { EMPTY_TRANSLATION_TABLE, parseSetrans, type TranslationTable } from '../../../core/selinux/setrans';
import { policyTypeOf, readPolicyFiles } from '../selinux-files';
import { SelinuxQuestionError } from './question-error';

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
      throw new SelinuxQuestionError(e.message);
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
    throw new SelinuxQuestionError(`category c${highest} is past the policy's last category c${last}: use categories c0…c${last}`);
  }
}

export interface ContextAnswer {
  readonly canonical: string;
  /** The form with the range named by setrans.conf; the canonical form when it names none. */
  readonly translated: string;
}

/**
 * A context in canonical and translated form, by the policy under `selinuxDir`. Input that is neither a
 * context nor a translated one, or whose categories the policy does not have, is bad input; a problem
 * with setrans.conf only goes to `warn`.
 */
export async function describeContext(text: string, selinuxDir: string, warn: (text: string) => void): Promise<ContextAnswer> {
  const table = await loadTranslations(selinuxDir, warn);
  const canonical = canonicalOf(text, table);
  checkCategoriesInPolicy(canonical, lastCategoryOf(table));
  return { canonical, translated: table.translateContext(canonical) };
}
