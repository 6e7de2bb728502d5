/**
 * Loads a binary SELinux policy for the access evaluator: runs sesearch, seinfo and (when installed)
 * checkpolicy on it once, and keeps their output in a disk cache keyed by the policy file's path,
 * size, mtime and content hash, so a CLI invocation reads a file instead of spending seconds in
 * setools. Within a process the parsed policy is kept too.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectCilConstraintLines } from '../../core/selinux/access/cil-constraints';
import { buildAccessPolicy, type AccessPolicy, type PolicyToolOutputs } from '../../core/selinux/access/access-policy';
import { policyTypeOf, SELINUX_ROOT } from './selinux-files';

/** Bump when the commands run or the cached shape change, so older cache files are not read. */
const CACHE_FORMAT = 1;
// sesearch prints ~10 MB for a full reference policy and checkpolicy's CIL ~11 MB.
const MAX_TOOL_OUTPUT = 256 * 1024 * 1024;

export const SEINFO_COMPONENTS = ['-x', '-t', '-a', '-b', '-c', '-u', '-r', '--common', '--constrain', '--sensitivity', '--category', '--permissive'];

export class PolicyQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyQueryError';
  }
}

export interface PolicyLoadTiming {
  /** Time spent running the tools (0 when the disk cache answered). */
  readonly toolsMs: number;
  readonly cacheReadMs: number;
  readonly parseMs: number;
  readonly totalMs: number;
}

export interface LoadedPolicy {
  readonly policy: AccessPolicy;
  readonly policyPath: string;
  readonly fromCache: 'memory' | 'disk' | 'none';
  readonly timing: PolicyLoadTiming;
  /** The running system's boolean states, when this is the loaded policy and selinuxfs is mounted. */
  readonly booleanStates?: ReadonlyMap<string, boolean>;
}

export interface LoadPolicyOptions {
  /** A binary policy file; default: /etc/selinux/<SELINUXTYPE>/policy/policy.<highest version>. */
  readonly policyPath?: string;
  /** Directory of the disk cache; null turns it off. Default: $XDG_CACHE_HOME/svirt-manager. */
  readonly cacheDir?: string | null;
  readonly selinuxRoot?: string;
  /** Where selinuxfs is mounted, for the running system's boolean states. */
  readonly selinuxfs?: string;
}

function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: MAX_TOOL_OUTPUT, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) {
        const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
        reject(new PolicyQueryError(missing ? `${command} is not installed` : `${command} ${args.join(' ')} failed: ${stderr.trim() || error.message}`));
      } else {
        resolve(stdout);
      }
    });
  });
}

/** /etc/selinux/<SELINUXTYPE>/policy/policy.<N> with the highest N. */
export async function defaultPolicyPath(root: string = SELINUX_ROOT): Promise<string> {
  let config: string;
  try {
    config = await readFile(join(root, 'config'), 'utf8');
  } catch (err) {
    throw new PolicyQueryError(`cannot read ${join(root, 'config')}: ${(err as Error).message}; name a policy with --policy`);
  }
  const policyType = policyTypeOf({ selinuxConfig: config });
  if (!policyType || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(policyType)) {
    throw new PolicyQueryError(`${join(root, 'config')} names no usable SELINUXTYPE; name a policy with --policy`);
  }
  const directory = join(root, policyType, 'policy');
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (err) {
    throw new PolicyQueryError(`cannot list ${directory}: ${(err as Error).message}`);
  }
  const versions = names.map((name) => /^policy\.(\d+)$/.exec(name)?.[1]).filter((v): v is string => v !== undefined).map(Number);
  if (versions.length === 0) throw new PolicyQueryError(`no policy.<version> file in ${directory}`);
  return join(directory, `policy.${Math.max(...versions)}`);
}

/**
 * The constraint lines of the policy in CIL, or undefined without checkpolicy. CIL needs -M for an MLS
 * policy and refuses it for a non-MLS one, so both are tried. checkpolicy writes to a file only
 * (node's stdio pipes are sockets, which /dev/stdout cannot open), hence a private temporary one.
 */
async function cilConstraints(policyPath: string): Promise<string | undefined> {
  const directory = await mkdtemp(join(tmpdir(), 'svirt-cil-'));
  const output = join(directory, 'policy.cil');
  try {
    for (const mls of [true, false]) {
      try {
        await run('checkpolicy', [...(mls ? ['-M'] : []), '-b', '-C', policyPath, '-o', output]);
        return selectCilConstraintLines(await readFile(output, 'utf8'));
      } catch (err) {
        if (err instanceof PolicyQueryError && err.message.endsWith('is not installed')) return undefined;
      }
    }
    return undefined;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** Runs the tools on the policy; sesearch and seinfo are required, checkpolicy improves constraints. */
export async function runPolicyTools(policyPath: string): Promise<PolicyToolOutputs> {
  const [teRules, symbols, cil] = await Promise.all([
    // The path goes first: after an option with an optional value (--permissive [TYPE]) argparse
    // would take it as that value and silently open the running system's policy instead.
    run('sesearch', [policyPath, '-A', '--dontaudit']),
    run('seinfo', [policyPath, ...SEINFO_COMPONENTS]),
    cilConstraints(policyPath),
  ]);
  return cil === undefined ? { teRules, symbols } : { teRules, symbols, cilConstraints: cil };
}

export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg && xdg.startsWith('/')) return join(xdg, 'svirt-manager');
  const home = process.env.HOME || homedir();
  return home ? join(home, '.cache', 'svirt-manager') : join(tmpdir(), `svirt-manager-${process.getuid?.() ?? 'user'}`);
}

