// Entry of the console keeper process: `node keeper-main.js --console-keeper --serial S --viewer V --pid-file P [--ring N]`.
// It runs on import, so the bundled helper can `await import()` it when its first argument is --console-keeper.

import { openSync, writeSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { startConsoleKeeper } from './console-keeper';
import { parseKeeperArguments, SPARE_KEEPER_ARG, type SpareAssignment } from './keeper-process';

/** Where log lines go: stderr (the starter's log file), or the file a spare keeper was assigned. */
let writeLog = (text: string): void => {
  process.stderr.write(text);
};

const log = (line: string): void => {
  writeLog(`${new Date().toISOString()} console-keeper[${process.pid}] ${line}\n`);
};

/**
 * A spare keeper (see keeper-process.ts) is loaded ahead and waits on stdin for one line: its VM's
 * arguments and log file. End of input before that line (its helper ended) ends it.
 */
async function spareAssignment(): Promise<SpareAssignment | null> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  process.stdin.destroy();
  if (!text.includes('\n')) return null;
  const assignment = JSON.parse(text.slice(0, text.indexOf('\n'))) as SpareAssignment;
  if (!Array.isArray(assignment.argv) || !assignment.argv.every((a) => typeof a === 'string')) throw new Error('malformed assignment');
  if (assignment.logFile !== undefined && (typeof assignment.logFile !== 'string' || !assignment.logFile.startsWith('/'))) throw new Error('malformed assignment');
  if (assignment.logFile !== undefined) {
    const fd = openSync(assignment.logFile, 'a', 0o600);
    writeLog = (text) => {
      writeSync(fd, text);
    };
  }
  return assignment;
}

async function writePidFile(pidFile: string): Promise<void> {
  // Written whole and renamed, so a starter polling the file never reads half a pid.
  const temporary = `${pidFile}.${process.pid}.tmp`;
  await writeFile(temporary, `${process.pid}\n`, { mode: 0o644 });
  await rename(temporary, pidFile);
}

async function removePidFile(pidFile: string): Promise<void> {
  // Only our own: a newer keeper may have taken the name over.
  const text = await readFile(pidFile, 'utf8').catch(() => null);
  if (text?.trim() === String(process.pid)) await rm(pidFile, { force: true });
}

async function main(argv: readonly string[]): Promise<number> {
  let args;
  try {
    args = parseKeeperArguments(argv);
  } catch (error) {
    log(`usage error: ${(error as Error).message}`);
    return 2;
  }
  const keeper = await startConsoleKeeper({ ...args, log });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void keeper.stop());
  // Detached, it has no terminal; a stray hangup must not end the console.
  process.on('SIGHUP', () => {});
  await writePidFile(args.pidFile);
  log(`pid ${process.pid}, serial ${args.serialPath}`);
  const end = await keeper.ended;
  await removePidFile(args.pidFile);
  log(`exiting: ${end.reason}, ${end.totalBytes} bytes of output`);
  return 0;
}

const argv = process.argv.slice(2);
const spare = argv.includes(SPARE_KEEPER_ARG);
(spare ? spareAssignment().then((a) => (a === null ? 0 : main(a.argv))) : main(argv)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
