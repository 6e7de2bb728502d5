import type { Readable, Writable } from 'node:stream';
import type { ValidateFunction } from 'ajv';
import { readJsonLines } from '../../contracts/json-lines';
import {
  describeAjvError, HelperError, MAX_LINE_BYTES, parseRequestLine, salvageId, type EventMessage, type HelperMessage,
} from '../../contracts/helper-protocol';

/** What a verb handler may do besides returning its result. */
export interface VerbContext {
  /** Sends an event to this client (progress, console bytes). */
  readonly emit: (event: string, data: unknown) => void;
}

/** A verb: its request schema's validator and the handler that runs once args passed it. */
export interface VerbHandler {
  readonly validate: ValidateFunction<unknown>;
  // `never`: each handler takes its own args type, which only its validator vouches for.
  readonly run: (args: never, context: VerbContext) => Promise<unknown>;
}

export type VerbTable = Readonly<Record<string, VerbHandler>>;

/**
 * Serves the helper protocol on a pair of streams until the input ends. Requests run concurrently
 * (a long start must not hold up console input); state changes serialize on the state lock instead.
 * A handler's unexpected exception becomes an error response: one bad request never ends the helper.
 */
export async function serveHelperProtocol(
  input: Readable, output: Writable, verbs: VerbTable, onEmitter?: (emit: VerbContext['emit']) => void,
): Promise<void> {
  const send = (message: HelperMessage) => {
    if (!output.writableEnded && !output.destroyed) output.write(`${JSON.stringify(message)}\n`);
  };
  const context: VerbContext = { emit: (event, data) => send({ event, data } satisfies EventMessage) };
  onEmitter?.(context.emit);
  const pending = new Set<Promise<void>>();

  const handle = async (line: string) => {
    let id: number | string | null = null;
    try {
      const request = parseRequestLine(line);
      id = request.id;
      if (!Object.prototype.hasOwnProperty.call(verbs, request.verb)) {
        throw new HelperError('unknown-verb', `unknown verb "${request.verb}" (known: ${Object.keys(verbs).sort().join(', ')})`);
      }
      const handler = verbs[request.verb] as VerbHandler;
      if (!handler.validate(request.args)) throw new HelperError('bad-request', `${request.verb}: ${describeAjvError(handler.validate)}`);
      // The validator just vouched for the handler's own args type.
      const result = await (handler.run as (args: unknown, context: VerbContext) => Promise<unknown>)(request.args, context);
      send({ id, ok: true, result: result ?? null });
    } catch (err) {
      if (id === null) id = salvageId(line);
      const code = err instanceof HelperError ? err.code : 'failed';
      send({ id, ok: false, error: { code, message: (err as Error).message ?? String(err) } });
    }
  };

  await readJsonLines(input, MAX_LINE_BYTES, (event) => {
    if (event.kind === 'too-long') {
      send({ id: null, ok: false, error: { code: 'line-too-long', message: `request line of ${event.bytes} bytes exceeds ${MAX_LINE_BYTES}` } });
    } else if (event.kind === 'bad-utf8') {
      send({ id: null, ok: false, error: { code: 'bad-json', message: 'request is not valid UTF-8' } });
    } else if (event.text.trim() !== '') {
      const task = handle(event.text).finally(() => pending.delete(task));
      pending.add(task);
    }
  });
  await Promise.all(pending);
}
