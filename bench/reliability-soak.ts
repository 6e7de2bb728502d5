// The reliability soak: the same scenarios as test/reliability/*.test.ts at full size.
//
//   tsx bench/reliability-soak.ts [--cases 10000] [--kills 50] [--vms 20] [--lines 2000] [--hostile 2000] [--seed N]
//                                 [--only fuzz,crash,load,hostile]
//
// (`npm run soak` builds the helper bundle first: dist/svirt-helper.js is what runs.) Runs as root, like the
// tests: it sets real labels and starts qemu. Progress goes to stderr; the last line on stdout is one JSON
// object:
//   {"casesFuzzed", "crashes", "hangs", "sideEffects", "killIterations", "invariantViolations",
//    "concurrentVms", "lostConsoleBytes", "hostileCases", "boundaryViolations"}
// Goal: all zero but the counts. Details of anything non-zero go to stderr.

import { parseArgs } from 'node:util';
import { journalRace, lockRace, parallelVms } from '../test/reliability/support/concurrency-scenario';
import { runCrashSoak } from '../test/reliability/support/crash-scenario';
import { runHostile } from '../test/reliability/support/hostile-scenario';
import { runProtocolFuzz } from '../test/reliability/support/protocol-fuzz-scenario';
import { createTestHost } from '../test/support/helper-session';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '10000' },
    kills: { type: 'string', default: '50' },
    vms: { type: 'string', default: '20' },
    lines: { type: 'string', default: '2000' },
    hostile: { type: 'string', default: '2000' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    only: { type: 'string', default: 'fuzz,crash,load,hostile' },
  },
});
const seed = Number(values.seed);
const only = new Set(values.only.split(','));
const started = Date.now();
const log = (line: string) => process.stderr.write(`[soak ${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}\n`);
const details = (what: string, lines: readonly string[]) => {
  for (const line of lines.slice(0, 20)) process.stderr.write(`  ${what}: ${line}\n`);
};

if (process.getuid?.() !== 0) {
  process.stderr.write('reliability soak: run as root (it labels files and starts qemu)\n');
  process.exit(1);
}
log(`seed ${seed}`);

const result = {
  casesFuzzed: 0, crashes: 0, hangs: 0, sideEffects: 0,
  killIterations: 0, invariantViolations: 0,
  concurrentVms: 0, lostConsoleBytes: 0,
  hostileCases: 0, boundaryViolations: 0,
};
const extra: Record<string, unknown> = { seed };

if (only.has('fuzz')) {
  const fuzz = await runProtocolFuzz(Number(values.cases), seed, log);
  // The summary has no key for a wrong response: a request never answered counts as a hang, any other
  // wrong response (malformed, extra, unknown code, success where a refusal was due) as a side effect.
  Object.assign(result, {
    casesFuzzed: fuzz.casesFuzzed, crashes: fuzz.crashes, hangs: fuzz.hangs + fuzz.unanswered,
    sideEffects: fuzz.sideEffects + fuzz.protocolProblems,
  });
  extra.protocolProblems = fuzz.protocolProblems;
  extra.unanswered = fuzz.unanswered;
  extra.internalErrors = Object.fromEntries(fuzz.internalErrors);
  extra.answers = Object.fromEntries([...fuzz.answers].sort((a, b) => b[1] - a[1]));
  details('fuzz', fuzz.details);
  log(`fuzz done: ${JSON.stringify({ ...fuzz, internalErrors: fuzz.internalErrors.size, answers: fuzz.answers.size, details: fuzz.details.length })}`);
}

if (only.has('crash')) {
  const crash = await runCrashSoak(Number(values.kills), seed, log);
  result.killIterations = crash.killIterations;
  result.invariantViolations += crash.invariantViolations;
  details('crash', crash.details);
}

if (only.has('load')) {
  // The lock between processes (with stale locks appearing), the journal through two helpers, then the VMs.
  const lost = await lockRace(4, 500, false) + (await lockRace(4, 300, true));
  result.invariantViolations += lost;
  extra.lockLostUpdates = lost;
  log(`lock race: ${lost} updates lost`);
  const host = await createTestHost();
  try {
    const journal = await journalRace(host, 100);
    result.invariantViolations += journal.length;
    details('journal', journal);
    const perHelper = Math.ceil(Number(values.vms) / 2);
    const load = await parallelVms(host, perHelper, Number(values.lines), log);
    result.concurrentVms = load.vms;
    result.lostConsoleBytes = load.lostConsoleBytes;
    result.invariantViolations += load.violations.filter((v) => !v.startsWith('console of')).length;
    extra.forcedStops = load.forcedStops;
    extra.loadTimingsMs = load.timings;
    details('load', load.violations);
  } finally {
    await host.dispose();
  }
}

if (only.has('hostile')) {
  const hostileStarted = Date.now();
  const hostile = await runHostile(Number(values.hostile), seed, log);
  const hostileSeconds = (Date.now() - hostileStarted) / 1000;
  log(`hostile: ${hostile.hostileCases} cases in ${hostileSeconds.toFixed(0)} s (${(hostile.hostileCases / hostileSeconds).toFixed(1)} cases/s)`);
  result.hostileCases = hostile.hostileCases;
  result.boundaryViolations = hostile.boundaryViolations;
  extra.boundaryViolationsByKind = hostile.byKind;
  extra.hostileShapes = hostile.shapes;
  extra.hostileSeconds = Math.round(hostileSeconds);
  extra.legitimateStartsFailed = hostile.legitimateStartsFailed;
  details('hostile', hostile.details);
}

extra.wallSeconds = Math.round((Date.now() - started) / 1000);
log(`extra: ${JSON.stringify(extra)}`);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
