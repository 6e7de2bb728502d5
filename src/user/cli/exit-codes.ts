/** Exit codes shared by every svirt command. */
export const EXIT = {
  ok: 0,
  /** A decision that came out negative (access denied, label mismatch). */
  negative: 1,
  badInput: 2,
  /** The answer is not known (e.g. the access evaluator lacks a rule it needs). */
  unknown: 3,
} as const;

/** An error whose message is for the user and which maps to an exit code (default: bad input). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.badInput) {
    super(message);
    this.name = 'CliError';
  }
}
