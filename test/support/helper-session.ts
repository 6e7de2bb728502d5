import { chmod, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { HelperClient, resolveHelperLaunch } from '../../src/user/helper-client';
import { writeLabel } from '../../src/security/selinux/file-labels';
import { testGuest, GUEST_APPEND } from './guest';

/** The label test files carry before any VM touches them (as in a user's home). */
export const ORIGINAL_LABEL = 'unconfined_u:object_r:user_home_t:s0';

/**
 * A private host for helper tests: its own state dir and helper config, and world-readable copies of
 * the test guest's kernel and initrd (qemu's unprivileged user opens those by path).
 */
export interface TestHost {
  readonly dir: string;
  readonly stateDir: string;
  readonly kernel: string;
  readonly initrd: string;
  readonly append: string;
  readonly env: NodeJS.ProcessEnv;
  /** A copy of the guest's data disk with ORIGINAL_LABEL. */
  disk(name: string): Promise<string>;
  startHelper(extraEnv?: NodeJS.ProcessEnv): HelperClient;
  dispose(): Promise<void>;
}

/** `config` adds settings to the host's helper.json (e.g. `allowSeclabelNone`). */
export async function createTestHost(config: Record<string, unknown> = {}): Promise<TestHost> {
  const guest = await testGuest();
  const dir = await mkdtemp(path.join(tmpdir(), 'svirt-host-'));
  await chmod(dir, 0o755);
  const stateDir = path.join(dir, 'state');
  const kernel = path.join(dir, 'vmlinuz');
  const initrd = path.join(dir, 'initrd.gz');
  await copyFile(guest.kernel, kernel);
  await copyFile(guest.initrd, initrd);
  await chmod(kernel, 0o644);
  await chmod(initrd, 0o644);
  const configPath = path.join(dir, 'helper.json');
  await writeFile(configPath, JSON.stringify({ shutdownTimeoutSeconds: 20, ...config }));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SVIRT_STATE_DIR: stateDir,
    SVIRT_HELPER_CONFIG: configPath,
    SVIRT_HELPER_SCRIPT: path.resolve('dist/svirt-helper.js'),
  };
  const helpers: HelperClient[] = [];
  return {
    dir, stateDir, kernel, initrd, append: GUEST_APPEND, env,
    async disk(name) {
      const p = path.join(dir, name);
      await copyFile(guest.disk, p);
      await writeLabel(p, ORIGINAL_LABEL);
      return p;
    },
    startHelper(extraEnv = {}) {
      const merged = { ...env, ...extraEnv };
      const client = HelperClient.start(resolveHelperLaunch(merged), merged);
      helpers.push(client);
      return client;
    },
    async dispose() {
      for (const h of helpers) h.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Collects one console session's output from a helper's events. */
export class ConsoleTap {
  output = '';
  private constructor(readonly client: HelperClient, readonly session: string, readonly replayedBytes: number) {}

  static async attach(client: HelperClient, vm: string): Promise<ConsoleTap> {
    // A response and the first events can arrive in one read, before the attach promise settles.
    const early: { session: string; data: string }[] = [];
    let tap: ConsoleTap | undefined;
    client.on('event', (name: string, data: { session: string; data: string }) => {
      if (name !== 'console-data') return;
      if (!tap) early.push(data);
      else if (data.session === tap.session) tap.output += Buffer.from(data.data, 'base64').toString('latin1');
    });
    const { session, replayedBytes } = await client.request('consoleAttach', { vm });
    tap = new ConsoleTap(client, session, replayedBytes);
    for (const data of early) if (data.session === session) tap.output += Buffer.from(data.data, 'base64').toString('latin1');
    return tap;
  }

  async waitFor(pattern: RegExp, timeoutMs = 60_000, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.output.slice(from));
      if (match) return match;
      if (Date.now() > deadline) throw new Error(`console never showed ${pattern}; last output: ${JSON.stringify(this.output.slice(-400))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Types a command and waits for a line matching `expect` after it. */
  async run(command: string, expect: RegExp, timeoutMs = 30_000): Promise<void> {
    const from = this.output.length;
    await this.client.request('consoleInput', { session: this.session, data: `${command}\n` });
    await this.waitFor(expect, timeoutMs, from);
  }
}
