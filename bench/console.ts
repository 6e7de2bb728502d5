// Console keeper throughput: guest output read straight from a serial line ("raw") versus read through a
// console keeper process (source → keeper → viewer), with the same bytes.
// The source stands in for qemu's serial chardev and, like qemu, is a process of its own (this file run
// with --serve-source): it holds a serial line (the FIFO pair of src/root/console/serial-line.ts) as qemu
// does and writes N MiB into it as fast as its reader takes them. Every MiB block is checked against its
// expected SHA-256.
//
//   tsx bench/console.ts [--mib N] [--rounds R] [--ring BYTES]
//
// Each reader is timed from its 32nd MiB to the end (see WARM_UP_BYTES); every byte is checked.
//
// Human lines first; the last line is one JSON object:
//   {"ratioVsRaw", "ratioVsRawWorst", "bytesLost", "mismatchedBlocks", "rounds", "goalMet", "rawMBps", ...}
// ratioVsRaw is the median of the per-round ratios (each keeper run against the raw run just before it);
// bytesLost and mismatchedBlocks are the worst run's; goalMet: ratioVsRaw >= 0.8 and nothing lost.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connectConsole } from '../src/root/console/console-viewer';
import { startConsoleKeeperProcess } from '../src/root/console/keeper-process';
import { enlargeSerialPipe, openSerialLine } from '../src/root/console/serial-line';
import { DEFAULT_RING_BYTES } from '../src/root/console/scrollback-ring';
import { HELPER_NODE_FLAGS } from '../src/user/helper-client';
import { holdSerialLine } from '../test/support/qemu-serial-stand-in';
import { median, roundStats } from './round-stats';

