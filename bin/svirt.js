#!/usr/bin/env node
// Stable bin entry (present before the first build, so npm can link it); the CLI itself is bundled into dist/.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { jitDeniedBySelinux } from './jit-policy.js';

// Where the policy denies this domain execmem (Debian's unconfined_t), V8's JIT would be refused (a
// crash when enforcing, a denial logged when permissive): run the CLI again without it.
if (!process.execArgv.includes('--jitless') && jitDeniedBySelinux()) {
  // --no-expose-wasm: said outright, so node does not warn that --jitless turns WebAssembly off.
  const again = spawnSync(process.execPath, [...process.execArgv, '--jitless', '--no-expose-wasm', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (again.signal) process.kill(process.pid, again.signal);
  process.exit(again.status ?? 1);
}

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('svirt: not built yet; run `npm run build` (npm start and npm test build too)\n');
  process.exit(2);
}
const { main } = await import(cli.href);
process.exit(await main(process.argv));
