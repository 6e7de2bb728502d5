/**
 * `svirt context CONTEXT`: the canonical spelling of a security context and its setrans.conf
 * translation. The SELinux side (src/security/selinux/cli/context-question.ts) answers; this prints.
 */
import type { Command } from 'commander';
import { SELINUX_EXAMPLES } from '../../core/selinux/label-examples';
import { describeContext } from '../../security/selinux/cli/context-question';
import { SELINUX_ROOT } from '../../security/selinux/selinux-files';
import { cliErrorOf } from './selinux-questions';

export function registerContextCommand(program: Command): void {
  program
    .command('context')
    .description('print a security context in canonical form, and its translation where setrans.conf names the range')
    .argument('<context>', `user:role:type[:range], e.g. ${SELINUX_EXAMPLES.unorderedImageLabel}; the range may be a setrans.conf name`)
    .option('--selinux-dir <dir>', 'SELinux configuration directory', SELINUX_ROOT)
    .action(async (text: string, options: { selinuxDir: string }) => {
      const { canonical, translated } = await cliErrorOf(() => describeContext(text, options.selinuxDir, (line) => process.stderr.write(line)));
      process.stdout.write(`${canonical}\n`);
      if (translated !== canonical) process.stdout.write(`translated: ${translated}\n`);
    });
}