const BLOCK_BYTES = 1024 * 1024;
const WRITE_BYTES = 64 * 1024;
const SELF = fileURLToPath(import.meta.url);
// The keeper as the helper runs it: the bundled helper program in keeper mode (npm run build first), with the
// helper's Node flags (--jitless: the product's keepers run without a JIT, so the bench measures that).
const HELPER_BUNDLE = path.resolve(path.dirname(SELF), '../dist/svirt-helper.js');

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '512' },
    rounds: { type: 'string', default: '7' },
    ring: { type: 'string', default: String(DEFAULT_RING_BYTES) },
    'serve-source': { type: 'string' },
  },
});
const blocks = positive('--mib', values.mib);
const rounds = positive('--rounds', values.rounds);
const ringBytes = positive('--ring', values.ring);
const totalBytes = blocks * BLOCK_BYTES;
if (blocks <= 64) throw new Error('--mib must be more than 64: the first 32 MiB are a warm-up');

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} needs a positive integer, got ${text}`);
  return value;
}

/** Block i: a fixed pseudo-random pattern with i stamped in front, so lost, repeated or reordered blocks show. */
const pattern = (() => {
  const bytes = Buffer.allocUnsafe(BLOCK_BYTES);
  let state = 0x9e3779b9;
  for (let i = 0; i < BLOCK_BYTES; i += 4) {
    // xorshift32: deterministic and cheap, unlike zeros it would catch a shifted stream.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes.writeUInt32LE(state >>> 0, i);
  }
  return bytes;
})();

function block(index: number): Buffer {
  const bytes = Buffer.from(pattern);
  bytes.writeUInt32BE(index, 0);
  return bytes;
}

// Only the reading side checks (before any timing); the source process (--serve-source) never hashes.
const expectedDigests = values['serve-source'] ? [] : Array.from({ length: blocks }, (_, i) => createHash('sha256').update(block(i)).digest('hex'));

// Throughput is timed from this many bytes into the stream to its end, for both readers: the keeper is a
// process started for each run (as for each VM), and its first megabytes run before V8 has compiled its
// hot path; a VM's keeper lives as long as the VM, so the steady state is what a user sees.
const WARM_UP_BYTES = 32 * BLOCK_BYTES;

/** Checks a byte stream block by block as it arrives, and notes when the warm-up part has passed. */
class StreamCheck {
  received = 0;
  mismatchedBlocks = 0;
  /** performance.now() when the received bytes passed WARM_UP_BYTES. */
  warmAt: number | null = null;
  /** Called once, when the warm-up part has passed, and once all the bytes are in. */
  onMark: (mark: 'warm' | 'complete') => void = () => {};
  #hash = createHash('sha256');
  #inBlock = 0;
  #blockIndex = 0;

  add(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.warmAt === null && this.received >= WARM_UP_BYTES) {
      this.warmAt = performance.now();
      this.onMark('warm');
    }
    if (this.received === totalBytes) this.onMark('complete');
    let position = 0;
    while (position < chunk.length) {
      const take = Math.min(BLOCK_BYTES - this.#inBlock, chunk.length - position);
      this.#hash.update(chunk.subarray(position, position + take));
      position += take;
      this.#inBlock += take;
      if (this.#inBlock === BLOCK_BYTES) this.#closeBlock();
    }
  }

  /** Counts a trailing partial block as mismatched. */
  finish(): void {
    if (this.#inBlock > 0) this.#closeBlock();
  }

  #closeBlock(): void {
    if (this.#hash.digest('hex') !== expectedDigests[this.#blockIndex]) this.mismatchedBlocks++;
    this.#blockIndex++;
    this.#hash = createHash('sha256');
    this.#inBlock = 0;
  }
}

/** Source mode: hold a serial line in `dir`, say where it is, pour the blocks when told on stdin, then exit. */
async function serveSource(dir: string): Promise<void> {
  const { line, fromGuest: socket, toGuest } = await holdSerialLine(dir);
  socket.on('error', () => {});
  process.stdout.write(`line ${line}\n`);
  await once(process.stdin, 'data');
  // Two block buffers, reused once the socket has written them: a fresh 1 MiB buffer per block would
  // cost the stand-in more CPU (page faults) than qemu spends, and on 2 cores that CPU is taken from the
  // keeper path (three processes) more than from the raw one (two).
  const buffers = [Buffer.from(pattern), Buffer.from(pattern)];
  const written: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  for (let i = 0; i < blocks; i++) {
    await written[i % 2];
    const bytes = buffers[i % 2]!;
    bytes.writeUInt32BE(i, 0); // as block(i)
    let last!: Promise<void>;
    for (let start = 0; start < bytes.length; start += WRITE_BYTES) {
      let flowing = true;
      last = new Promise<void>((resolve) => (flowing = socket.write(bytes.subarray(start, start + WRITE_BYTES), () => resolve())));
      if (!flowing) await once(socket, 'drain');
    }
    written[i % 2] = last;
  }
  socket.end();
  await once(socket, 'close');
  toGuest.destroy();
}

/** The qemu stand-in as its own process, holding a line in `dir`: `pour()` starts the flood. */
async function serialSource(dir: string): Promise<{ line: string; pour(): Promise<void>; close(): Promise<void> }> {
  const child = spawn(process.execPath, [...process.execArgv, SELF, '--serve-source', dir, '--mib', String(blocks)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const line = await new Promise<string>((resolve) => lines.on('line', (text) => text.startsWith('line ') && resolve(text.slice('line '.length))));
  const exited = once(child, 'exit').then(() => undefined);
  return {
    line,
    async pour() {
      child.stdin.write('pour\n');
      await exited;
    },
    async close() {
      child.kill();
      await exited;
    },
  };
}

interface Run {
  /** From the warm-up mark to the end. */
  seconds: number;
  received: number;
  /** Bytes received after the warm-up mark. */
  timedBytes: number;
  /** CPU time the keeper process used while they went through (keeper runs). */
  keeperCpuSeconds?: number;
  mismatchedBlocks: number;
  note?: string;
}

async function rawRun(dir: string, round: number): Promise<Run> {
  const source = await serialSource(path.join(dir, `raw-${round}`));
  const line = await openSerialLine(source.line);
  const { fromGuest: reader, toGuest } = line;
  toGuest.destroy();
  // The line as the keeper leaves it (console-keeper.ts), so both readers read the same pipe.
  await enlargeSerialPipe(line);
  const check = new StreamCheck();
  reader.on('data', (chunk: Buffer) => check.add(chunk));
  const poured = source.pour();
  await once(reader, 'end');
  const ended = performance.now();
  await poured;
  reader.destroy();
  await source.close();
  check.finish();
  return { ...timing(check, ended), received: check.received, mismatchedBlocks: check.mismatchedBlocks };
}

async function keeperRun(dir: string, round: number): Promise<Run> {
  const viewerPath = path.join(dir, `console-${round}.sock`);
  const source = await serialSource(path.join(dir, `keeper-${round}`));
  const keeper = await startConsoleKeeperProcess({
    command: process.execPath,
    argsPrefix: [...HELPER_NODE_FLAGS, HELPER_BUNDLE],
    serialPath: source.line,
    viewerSocketPath: viewerPath,
    pidFile: path.join(dir, `keeper-${round}.pid`),
    logFile: path.join(dir, 'keeper.log'),
    ringBytes,
  });
  const viewer = connectConsole(viewerPath);
  const check = new StreamCheck();
  // The keeper's own CPU time over the timed part: a figure the other processes' scheduling does not blur.
  const cpu: Partial<Record<'warm' | 'complete', number>> = {};
  check.onMark = (mark) => (cpu[mark] = cpuSeconds(keeper.pid));
  viewer.on('data', (chunk) => check.add(chunk));
  const ended = once(viewer, 'end') as Promise<[{ reason: string; message?: string }]>;
  await viewer.ready;
  const poured = source.pour();
  const [end] = await ended;
  const endedAt = performance.now();
  await poured;
  await source.close();
  check.finish();
  return {
    ...timing(check, endedAt), received: check.received, mismatchedBlocks: check.mismatchedBlocks,
    ...(cpu.warm !== undefined && cpu.complete !== undefined ? { keeperCpuSeconds: cpu.complete - cpu.warm } : {}),
    ...(end.reason === 'vm-ended' ? {} : { note: `viewer ended: ${end.reason} ${end.message ?? ''}` }),
  };
}

/** user + system CPU seconds of a process so far (/proc/PID/stat, clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function timing(check: StreamCheck, endedAt: number): { seconds: number; timedBytes: number } {
  if (check.warmAt === null) throw new Error(`the stream ended before the ${WARM_UP_BYTES}-byte warm-up`);
  return { seconds: (endedAt - check.warmAt) / 1000, timedBytes: check.received - WARM_UP_BYTES };
}

const mbps = (run: Run): number => run.timedBytes / (1024 * 1024) / run.seconds;

if (values['serve-source']) {
  await serveSource(values['serve-source']);
  process.exit(0);
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'svirt-bench-console-'));
try {
  // The keeper path needs two processes scheduled, the raw one a single one: other load on the machine
  // hurts the keeper's figure more, so it is shown with the results.
  const load = (): string => os.loadavg().map((n) => n.toFixed(2)).join(' ');
  console.log(`console keeper bench: ${blocks} MiB per run, ${rounds} rounds, keeper ring ${ringBytes} bytes, node ${process.version}, ${os.cpus().length} CPUs, load ${load()}`);
  const raw: Run[] = [];
  const kept: Run[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternated, so drift in the machine's load hits both alike.
    raw.push(await rawRun(dir, round));
    kept.push(await keeperRun(dir, round));
    const [r, k] = [raw.at(-1)!, kept.at(-1)!];
    console.log(`round ${round + 1}: raw ${mbps(r).toFixed(0)} MiB/s, through keeper ${mbps(k).toFixed(0)} MiB/s (${k.received} of ${totalBytes} bytes${k.note ? `; ${k.note}` : ''})`);
  }
  const rawMBps = median(raw.map(mbps));
  const keeperMBps = median(kept.map(mbps));
  const bytesLost = Math.max(...[...raw, ...kept].map((run) => totalBytes - run.received));
  const mismatchedBlocks = Math.max(...[...raw, ...kept].map((run) => run.mismatchedBlocks));
  // Each keeper run against the raw run just before it (same machine state), then the median of those.
  const pairedRatios = kept.map((run, i) => mbps(run) / mbps(raw[i]!));
  const ratio = roundStats(pairedRatios, 'higher');
  const ratioVsRaw = ratio.median;
  const goalMet = ratioVsRaw >= 0.8 && bytesLost === 0 && mismatchedBlocks === 0;
  const cpuPerGiB = kept.map((run) => (run.keeperCpuSeconds ?? NaN) / (run.timedBytes / 2 ** 30));
  const keeperCpuSecondsPerGiB = Number(median(cpuPerGiB).toFixed(3));
  console.log(`keeper CPU: ${keeperCpuSecondsPerGiB} s per GiB relayed (per run: ${cpuPerGiB.map((c) => c.toFixed(3)).join(', ')})`);
  console.log(`median: raw ${rawMBps.toFixed(1)} MiB/s, keeper ${keeperMBps.toFixed(1)} MiB/s; ratio per round ${pairedRatios.map((r) => r.toFixed(3)).join(', ')}: median ${ratioVsRaw.toFixed(3)} (goal ≥ 0.8)`);
  console.log(`worst run: ratio ${ratio.worst}, ${bytesLost} bytes lost, ${mismatchedBlocks} mismatched MiB blocks (goal 0); load after ${load()}`);
  console.log(`goal (median of ${rounds} rounds >= 0.8, no byte lost): ${goalMet ? 'met' : 'NOT met'}`);
  console.log(
    JSON.stringify({
      ratioVsRaw,
      ratioVsRawWorst: ratio.worst,
      bytesLost,
      mismatchedBlocks,
      rounds,
      goalMet,
      ratioOfMedians: Number((keeperMBps / rawMBps).toFixed(3)),
      rawMBps: Number(rawMBps.toFixed(1)),
      keeperMBps: Number(keeperMBps.toFixed(1)),
      bytes: totalBytes,
      timedFromBytes: WARM_UP_BYTES,
      keeperCpuSecondsPerGiB,
      ringBytes,
    }),
  );
  if (bytesLost > 0 || mismatchedBlocks > 0) process.exitCode = 1;
} finally {
  await rm(dir, { recursive: true, force: true });
}
