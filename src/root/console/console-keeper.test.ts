import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants as fsConstants, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { connectConsole, startConsoleKeeper, type ConsoleKeeper, type ConsoleKeeperOptions, type ConsoleViewer, type ViewerEnd } from './console-keeper';
import { FrameDecoder, FrameType, encodeFrame, encodeJsonFrame, parseBye, type Bye } from '../../contracts/console-protocol';
import { keeperArguments, parseKeeperArguments, readPidFile } from './keeper-process';
import { createSerialLine } from './serial-line';
import { holdSerialLine } from '../../../test/support/qemu-serial-stand-in';
import { GUEST_APPEND, GUEST_READY_MARKER, testGuest } from '../../../test/support/guest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const KEEPER_ENTRY = path.join(REPO, 'src/root/console/keeper-main.ts');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function privateDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'svirt-console-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Stands in for qemu's serial line: holds both FIFOs read-write, as qemu's pipe chardev does. */
class FakeSerial {
  readonly input: Buffer[] = [];
  private constructor(readonly line: string, private readonly fromGuest: net.Socket, private readonly toGuest: net.Socket) {
    toGuest.on('data', (chunk: Buffer) => this.input.push(chunk));
    for (const socket of [fromGuest, toGuest]) socket.on('error', () => {});
  }

  /** Makes the line in `dir` (at `dir`/serial/ttyS0) and holds it. */
  static async open(dir: string): Promise<FakeSerial> {
    const { line, fromGuest, toGuest } = await holdSerialLine(dir);
    return new FakeSerial(line, fromGuest, toGuest);
  }

  /** Writes and waits until the pipe has taken it (qemu-like: it blocks only on a full pipe). */
  async send(bytes: Buffer | string): Promise<void> {
    if (!this.fromGuest.write(bytes)) await once(this.fromGuest, 'drain');
  }

  inputText(): string {
    return Buffer.concat(this.input).toString();
  }

  /** qemu exits: both its ends close, once what it wrote is in the pipe. */
  async close(): Promise<void> {
    if (!this.fromGuest.destroyed) {
      const closed = once(this.fromGuest, 'close');
      this.fromGuest.end();
      await closed;
    }
    this.toGuest.destroy();
  }
}

interface Recording {
  /** Absolute output offset of bytes()[0] (null until something arrived). */
  start(): number | null;
  bytes(): Buffer;
  text(): string;
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  ended: Promise<ViewerEnd>;
}

/** Collects what a viewer receives from now on, with its position in the output stream. */
function record(viewer: ConsoleViewer): Recording {
  const chunks: Buffer[] = [];
  let start: number | null = null;
  viewer.on('data', (chunk) => {
    // offset already counts this chunk.
    start ??= viewer.offset - chunk.length;
    chunks.push(chunk);
  });
  const ended = new Promise<ViewerEnd>((resolve) => viewer.once('end', resolve));
  const text = (): string => Buffer.concat(chunks).toString('latin1');
  return {
    start: () => start,
    bytes: () => Buffer.concat(chunks),
    text,
    ended,
    async waitFor(wanted, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      const found = (): boolean => (typeof wanted === 'string' ? text().includes(wanted) : wanted.test(text()));
      while (!found()) {
        if (viewer.ended) throw new Error(`viewer ended (${viewer.ended.reason}) before ${String(wanted)}; got ${JSON.stringify(text().slice(-400))}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${String(wanted)}; got ${JSON.stringify(text().slice(-400))}`);
        await sleep(10);
      }
    },
  };
}

/** The bytes two recordings both hold, by absolute offset; they must be identical. */
function overlap(a: Recording, b: Recording): { fromA: Buffer; fromB: Buffer } {
  const [startA, startB] = [a.start() ?? 0, b.start() ?? 0];
  const from = Math.max(startA, startB);
  const to = Math.min(startA + a.bytes().length, startB + b.bytes().length);
  return { fromA: a.bytes().subarray(from - startA, to - startA), fromB: b.bytes().subarray(from - startB, to - startB) };
}

