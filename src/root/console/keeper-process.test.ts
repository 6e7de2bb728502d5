import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { holdSerialLine } from '../../../test/support/qemu-serial-stand-in';
import { connectConsole } from './console-viewer';
import { disableSpareKeepers, enableSpareKeepers, startConsoleKeeperProcess, type KeeperProcessOptions } from './keeper-process';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const KEEPER = { command: process.execPath, argsPrefix: ['--import', 'tsx', path.join(REPO, 'src/root/console/keeper-main.ts')] };

const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

/** The nice value of each thread of a process (field 19 of /proc/PID/task/TID/stat). */
function niceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((thread) => {
    const stat = readFileSync(`/proc/${pid}/task/${thread}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

/** The nice of the process's session scheduling group (autogroup), or undefined on a kernel without autogroup. */
function groupNiceness(pid: number): number | undefined {
  const text = (() => {
    try {
      return readFileSync(`/proc/${pid}/autogroup`, 'utf8');
    } catch {
      return undefined;
    }
  })();
  const nice = text === undefined ? undefined : /\bnice (-?\d+)/.exec(text)?.[1];
  return nice === undefined ? undefined : Number(nice);
}
const HAS_AUTOGROUP = groupNiceness(process.pid) !== undefined;

/** This process's spare keepers still waiting for a VM (a spare handed one serves it and is in `serving`). */
function waitingSpares(serving: number[]): number[] {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return parent === process.pid && !serving.includes(pid) && cmdline(pid).includes('--spare');
    } catch {
      return false; // gone meanwhile
    }
  });
}

describe('spare console keepers', () => {
  const keepers: number[] = [];
  const lines: { fromGuest: net.Socket; toGuest: net.Socket }[] = [];
  let dir: string | undefined;
  afterAll(async () => {
    disableSpareKeepers();
    for (const pid of keepers) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    for (const line of lines) {
      line.fromGuest.destroy();
      line.toGuest.destroy();
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** One VM's keeper options, with a serial line held as qemu holds it. */
  async function vm(name: string): Promise<{ options: KeeperProcessOptions; fromGuest: net.Socket }> {
    dir ??= await mkdtemp(path.join(os.tmpdir(), 'keeper-spare-'));
    const held = await holdSerialLine(path.join(dir, name));
    held.fromGuest.on('error', () => {});
    lines.push(held);
    return {
      options: {
        ...KEEPER, cwd: REPO, serialPath: held.line, viewerSocketPath: path.join(dir, `${name}.sock`),
        pidFile: path.join(dir, `${name}.pid`), logFile: path.join(dir, `${name}.log`),
      },
      fromGuest: held.fromGuest,
    };
  }

  it('hands the next VM a keeper started ahead, which serves that VM and logs to its log file', async () => {
    enableSpareKeepers(KEEPER);
    const first = await vm('first');
    const firstKeeper = await startConsoleKeeperProcess(first.options);
    keepers.push(firstKeeper.pid);
    expect(cmdline(firstKeeper.pid)).not.toContain('--spare');

    const second = await vm('second');
    const secondKeeper = await startConsoleKeeperProcess(second.options);
    keepers.push(secondKeeper.pid);
    expect(cmdline(secondKeeper.pid)).toContain('--spare');
    // Loaded at the lowest priority; serving a VM at the usual one, every thread of it.
    expect(new Set(niceness(secondKeeper.pid))).toEqual(new Set([0]));
    if (HAS_AUTOGROUP) expect(groupNiceness(secondKeeper.pid)).toBe(0);
    expect(await readFile(second.options.logFile as string, 'utf8')).toMatch(new RegExp(`console-keeper\\[${secondKeeper.pid}\\] pid ${secondKeeper.pid}, serial ${second.options.serialPath}`));

    const viewer = connectConsole(second.options.viewerSocketPath);
    await viewer.ready;
    second.fromGuest.write('from the second VM\r\n');
    const [chunk] = (await once(viewer, 'data')) as [Buffer];
    expect(chunk.toString()).toContain('from the second VM');
    await viewer.close();
  }, 120_000);

  it('gives a spare started with another environment no VM: it exits, and the keeper is started afresh', async () => {
    enableSpareKeepers(KEEPER);
    const third = await vm('third');
    const keeper = await startConsoleKeeperProcess({ ...third.options, env: { ...process.env, SVIRT_TEST_OTHER_ENV: '1' } });
    keepers.push(keeper.pid);
    expect(cmdline(keeper.pid)).not.toContain('--spare');
  }, 120_000);

  it('starts the next spare only once the starter says (a VM start: once qemu runs)', async () => {
    disableSpareKeepers();
    for (let i = 0; i < 200 && waitingSpares(keepers).length > 0; i++) await sleep(50);
    enableSpareKeepers(KEEPER);
    let qemuRuns!: () => void;
    const nextSpareAfter = new Promise<void>((resolve) => (qemuRuns = resolve));
    const keeper = await startConsoleKeeperProcess({ ...(await vm('fourth')).options, nextSpareAfter });
    keepers.push(keeper.pid);
    await sleep(300);
    expect(waitingSpares(keepers)).toEqual([]);
    qemuRuns();
    for (let i = 0; i < 200 && waitingSpares(keepers).length === 0; i++) await sleep(50);
    expect(waitingSpares(keepers)).toHaveLength(1);
    const spare = waitingSpares(keepers)[0] as number;
    expect(new Set(niceness(spare))).toEqual(new Set([19]));
    // A detached spare is a session, so an autogroup, of its own: its threads' nice alone would not lower
    // its share against qemu's group.
    if (HAS_AUTOGROUP) expect(groupNiceness(spare)).toBe(19);
  }, 120_000);
});