interface PolicyIdentity {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string;
}

interface CacheFile {
  readonly format: number;
  readonly identity: PolicyIdentity;
  readonly outputs: PolicyToolOutputs;
}

async function identify(policyPath: string): Promise<PolicyIdentity> {
  let info;
  let content;
  try {
    [info, content] = await Promise.all([stat(policyPath), readFile(policyPath)]);
  } catch (err) {
    throw new PolicyQueryError(`cannot read policy ${policyPath}: ${(err as Error).message}`);
  }
  return { path: policyPath, size: info.size, mtimeMs: info.mtimeMs, sha256: createHash('sha256').update(content).digest('hex') };
}

function cacheFileName(identity: PolicyIdentity): string {
  const key = createHash('sha256').update(JSON.stringify([CACHE_FORMAT, identity])).digest('hex').slice(0, 32);
  return `policy-tools-${key}.json`;
}

function sameIdentity(a: PolicyIdentity, b: PolicyIdentity): boolean {
  return a.path === b.path && a.size === b.size && a.mtimeMs === b.mtimeMs && a.sha256 === b.sha256;
}

async function readCache(dir: string, identity: PolicyIdentity): Promise<PolicyToolOutputs | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, cacheFileName(identity)), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const cached = JSON.parse(text) as CacheFile;
    const outputs = cached.outputs;
    if (cached.format !== CACHE_FORMAT || !sameIdentity(cached.identity, identity)) return undefined;
    if (typeof outputs?.teRules !== 'string' || typeof outputs.symbols !== 'string') return undefined;
    if (outputs.cilConstraints !== undefined && typeof outputs.cilConstraints !== 'string') return undefined;
    return outputs;
  } catch {
    return undefined; // a torn or foreign file is recomputed and replaced
  }
}

async function writeCache(dir: string, identity: PolicyIdentity, outputs: PolicyToolOutputs): Promise<void> {
  const file = join(dir, cacheFileName(identity));
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(temporary, JSON.stringify({ format: CACHE_FORMAT, identity, outputs } satisfies CacheFile), { mode: 0o600 });
    // rename is atomic: a concurrent reader sees the old file or the whole new one.
    await rename(temporary, file);
  } catch {
    // A cache that cannot be written only costs the next invocation the tool run.
  }
}

/** The running system's boolean states from selinuxfs (`/sys/fs/selinux/booleans/NAME`: "current pending"). */
export async function readLiveBooleanStates(selinuxfs = '/sys/fs/selinux'): Promise<Map<string, boolean> | undefined> {
  const directory = join(selinuxfs, 'booleans');
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return undefined;
  }
  const states = new Map<string, boolean>();
  await Promise.all(
    names.map(async (name) => {
      try {
        const [current] = (await readFile(join(directory, name), 'utf8')).trim().split(/\s+/);
        if (current === '0' || current === '1') states.set(name, current === '1');
      } catch {
        // unreadable boolean: its policy default stands
      }
    }),
  );
  return states;
}

const loaded = new Map<string, Promise<{ policy: AccessPolicy; fromCache: 'disk' | 'none'; toolsMs: number; cacheReadMs: number; parseMs: number }>>();

/** Drops the parsed policies kept in this process (the disk cache stays), e.g. to measure a warm start. */
export function forgetLoadedPolicies(): void {
  loaded.clear();
}

/** Loads (tools or disk cache, then parse) the policy once per process and policy file version. */
export async function loadAccessPolicy(options: LoadPolicyOptions = {}): Promise<LoadedPolicy> {
  const started = performance.now();
  const isDefault = options.policyPath === undefined;
  const policyPath = options.policyPath ?? (await defaultPolicyPath(options.selinuxRoot));
  const identity = await identify(policyPath);
  const cacheDir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
  const memoKey = JSON.stringify(identity);

  let pending = loaded.get(memoKey);
  const fromMemory = pending !== undefined;
  if (!pending) {
    pending = (async () => {
      let outputs: PolicyToolOutputs | undefined;
      const readStart = performance.now();
      if (cacheDir !== null) outputs = await readCache(cacheDir, identity);
      const cacheReadMs = performance.now() - readStart;
      let toolsMs = 0;
      const fromCache = outputs ? 'disk' : 'none';
      if (!outputs) {
        const toolsStart = performance.now();
        outputs = await runPolicyTools(policyPath);
        toolsMs = performance.now() - toolsStart;
        if (cacheDir !== null) await writeCache(cacheDir, identity, outputs);
      }
      const parseStart = performance.now();
      const policy = buildAccessPolicy(outputs, `policy:${policyPath}`);
      return { policy, fromCache, toolsMs, cacheReadMs, parseMs: performance.now() - parseStart } as const;
    })();
    loaded.set(memoKey, pending);
    pending.catch(() => loaded.delete(memoKey));
  }
  const result = await pending;
  // Live states describe the loaded policy only: the default one, on a host with SELinux on.
  const booleanStates = isDefault ? await readLiveBooleanStates(options.selinuxfs) : undefined;
  const timing: PolicyLoadTiming = fromMemory
    ? { toolsMs: 0, cacheReadMs: 0, parseMs: 0, totalMs: performance.now() - started }
    : { toolsMs: result.toolsMs, cacheReadMs: result.cacheReadMs, parseMs: result.parseMs, totalMs: performance.now() - started };
  return {
    policy: result.policy,
    policyPath,
    fromCache: fromMemory ? 'memory' : result.fromCache,
    timing,
    ...(booleanStates ? { booleanStates } : {}),
  };
}