/** `length` printable bytes in a repeating pattern, so a shifted or cut replay shows. */
function printableOutput(length: number): Buffer {
  const output = Buffer.alloc(length);
  for (let i = 0; i < length; i++) output[i] = 33 + (i % 90);
  return output;
}

function viewerOf(socketPath: string, resumeFrom: number | null = null): ConsoleViewer {
  const viewer = connectConsole(socketPath, { resumeFrom });
  cleanups.push(() => viewer.close());
  return viewer;
}

async function keeperWithFakeSerial(options: Partial<ConsoleKeeperOptions> = {}): Promise<{ keeper: ConsoleKeeper; serial: FakeSerial; viewerPath: string; dir: string }> {
  const dir = await privateDir();
  const serial = await FakeSerial.open(dir);
  const viewerPath = path.join(dir, 'console.sock');
  const keeper = await startConsoleKeeper({ serialPath: serial.line, viewerSocketPath: viewerPath, ...options });
  cleanups.push(async () => {
    await keeper.stop();
    await serial.close().catch(() => {});
  });
  return { keeper, serial, viewerPath, dir };
}

/** A viewer speaking the raw protocol, so a test can stop reading on purpose. */
async function rawViewer(socketPath: string): Promise<net.Socket> {
  const socket = net.connect({ path: socketPath });
  await once(socket, 'connect');
  cleanups.push(() => void socket.destroy());
  return socket;
}

function decodeAll(bytes: Buffer): { type: number; payload: Buffer }[] {
  const frames: { type: number; payload: Buffer }[] = [];
  new FrameDecoder({ maxPayload: 16 * 1024 * 1024 }).push(bytes, (type, payload) => frames.push({ type, payload: Buffer.from(payload) }));
  return frames;
}

