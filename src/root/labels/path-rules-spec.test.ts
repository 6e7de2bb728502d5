import { execFile } from 'node:child_process';
import { constants, readdirSync } from 'node:fs';
import { lchown, mkdir, mkdtemp, open, rm, symlink, writeFile, type FileHandle } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import rules from '../../core/path-rules.json';
import {
  checkOwner, checkPathLocation, checkPathSyntax, DEFAULT_PATH_POLICY, openRelabelTarget, PathRefusedError, treeGrants,
  type PathPolicyConfig, type Requester,
} from '../../host/path-policy';
import { labelTree } from './label-tree-tool';

// One specification, two implementations (issue 14): every case of src/core/path-rules.json goes to the
// TypeScript rules and to the compiled svirt-label-tree, on a real file of the case's kind and owner, and
// both must come to the case's outcome. The case's path is what the requester named; the file stands in a
// temporary directory (the tool is handed it as fd 3 with --root-path naming the case's path, as the
// helper hands it the file it opened).
const run = promisify(execFile);
const LABEL = 'system_u:object_r:svirt_image_t:s0';
// open(2)'s O_PATH (Linux): a handle on a symlink or device node that opens nothing.
const O_PATH = 0o10000000;

interface SpecCase {
  readonly path: string;
  readonly kind?: string;
  readonly owner?: number;
  readonly requester: number;
  readonly pools?: readonly { path: string; users?: string[]; groups?: string[]; shared?: boolean }[];
  readonly expect: string;
}
const cases: readonly SpecCase[] = rules.cases;

let dir: string;
const servers: Server[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'svirt-path-rules-'));
});
afterAll(async () => {
  for (const server of servers) server.close();
  await rm(dir, { recursive: true, force: true });
});

const requesterOf = (uid: number): Requester => (uid === 0 ? { uid } : { uid, name: `user${uid}`, groups: [`user${uid}`] });
const configOf = (c: SpecCase): PathPolicyConfig => ({
  pools: (c.pools ?? []).map((p) => ({ users: [], groups: [], shared: false, ...p })),
  devices: [],
});

/** A device number the kernel knows: a node made with it opens like the host's own disk. */
function someBlockDevice(): [string, string] {
  const names = readdirSync('/sys/dev/block');
  const name = names.find((n) => !n.startsWith('7:')) ?? names[0];
  if (!name) throw new Error('no block device on this host');
  return name.split(':') as [string, string];
}

/** The case's file, of its kind and owner, at a path of its own. */
async function materialize(index: number, c: SpecCase): Promise<string> {
  const home = path.join(dir, `case-${index}`);
  await mkdir(home);
  const file = path.join(home, 'target');
  const kind = c.kind ?? 'file';
  if (kind === 'file') await writeFile(file, 'image');
  else if (kind === 'directory') await mkdir(file);
  else if (kind === 'symlink') await symlink('/etc/passwd', file);
  else if (kind === 'fifo') await run('mkfifo', [file]);
  else if (kind === 'char') await run('mknod', [file, 'c', '1', '3']);
  else if (kind === 'block') await run('mknod', [file, 'b', ...someBlockDevice()]);
  else if (kind === 'socket') {
    const server = createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(file, resolve));
  } else throw new Error(`unknown kind ${kind}`);
  const owner = c.owner ?? c.requester;
  await lchown(file, owner, owner);
  return file;
}

function refusalReason(err: unknown): string {
  if (!(err instanceof PathRefusedError)) throw err;
  return err.message.slice(`refusing ${JSON.stringify(err.target)}: `.length);
}

/** The TypeScript rules, in the helper's order: the named path's syntax and location, the file's kind, its owner. */
async function typescriptOutcome(c: SpecCase, file: string): Promise<string> {
  const config = configOf(c);
  const requester = requesterOf(c.requester);
  try {
    checkPathSyntax(c.path);
    checkPathLocation(c.path, config, requester);
    // The file stands elsewhere than the case's path: open it for its kind only (as root, no pools).
    const opened = await openRelabelTarget(file, { config: DEFAULT_PATH_POLICY, requester: { uid: 0 }, allowDirectory: true });
    try {
      checkOwner(c.path, opened.stat.uid, config, requester);
    } finally {
      await opened.handle.close();
    }
    return 'allowed';
  } catch (err) {
    return refusalReason(err);
  }
}

/** svirt-label-tree, handed the file as the helper hands it a tree's root, told what treeGrants says. */
async function toolOutcome(index: number, c: SpecCase, file: string): Promise<string> {
  const plain = c.kind === undefined || c.kind === 'file' || c.kind === 'directory';
  const root = await open(file, plain ? constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK : O_PATH | constants.O_NOFOLLOW);
  let log: FileHandle | undefined;
  try {
    log = await open(path.join(dir, `case-${index}.log`), constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600);
    const grants = treeGrants(c.path, configOf(c), requesterOf(c.requester));
    await labelTree({ rootFd: root.fd, rootPath: c.path, logFd: log.fd, label: LABEL, uid: c.requester, ...grants, priors: Buffer.alloc(0) });
    return 'allowed';
  } catch (err) {
    return refusalReason(err);
  } finally {
    await log?.close();
    await root.close();
  }
}

describe('the path rules of path-rules.json', () => {
  it('are what the built svirt-label-tree was compiled with (the build is not older than the rules)', async () => {
    // make -q: exit 0 when the tool and its generated header are newer than label-tree.c and the JSON.
    const tool = path.resolve('dist/svirt-label-tree');
    const fresh = await run('make', ['-q', '-C', 'native/label-tree', `OUT=${tool}`]).then(() => true, () => false);
    expect(fresh, `${tool} is older than path-rules.json or label-tree.c: npm run build`).toBe(true);
  });

  cases.forEach((c, index) => {
    const who = c.requester === 0 ? 'root' : `uid ${c.requester}`;
    const whose = c.owner === undefined ? 'their own' : `uid ${c.owner}'s`;
    const pools = c.pools?.length ? `, pools ${c.pools.map((p) => `${p.path}${p.shared ? ' (shared)' : ''}`).join(', ')}` : '';
    it(`${who} relabeling ${JSON.stringify(c.path)} (${whose} ${c.kind ?? 'file'}${pools}): ${c.expect}, in TypeScript and in svirt-label-tree alike`, async () => {
      const file = await materialize(index, c);
      const [ts, tool] = [await typescriptOutcome(c, file), await toolOutcome(index, c, file)];
      expect({ typescript: ts, tool }).toEqual({ typescript: c.expect, tool: c.expect });
    });
  });
});
