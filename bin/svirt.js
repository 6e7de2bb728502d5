#!/usr/bin/env -S node --jitless --no-expose-wasm
// Stable bin entry (present before the first build, so npm can link it); the CLI itself is bundled into dist/.
// --jitless: Debian's policy denies execmem (V8's JIT) to a desktop user's unconfined_t, which kills a JIT
// Node as soon as it compiles; a CLI is no slower without it (the offline evaluator measured the same).
// --no-expose-wasm: said outright, so Node does not warn that --jitless turns WebAssembly off.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('svirt: not built yet; run `npm run build` (npm start and npm test build too)\n');
  process.exit(2);
}
const { main } = await import(cli.href);
process.exit(await main(process.argv));
