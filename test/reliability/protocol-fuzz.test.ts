import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES } from '../../src/contracts/helper-protocol';
import { batchArb, caseArb, FuzzSession, partialLineThenEof } from './support/protocol-fuzz-scenario';

// Property-based and random-byte fuzzing of the helper's JSON Lines channel against a real helper process
// (the soak, `bench/reliability-soak.ts`, runs the same batches by the ten thousand).
let session: FuzzSession;

beforeAll(async () => {
  session = await FuzzSession.create();
});
afterAll(async () => {
  await session?.dispose();
});

describe('helper protocol fuzzing', () => {
  it('answers every malformed, mistyped, oversized or unknown request well-formed, never crashes or hangs, and changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(batchArb(session.pool, { maxCases: 16 }), async (batch) => {
        const outcome = await session.runBatch(batch);
        expect({ crashed: outcome.crashed, hung: outcome.hung, sideEffects: outcome.sideEffects, protocol: outcome.protocolProblems })
          .toEqual({ crashed: false, hung: false, sideEffects: [], protocol: [] });
      }),
      // fast-check favours short arrays (a few cases a batch): 80 runs make well over 200 cases on any seed.
      { numRuns: 80, endOnFailure: true },
    );
    expect(session.totals.casesFuzzed).toBeGreaterThanOrEqual(200);
    expect(session.totals.details).toEqual([]);
  });

  it('reads a line of exactly MAX_LINE_BYTES and refuses one byte more, without running it', async () => {
    const request = '{"id":"edge","verb":"status"}';
    const at = Buffer.from(request.padEnd(MAX_LINE_BYTES, ' '));
    const over = Buffer.from(request.padEnd(MAX_LINE_BYTES + 1, ' '));
    const batch = { cases: [at, over].map((b, i) => ({ kind: `edge-${i}`, bytes: () => b, toString: () => `edge ${b.length}` })), splits: [4096, MAX_LINE_BYTES - 3] };
    const from = session.helper.lines.length;
    const outcome = await session.runBatch(batch);
    expect(outcome.protocolProblems).toEqual([]);
    const answers = session.helper.lines.slice(from).map((l) => l.message ?? {}).filter((m) => !String(m.id).startsWith('sync-'));
    // Answers are matched by id, not by order: the refusal is written at once while status is still running.
    expect(answers.map((m) => (m.ok === true ? m.id : (m.error as { code: string }).code)).sort()).toEqual(['edge', 'line-too-long']);
  });

  it('answers a partial last line at EOF and exits cleanly', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb(session.pool, { big: false }), async (c) => {
        const bytes = c.bytes();
        const cut = bytes.at(-1) === 10 ? bytes.subarray(0, -1) : bytes;
        expect(await partialLineThenEof(session.host, cut)).toEqual([]);
      }),
      { numRuns: 4 },
    );
  });
});
