import { execFile } from 'node:child_process';
import { chown, copyFile, mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { HelperClient } from '../../../src/user/helper-client';
import { createTestHost, ORIGINAL_LABEL, type TestHost } from '../../support/helper-session';
import { helperEnv, OTHER_UID, REQUESTER_UID } from './reliability';

/**
 * Two local users against one host's helpers, for the tests of the boundary between them: mallory
 * (REQUESTER_UID) acts, alice (OTHER_UID) must not be affected. Their files live in homes they own.
 */
const execFileP = promisify(execFile);

/** A 64 KiB file owned by `uid`, with `label` (none: no label at all). */
export async function ownedFile(p: string, uid: number, label: string | null = ORIGINAL_LABEL): Promise<string> {
  await writeFile(p, Buffer.alloc(64 * 1024));
  await chown(p, uid, uid);
  if (label !== null) await execFileP('setfattr', ['-h', '-n', 'security.selinux', '-v', label, p]);
  return p;
}

/** A home for `uid` with its own kernel and initrd (a start checks them as the user's files). */
export async function userHome(host: TestHost, name: string, uid: number): Promise<{ dir: string; kernel: string; initrd: string; append: string }> {
  const dir = path.join(host.dir, name);
  await mkdir(dir);
  await chown(dir, uid, uid);
  const kernel = await ownedFile(path.join(dir, 'vmlinuz'), uid);
  const initrd = await ownedFile(path.join(dir, 'initrd.gz'), uid);
  await copyFile(host.kernel, kernel);
  await copyFile(host.initrd, initrd);
  return { dir, kernel, initrd, append: host.append };
}

export interface TwoUsers {
  readonly host: TestHost;
  readonly mallory: HelperClient;
  readonly alice: HelperClient;
  /** Forces off whatever either user still runs, then removes the host. */
  close(): Promise<void>;
}

export async function openTwoUsers(config: Record<string, unknown> = {}): Promise<TwoUsers> {
  const host = await createTestHost(config);
  const mallory = host.startHelper(helperEnv(REQUESTER_UID));
  const alice = host.startHelper(helperEnv(OTHER_UID));
  return {
    host, mallory, alice,
    async close() {
      for (const helper of [mallory, alice]) {
        const running = await helper.request('list').catch(() => []);
        for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
      }
      await host.dispose();
    },
  };
}
