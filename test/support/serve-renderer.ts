import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

/**
 * Serves the built renderer (dist/renderer) on loopback: module scripts do not load from file:// in a
 * plain browser, and Electron's file:// page cannot be had here.
 */
export async function serveRenderer(pageDir = path.resolve('dist', 'renderer')): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    const relative = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname).replace(/^\/+/, '') || 'index.html';
    if (relative === 'favicon.ico') return void response.writeHead(204).end(); // the browser asks; the app has none
    const file = path.join(pageDir, path.normalize(relative));
    if (!file.startsWith(pageDir)) return void response.writeHead(403).end();
    readFile(file).then(
      (body) => response.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(body),
      () => response.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/index.html`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
