// Races a relabel: swaps TARGET between two parked entries, REAL (a regular file or a directory) and
// LINK (a symlink to a decoy), as fast as renames go for MS milliseconds; prints the number of swaps.
//   node swapper.mjs TARGET REAL LINK MS
// At any moment TARGET is the real entry, the symlink, or (for an instant) nothing.
import { renameSync } from 'node:fs';

const [target, real, link, ms] = process.argv.slice(2);
const end = Date.now() + Number(ms);
let swaps = 0;
while (Date.now() < end) {
  renameSync(target, real);
  renameSync(link, target);
  renameSync(target, link);
  renameSync(real, target);
  swaps++;
}
process.stdout.write(`${swaps}\n`);
