import { SelinuxQuestionError } from '../../security/selinux/cli/question-error';
import { CliError, EXIT } from './exit-codes';

/**
 * Runs one step of an SELinux question (`svirt access`, `svirt context`) and turns what the SELinux side
 * refuses into the CLI's error: bad input exits 2, a question the policy cannot settle exits 3.
 */
export async function cliErrorOf<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (e instanceof SelinuxQuestionError) throw new CliError(e.message, e.kind === 'unknown' ? EXIT.unknown : EXIT.badInput);
    throw e;
  }
}
