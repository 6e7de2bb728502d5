/**
 * What the SELinux questions (`svirt access`, `svirt context`) refuse to answer: bad input, named by the
 * field the user gave, or a question the policy data cannot settle. The CLI maps the kind to its exit
 * code; this side knows nothing of exit codes or of the CLI's output.
 */
export class SelinuxQuestionError extends Error {
  constructor(message: string, readonly kind: 'badInput' | 'unknown' = 'badInput') {
    super(message);
    this.name = 'SelinuxQuestionError';
  }
}
