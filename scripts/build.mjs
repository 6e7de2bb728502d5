// Bundles the Node-side programs with esbuild. The renderer is built by Vite (vite.config.ts).
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { chmod, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';

const esmRequireShim = "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

const node = { bundle: true, platform: 'node', target: 'node20', sourcemap: true, logLevel: 'warning' };

await mkdir('dist', { recursive: true });
await Promise.all([
  // The helper's tree relabeler (native/label-tree/README.md): a small C program beside the helper bundle,
  // built by its own Makefile (its flags, and its header generated from the path rules' JSON).
  promisify(execFile)('make', ['--no-print-directory', '-C', 'native/label-tree', `OUT=${path.resolve('dist/svirt-label-tree')}`]),
  // The CLI and the root helper are self-contained files: the helper is installed alone under /usr/libexec.
  build({ ...node, entryPoints: ['src/user/cli.ts'], outfile: 'dist/cli.js', format: 'esm', banner: { js: esmRequireShim } }),
  build({ ...node, entryPoints: ['src/root/helper/helper-main.ts'], outfile: 'dist/svirt-helper.js', format: 'esm', banner: { js: `#!/usr/bin/env node\n${esmRequireShim}` } }),
  // Electron loads CommonJS for the main process and for a sandboxed preload.
  // import.meta has no meaning in CommonJS; code that needs its own path uses __filename there.
  build({ ...node, entryPoints: ['electron/main.ts'], outfile: 'dist/electron/main.cjs', format: 'cjs', external: ['electron'], define: { 'import.meta.url': 'undefined' } }),
  build({ ...node, entryPoints: ['electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs', external: ['electron'] }),
]);

await chmod('dist/svirt-helper.js', 0o755);
