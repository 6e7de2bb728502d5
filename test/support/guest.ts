import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TestGuest {
  /** Debian kernel (bzImage); boot with -append 'console=ttyS0 panic=-1'. */
  kernel: string;
  /** gzip'ed newc initramfs: busybox shell on ttyS0 after the SVIRT-GUEST-READY line. */
  initrd: string;
  /** Shared 8 MiB raw disk: attach read-only, or copy it before writing. */
  disk: string;
}

/** The line the guest's /init prints on ttyS0 when its shell is about to start. */
export const GUEST_READY_MARKER = 'SVIRT-GUEST-READY';
/** Kernel command line the guest is built for. */
export const GUEST_APPEND = 'console=ttyS0 panic=-1';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../guest/build-guest.mjs');

let pending: Promise<TestGuest> | undefined;

/** Builds (first run, ~5 s plus downloads) or finds the cached test guest; once per process. */
export function testGuest(): Promise<TestGuest> {
  if (pending) return pending;
  pending = new Promise<TestGuest>((resolve, reject) => {
    // The build downloads ~70 MB from apt on a cold cache: allow it time, but not forever.
    execFile(process.execPath, [SCRIPT], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`${SCRIPT} failed: ${err.message}\n${stderr}`));
        return;
      }
      const last = stdout.trimEnd().split('\n').pop() ?? '';
      try {
        const parsed = JSON.parse(last) as Partial<TestGuest>;
        if (typeof parsed.kernel !== 'string' || typeof parsed.initrd !== 'string' || typeof parsed.disk !== 'string') {
          throw new Error('missing kernel/initrd/disk');
        }
        resolve({ kernel: parsed.kernel, initrd: parsed.initrd, disk: parsed.disk });
      } catch (e) {
        reject(new Error(`${SCRIPT} printed no guest JSON as its last line (${(e as Error).message}): ${last}`));
      }
    });
  });
  // A failed build is not cached, so a later test can retry it.
  pending.catch(() => {
    pending = undefined;
  });
  return pending;
}
