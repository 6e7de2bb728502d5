#!/usr/bin/env node
// Stable bin entry (present before the first build, so npm can link it); the CLI itself is bundled into dist/.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('svirt: not built yet; run `npm run build` (npm start and npm test build too)\n');
  process.exit(2);
}
const { main } = await import(cli.href);
process.exit(await main(process.argv));
