import { Command } from 'commander';
import { PRODUCT_VERSION } from '../core/version';
import { CliError, EXIT } from './cli/exit-codes';
import { registerContextCommand } from './cli/context-command';
import { registerPlanCommand } from './cli/plan-command';
import { registerAccessCommand } from './cli/access-command';
import { registerAuditCommand } from './cli/audit-command';
import { registerVmCommands } from './cli/vm-commands';
import { registerStatusCommands } from './cli/status-command';
import { inUserWords } from '../core/user-words';
import { VmNotRunningError } from './vm-service';

/**
 * Builds the `svirt` command tree. Each command lives in src/user/cli/<name>.ts and registers itself
 * here, so commands are added without touching each other. Exported so tests can run it in-process.
 */
export function buildCli(): Command {
  const program = new Command('svirt')
    .description('sVirt VM manager: SELinux-confined virtual machines, and their labels, from the command line')
    .version(`svirt ${PRODUCT_VERSION}`, '-V, --version', 'print the version')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`svirt ${PRODUCT_VERSION}\n`);
    });
  registerContextCommand(program);
  registerPlanCommand(program);
  registerAccessCommand(program);
  registerVmCommands(program);
  registerStatusCommands(program);
  registerAuditCommand(program);

  return program;
}

/** Runs the CLI and returns its exit code (0 ok, 1 negative answer, 2 bad input, 3 unknown). */
export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? EXIT.ok : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`svirt: ${inUserWords(err.message, 'cli')}\n`);
      return err.exitCode;
    }
    const code = (err as { exitCode?: number }).exitCode;
    // commander reports --help through exitOverride with code 0, and usage errors with code 1.
    if (typeof code === 'number') return code === 0 ? EXIT.ok : EXIT.badInput;
    const hint = err instanceof VmNotRunningError ? `; start it with \`svirt start ${err.vmName}\`` : '';
    process.stderr.write(`svirt: ${inUserWords((err as Error).message, 'cli')}${hint}\n`);
    return EXIT.badInput;
  }
}
