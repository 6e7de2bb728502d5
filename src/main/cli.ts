import { Command } from 'commander';
import { PRODUCT_VERSION } from './version';

/** Builds the `svirt` command tree. Exported so tests can run it in-process. */
export function buildCli(): Command {
  const program = new Command('svirt')
    .description('sVirt VM manager: SELinux-confined virtual machines, and their labels, from the command line')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`svirt ${PRODUCT_VERSION}\n`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    // commander signals --help/--version through exitOverride with code 0.
    if (typeof code === 'number') return code === 1 ? 2 : code;
    process.stderr.write(`svirt: ${(err as Error).message}\n`);
    return 2;
  }
}
