// Races a relabel: swaps TARGET between two parked entries, REAL (a regular file or a directory) and
// LINK (a symlink to a decoy), as fast as renames go, until STOP exists or MS milliseconds have passed;
// prints the number of swaps.
//   node swapper.mjs TARGET REAL LINK MS STOP
// At any moment TARGET is the real entry, the symlink, or (for an instant) nothing.
import { existsSync, renameSync } from 'node:fs';

const [target, real, link, ms, stop] = process.argv.slice(2);
const end = Date.now() + Number(ms);
let swaps = 0;
while (Date.now() < end && (swaps % 256 !== 0 || !existsSync(stop))) {
  renameSync(target, real);
  renameSync(link, target);
  renameSync(target, link);
  renameSync(real, target);
  swaps++;
}
process.stdout.write(`${swaps}\n`);