describe('console keeper with a stand-in serial port', () => {
  it('replays output produced before any viewer attached', async () => {
    const { serial, viewerPath } = await keeperWithFakeSerial();
    await serial.send('boot line 1\nboot line 2\n');
    await sleep(50);
    const viewer = viewerOf(viewerPath);
    const seen = record(viewer);
    const info = await viewer.ready;
    expect(info).toMatchObject({ offset: 0, end: 'boot line 1\nboot line 2\n'.length, dropped: 0, size: null });
    await seen.waitFor('boot line 2\n');
    expect(seen.text()).toBe('boot line 1\nboot line 2\n');
  });

  it('fans output out to every viewer and sends input from any of them to the serial port', async () => {
    const { serial, viewerPath } = await keeperWithFakeSerial();
    const first = viewerOf(viewerPath);
    const second = viewerOf(viewerPath);
    const [a, b] = [record(first), record(second)];
    await Promise.all([first.ready, second.ready]);
    await serial.send('shared output\n');
    await Promise.all([a.waitFor('shared output\n'), b.waitFor('shared output\n')]);
    first.write('from first\n');
    second.write(Buffer.from('from second\n'));
    for (const deadline = Date.now() + 5000; !serial.inputText().includes('from second'); ) {
      if (Date.now() > deadline) throw new Error(`input not forwarded: ${serial.inputText()}`);
      await sleep(10);
    }
    expect(serial.inputText()).toBe('from first\nfrom second\n');
  });

  it('lets a viewer resume from its offset without a gap', async () => {
    const { serial, viewerPath } = await keeperWithFakeSerial();
    const viewer = viewerOf(viewerPath);
    const before = record(viewer);
    await serial.send('part one;');
    await before.waitFor('part one;');
    const offset = viewer.offset;
    await viewer.close();
    await serial.send('written while away;');
    const again = viewerOf(viewerPath, offset);
    const after = record(again);
    expect(await again.ready).toMatchObject({ offset, dropped: 0 });
    await after.waitFor('written while away;');
    expect(before.text() + after.text()).toBe('part one;written while away;');
    expect(again.offset).toBe('part one;written while away;'.length);
  });

  it('grows a viewer socket\'s send buffer and the serial pipe only once a flood fills them, not for a console that keeps up', async () => {
    const lines: string[] = [];
    const { serial, viewerPath } = await keeperWithFakeSerial({ log: (line) => lines.push(line) });
    const grown = (): string[] => lines.filter((line) => / send buffer | pipe holds /.test(line));
    const keepingUp = viewerOf(viewerPath);
    const seen = record(keepingUp);
    await keepingUp.ready;
    await serial.send('a booting guest prints a line at a time\n');
    await seen.waitFor('a line at a time\n');
    await sleep(200);
    // Each growth is a process start (svirt-label-tree): none while the console keeps up.
    expect(grown()).toEqual([]);

    // A viewer that never reads fills its socket; the keeper holds qemu back for it, so the pipe fills too.
    const stalled = await rawViewer(viewerPath);
    stalled.write(encodeJsonFrame(FrameType.hello, { protocol: 1, resumeFrom: null }));
    stalled.pause();
    await serial.send(printableOutput(2 * 1024 * 1024));
    await until(() => grown().some((line) => /^viewer 2: /.test(line)) && grown().some((line) => / pipe holds /.test(line)), 10_000, 'the keeper to grow the send buffer and the pipe');
    // SO_SNDBUF of 512 KiB, which the kernel doubles after capping it at wmem_max (no capability asked).
    const wmemMax = Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
    expect(grown()).toContain(`viewer 2: send buffer holds ${Math.min(512 * 1024, wmemMax) * 2} bytes`);
    expect(grown()).toContain(`serial line pipe holds ${1024 * 1024} bytes`);
  });

  it('keeps only the newest ringBytes and tells a resuming viewer how much it missed', async () => {
    const { serial, viewerPath } = await keeperWithFakeSerial({ ringBytes: 1024 });
    const output = printableOutput(3000);
    await serial.send(output);
    await sleep(100);
    const fresh = viewerOf(viewerPath);
    const freshSeen = record(fresh);
    expect(await fresh.ready).toMatchObject({ offset: 3000 - 1024, dropped: 0 });
    const resumed = viewerOf(viewerPath, 100);
    const resumedSeen = record(resumed);
    expect(await resumed.ready).toMatchObject({ offset: 3000 - 1024, dropped: 3000 - 1024 - 100 });
    // An offset this keeper never reached belongs to an earlier keeper: start over with the whole scrollback.
    const stranger = viewerOf(viewerPath, 999_999);
    expect(await stranger.ready).toMatchObject({ offset: 3000 - 1024, dropped: 0 });
    const tail = output.subarray(3000 - 1024).toString('latin1');
    await freshSeen.waitFor(tail);
    await resumedSeen.waitFor(tail);
    expect(freshSeen.text()).toBe(tail);
    expect(resumedSeen.text()).toBe(tail);
  });

  it('replays the newest replayBytes to a new viewer, and the whole ring to one that resumes', async () => {
    const { serial, viewerPath } = await keeperWithFakeSerial({ ringBytes: 4096, replayBytes: 1000 });
    const output = printableOutput(3000);
    await serial.send(output);
    await sleep(100);
    const fresh = viewerOf(viewerPath);
    const freshSeen = record(fresh);
    expect(await fresh.ready).toMatchObject({ offset: 2000, end: 3000, dropped: 0 });
    const resumed = viewerOf(viewerPath, 10);
    const resumedSeen = record(resumed);
    expect(await resumed.ready).toMatchObject({ offset: 10, dropped: 0 });
    await freshSeen.waitFor(output.subarray(2000).toString('latin1'));
    await resumedSeen.waitFor(output.subarray(10).toString('latin1'));
    expect(freshSeen.text()).toBe(output.subarray(2000).toString('latin1'));
    expect(resumedSeen.text()).toBe(output.subarray(10).toString('latin1'));
  });

  it.each([
    { mode: 'never pausing qemu', slowViewerGraceMs: 0 },
    { mode: 'pausing qemu for at most 300 ms', slowViewerGraceMs: 300 },
  ])('drops a viewer that stops reading, $mode, and keeps serving the others', async ({ slowViewerGraceMs }) => {
    const ringBytes = 64 * 1024;
    const { keeper, serial, viewerPath } = await keeperWithFakeSerial({ ringBytes, slowViewerGraceMs, endFlushTimeoutMs: 20_000 });
    const fast = viewerOf(viewerPath);
    const fastHash = createHash('sha256');
    let fastBytes = 0;
    fast.on('data', (chunk) => {
      fastHash.update(chunk);
      fastBytes += chunk.length;
    });
    const fastEnded = new Promise<ViewerEnd>((resolve) => fast.once('end', resolve));
    await fast.ready;
    const slow = await rawViewer(viewerPath);
    slow.write(encodeJsonFrame(FrameType.hello, { protocol: 1, resumeFrom: null }));
    await sleep(50);
    slow.pause();

    const total = 8 * 1024 * 1024;
    const block = Buffer.alloc(64 * 1024);
    const sourceHash = createHash('sha256');
    const started = performance.now();
    for (let sent = 0; sent < total; sent += block.length) {
      block.fill(sent / block.length);
      sourceHash.update(block);
      // Would hang here if the stalled viewer held the keeper back from reading the serial port for good.
      await serial.send(block);
    }
    // Held back once, for the grace, until the stalled viewer was cut off; never for long.
    expect(performance.now() - started).toBeLessThan(slowViewerGraceMs + 5_000);
    await sleep(100);
    // The stalled viewer now reads what it was sent: a prefix of the output, then the reason it was let go.
    const slowBytes: Buffer[] = [];
    slow.on('data', (chunk: Buffer) => slowBytes.push(chunk));
    slow.resume();
    await once(slow, 'end');
    const frames = decodeAll(Buffer.concat(slowBytes));
    const last = frames.at(-1);
    expect(last?.type).toBe(FrameType.bye);
    const bye: Bye = parseBye(last!.payload);
    expect(bye.reason).toBe('too-slow');
    const slowData = frames.filter((f) => f.type === FrameType.data).reduce((n, f) => n + f.payload.length, 0);
    expect(bye.offset).toBe(slowData);
    expect(slowData).toBeLessThan(total);

    await serial.close();
    expect((await fastEnded).reason).toBe('vm-ended');
    expect(fastBytes).toBe(total);
    expect(fastHash.digest('hex')).toBe(sourceHash.digest('hex'));
    expect((await keeper.ended).totalBytes).toBe(total);
  });

  it('paces a burst larger than the ring to a viewer slower than it, losing nothing', async () => {
    const ringBytes = 64 * 1024;
    const { serial, viewerPath } = await keeperWithFakeSerial({ ringBytes, slowViewerGraceMs: 2_000 });
    const sluggish = await rawViewer(viewerPath);
    sluggish.write(encodeJsonFrame(FrameType.hello, { protocol: 1, resumeFrom: null }));
    const received: Buffer[] = [];
    sluggish.on('data', (chunk: Buffer) => {
      received.push(chunk);
      // Reads a little, then dawdles: far slower than the source, never stuck for the grace.
      sluggish.pause();
      setTimeout(() => sluggish.resume(), 5);
    });
    // Attached (INFO received) before the burst, so all of it is owed to this viewer.
    while (received.length === 0) await sleep(5);
    const total = 2 * 1024 * 1024;
    const output = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4) output.writeUInt32BE(i, i);
    for (let sent = 0; sent < total; sent += 16 * 1024) await serial.send(output.subarray(sent, sent + 16 * 1024));
    await serial.close();
    await once(sluggish, 'end');
    const frames = decodeAll(Buffer.concat(received));
    expect(frames[0]?.type).toBe(FrameType.info);
    expect(parseBye(frames.at(-1)!.payload).reason).toBe('vm-ended');
    const data = Buffer.concat(frames.filter((f) => f.type === FrameType.data).map((f) => f.payload));
    expect(data.length).toBe(total);
    expect(data.equals(output)).toBe(true);
  });

  it('passes a resize on to the other viewers and to viewers that attach later', async () => {
    const { viewerPath } = await keeperWithFakeSerial();
    const sizer = viewerOf(viewerPath);
    const watcher = viewerOf(viewerPath);
    const sizes: unknown[] = [];
    const sizerSizes: unknown[] = [];
    watcher.on('resize', (size) => sizes.push(size));
    sizer.on('resize', (size) => sizerSizes.push(size));
    await Promise.all([sizer.ready, watcher.ready]);
    sizer.resize(132, 43);
    for (const deadline = Date.now() + 5000; sizes.length === 0 && Date.now() < deadline; ) await sleep(10);
    expect(sizes).toEqual([{ cols: 132, rows: 43 }]);
    expect(sizerSizes).toEqual([]);
    const late = viewerOf(viewerPath);
    expect((await late.ready).size).toEqual({ cols: 132, rows: 43 });
  });

  it('tells every viewer the VM ended, after the last output, then finishes and removes its socket', async () => {
    const { keeper, serial, viewerPath } = await keeperWithFakeSerial();
    const viewer = viewerOf(viewerPath);
    const seen = record(viewer);
    await viewer.ready;
    await serial.send('last words\n');
    await serial.close();
    const end = await seen.ended;
    expect(end).toMatchObject({ reason: 'vm-ended', offset: 11 });
    expect(seen.text()).toBe('last words\n');
    expect(await keeper.ended).toEqual({ reason: 'vm-ended', totalBytes: 11 });
    await expect(stat(viewerPath)).rejects.toThrow(/ENOENT/);
  });

  it('answers a malformed or oversized frame with a protocol-error goodbye', async () => {
    const { viewerPath } = await keeperWithFakeSerial();
    const garbage = await rawViewer(viewerPath);
    const received: Buffer[] = [];
    garbage.on('data', (chunk: Buffer) => received.push(chunk));
    garbage.write(encodeFrame(FrameType.input, Buffer.from('typing before hello')));
    await once(garbage, 'close');
    const frames = decodeAll(Buffer.concat(received));
    expect(frames.map((f) => f.type)).toEqual([FrameType.bye]);
    expect(parseBye(frames[0]!.payload).reason).toBe('protocol-error');

    const huge = await rawViewer(viewerPath);
    const hugeReceived: Buffer[] = [];
    huge.on('data', (chunk: Buffer) => hugeReceived.push(chunk));
    huge.write(Buffer.from([FrameType.hello, 0xff, 0xff, 0xff, 0xff]));
    await once(huge, 'close');
    expect(parseBye(decodeAll(Buffer.concat(hugeReceived))[0]!.payload).message).toMatch(/exceeds/);
  });

  it('creates its socket with mode 0600, replaces a stale one, and refuses to run twice', async () => {
    const dir = await privateDir();
    const serial = await FakeSerial.open(dir);
    cleanups.push(() => serial.close().catch(() => {}));
    const serialPath = serial.line;
    const viewerPath = path.join(dir, 'console.sock');
    // A socket file nobody listens on, as a SIGKILLed keeper leaves behind.
    const dying = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(viewerPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await once(dying, 'exit');
    expect((await stat(viewerPath)).isSocket()).toBe(true);

    const keeper = await startConsoleKeeper({ serialPath, viewerSocketPath: viewerPath });
    cleanups.push(() => void keeper.stop());
    expect((await stat(viewerPath)).mode & 0o777).toBe(0o600);
    await expect(startConsoleKeeper({ serialPath, viewerSocketPath: viewerPath, connectTimeoutMs: 200 })).rejects.toThrow(/already serving|serial line/);

    const notASocket = path.join(dir, 'plain');
    await writeFile(notASocket, '');
    await expect(startConsoleKeeper({ serialPath, viewerSocketPath: notASocket, connectTimeoutMs: 200 })).rejects.toThrow();
  });

  it('waits for the serial line to appear and for qemu to open it', async () => {
    const dir = await privateDir();
    const starting = startConsoleKeeper({ serialPath: path.join(dir, 'serial', 'ttyS0'), viewerSocketPath: path.join(dir, 'console.sock') });
    await sleep(300);
    const serial = await FakeSerial.open(dir);
    const keeper = await starting;
    cleanups.push(async () => {
      await keeper.stop();
      await serial.close().catch(() => {});
    });
    await expect(startConsoleKeeper({ serialPath: path.join(dir, 'never', 'ttyS0'), viewerSocketPath: path.join(dir, 'other.sock'), connectTimeoutMs: 200 })).rejects.toThrow(/ENOENT/);
    // A line nobody holds (qemu not started yet, or failed): the keeper waits, then gives up.
    const unheld = path.join(dir, 'unheld');
    await mkdir(unheld);
    const line = await createSerialLine(path.join(unheld, 'serial'), { uid: process.getuid!(), gid: process.getgid!() });
    await expect(startConsoleKeeper({ serialPath: line, viewerSocketPath: path.join(dir, 'third.sock'), connectTimeoutMs: 300 })).rejects.toThrow(/did not open it/);
    // Its open still waits in the thread pool: a writer lets it return (and the keeper closes what it gets).
    closeSync(openSync(`${line}.out`, fsConstants.O_RDWR));
  });

  it('builds and parses the keeper command line', () => {
    const argv = keeperArguments({ command: 'node', argsPrefix: ['/usr/libexec/svirt-helper.js'], serialPath: '/run/s', viewerSocketPath: '/run/v', pidFile: '/run/p', ringBytes: 2048 });
    expect(argv).toEqual(['/usr/libexec/svirt-helper.js', '--console-keeper', '--serial', '/run/s', '--viewer', '/run/v', '--pid-file', '/run/p', '--ring', '2048']);
    expect(parseKeeperArguments(argv.slice(1))).toEqual({ serialPath: '/run/s', viewerSocketPath: '/run/v', pidFile: '/run/p', ringBytes: 2048 });
    expect(() => parseKeeperArguments(['--serial', 'relative', '--viewer', '/v', '--pid-file', '/p'])).toThrow(/absolute/);
    expect(() => parseKeeperArguments(['--serial', '/s', '--viewer', '/v', '--pid-file', '/p', '--ring', '1e6'])).toThrow(/--ring/);
    expect(() => parseKeeperArguments(['--serial', '/s', '--bogus', 'x'])).toThrow(/unknown/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// With a real qemu booting the test guest under TCG.

/** Sends one QMP command after the capabilities handshake. */
async function qmp(socketPath: string, command: string): Promise<void> {
  const socket = net.connect({ path: socketPath });
  await once(socket, 'connect');
  socket.write(JSON.stringify({ execute: 'qmp_capabilities' }) + '\n');
  socket.write(JSON.stringify({ execute: command }) + '\n');
  // Replies are not needed, but must be read for the stream to reach its end.
  socket.resume();
  await once(socket, 'close').catch(() => {});
}

/** Running, and not a zombie left for a reaper (an orphan's parent here may never reap it). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(25);
  }
}

describe('console keeper with qemu booting the test guest', () => {
  let dir = '';
  let qemu: ChildProcess | null = null;
  let starter: ChildProcess | null = null;
  let keeperPid = 0;
  let viewerPath = '';
  let pidFile = '';
  let qmpPath = '';
  const shared: { first?: ConsoleViewer; second?: ConsoleViewer } = {};

  beforeAll(async () => {
    const guest = await testGuest();
    dir = await mkdtemp(path.join(os.tmpdir(), 'svirt-console-qemu-'));
    const serialPath = await createSerialLine(path.join(dir, 'serial'), { uid: 0, gid: 0 });
    qmpPath = path.join(dir, 'qmp.sock');
    viewerPath = path.join(dir, 'console.sock');
    pidFile = path.join(dir, 'keeper.pid');
    qemu = spawn('qemu-system-x86_64', [
      '-accel', 'tcg', '-m', '256', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', guest.kernel, '-initrd', guest.initrd, '-append', GUEST_APPEND,
      '-chardev', `pipe,id=ser0,path=${serialPath}`, '-serial', 'chardev:ser0',
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
    ], { stdio: ['ignore', 'ignore', 'inherit'] });

    // The starter stands for a helper: it starts the keeper and is later SIGKILLed.
    const starterScript = `
      const { startConsoleKeeperProcess } = await import(${JSON.stringify(path.join(REPO, 'src/root/console/console-keeper.ts'))});
      const keeper = await startConsoleKeeperProcess(JSON.parse(process.argv[1]));
      process.stdout.write(JSON.stringify(keeper) + '\\n');
      setInterval(() => {}, 60_000);`;
    const keeperOptions = {
      command: process.execPath,
      argsPrefix: ['--import', 'tsx', KEEPER_ENTRY],
      serialPath,
      viewerSocketPath: viewerPath,
      pidFile,
      logFile: path.join(dir, 'keeper.log'),
      cwd: REPO,
    };
    starter = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', starterScript, JSON.stringify(keeperOptions)], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(starter.stdout!.setEncoding('utf8'), 'data')) as [string];
    keeperPid = (JSON.parse(line) as { pid: number }).pid;
    expect(await readPidFile(pidFile)).toBe(keeperPid);
  });

  afterAll(async () => {
    await shared.first?.close();
    await shared.second?.close();
    if (starter?.exitCode === null) starter.kill('SIGKILL');
    if (qemu?.exitCode === null) qemu.kill('SIGKILL');
    if (keeperPid && isAlive(keeperPid)) process.kill(keeperPid, 'SIGTERM');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('replays the ready marker to a viewer that attaches after it was printed', async () => {
    const early = connectConsole(viewerPath);
    const earlySeen = record(early);
    await earlySeen.waitFor(GUEST_READY_MARKER, 90_000);
    await early.close();

    const first = connectConsole(viewerPath);
    shared.first = first;
    const replay: Buffer[] = [];
    first.on('data', (chunk) => replay.push(chunk));
    const info = await first.ready;
    expect(info.offset).toBe(0);
    await until(() => Buffer.concat(replay).includes(GUEST_READY_MARKER), 5_000, 'replayed marker');
  });

  it('runs a command typed by one viewer and shows the same output to a second viewer', async () => {
    const first = shared.first!;
    const second = connectConsole(viewerPath, { resumeFrom: first.offset });
    shared.second = second;
    const [a, b] = [record(first), record(second)];
    await second.ready;
    first.write('echo $((6*7))\n');
    await a.waitFor(/^42\r?$/m, 30_000);
    await b.waitFor(/^42\r?$/m, 30_000);
    const { fromA, fromB } = overlap(a, b);
    expect(fromB.toString('latin1')).toMatch(/^42\r?$/m);
    expect(fromB.equals(fromA)).toBe(true);
  });

  it('resumes a killed viewer connection from its offset with no gap', async () => {
    const first = shared.first!;
    const second = shared.second!;
    const secondSeen = record(second);
    // Stand-in for a viewer process dying: its connection goes away without a goodbye.
    const lostAt = first.offset;
    await first.close();
    second.write('echo while-away-$((20+3))\n');
    await secondSeen.waitFor(/^while-away-23\r?$/m, 30_000);

    const back = connectConsole(viewerPath, { resumeFrom: lostAt });
    shared.first = back;
    const backSeen = record(back);
    expect(await back.ready).toMatchObject({ offset: lostAt, dropped: 0 });
    await backSeen.waitFor(/^while-away-23\r?$/m, 10_000);
    expect(backSeen.start()).toBe(lostAt);
    // What the returning viewer got is exactly the second viewer's stream over the same offsets.
    const { fromA, fromB } = overlap(backSeen, secondSeen);
    expect(fromA.toString('latin1')).toMatch(/^while-away-23\r?$/m);
    expect(fromA.equals(fromB)).toBe(true);
  });

  it('keeps running after the process that started it is SIGKILLed', async () => {
    starter!.kill('SIGKILL');
    await once(starter!, 'exit');
    await sleep(300);
    expect(isAlive(keeperPid)).toBe(true);
    const viewer = shared.first!;
    const seen = record(viewer);
    viewer.write('echo still-$((1+1))\n');
    await seen.waitFor(/^still-2\r?$/m, 30_000);
  });

  it('ends, telling its viewers, when qemu quits', async () => {
    const ends = [shared.first!, shared.second!].map((viewer) => new Promise<ViewerEnd>((resolve) => viewer.once('end', resolve)));
    await qmp(qmpPath, 'quit');
    for (const end of await Promise.all(ends)) expect(end.reason).toBe('vm-ended');
    await until(() => !isAlive(keeperPid), 10_000, 'keeper exit');
    expect(await readPidFile(pidFile)).toBeNull();
    await expect(stat(viewerPath)).rejects.toThrow(/ENOENT/);
  });
});
