// Entry of the console keeper process: `node keeper-main.js --console-keeper --serial S --viewer V --pid-file P [--ring N]`.
// It runs on import, so the bundled helper can `await import()` it when its first argument is --console-keeper.

import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { startConsoleKeeper } from './console-keeper';
import { parseKeeperArguments } from './keeper-process';

const log = (line: string): void => {
  process.stderr.write(`${new Date().toISOString()} console-keeper[${process.pid}] ${line}\n`);
};

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
main(argv).then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
