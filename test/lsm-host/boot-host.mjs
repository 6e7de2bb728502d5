// The part every LSM test host shares (`npm run test:selinux`, `npm run test:apparmor`): this host's kernel
// enforces no LSM, so a qemu guest boots Debian's kernel with the LSM on and runs the host's scenario.mjs
// there. Each host's run.mjs gives only its own differences (packages, root-disk step, kernel command
// line, product-disk labels, scenario, wanted fields).
//
// Two disks:
//   - the root disk (Debian packages by mmdebstrap, packed by mkfs.ext4 -d), built by the host's recipe
//     and cached outside the repository in $SVIRT_TEST_HOST_CACHE (/var/cache/svirt-test-host), keyed
//     by a hash of the recipe's files; the guest writes to a throw-away overlay (snapshot=on), so the
//     cache is never changed by a run;
//   - a small disk rebuilt every run with the product as built (dist/, bin/, assets/), this host's Node,
//     the inner test guest (npm run guest), and the host's init.sh and scenario: a product change never
//     rebuilds the root disk.
// Prints the scenario's progress, then, as the last line, the JSON result; exit code 1 unless the scenario
// printed a result and every field of `want` came out as wanted.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
export const CACHE = process.env.SVIRT_TEST_HOST_CACHE ?? '/var/cache/svirt-test-host';
// What every host's init.sh and scenario.mjs use from beside them in /opt/svirt-test.
const SHARED_GUEST_FILES = ['host-init.sh', 'scenario-kit.mjs', 'tiny-kernel.mjs', 'pkexec-standin'].map((f) => path.join(HERE, f));

/**
 * @typedef {object} TestHost
 * @property {string} tag             the npm script's name, for log lines
 * @property {string} packages      the root disk's Debian packages (build-rootfs.sh's PACKAGES-FILE)
 * @property {string} [rootfsStep]   the LSM's own step on the root tree (build-rootfs.sh's HOST-STEP)
 * @property {string[]} guestFiles    the host's own files copied to the top of the product disk (init.sh,
 *   scenario.mjs), beside the shared ones (SHARED_GUEST_FILES)
 * @property {string[]} assets        the product's asset folders the scenario needs (relative to the repo)
 * @property {string[]} append        the kernel command line
 * @property {string} readyLine       an SVIRT-HOST line holding this marks the LSM ready (boot time)
 * @property {Record<string, unknown>} want  the result fields that must come out so
 * @property {(top: string, rootDir: string, stage: string) => Promise<void>} [prepare]  the LSM's own step
 *   on the staged product tree (SELinux labels it with the guest policy's file contexts)
 * @property {number} [memoryMiB]
 * @property {number} [priority]     the test host's nice value (a negative one needs root)
 */

/** The root disk's recipe: the builder, the package list and the LSM's step, as build-rootfs.sh's argv. */
const recipe = (host) => [path.join(HERE, 'build-rootfs.sh'), host.packages, ...(host.rootfsStep ? [host.rootfsStep] : [])];

/** The cache key: the bytes of every file of the recipe, in its order. */
function recipeKey(files) {
  const h = createHash('sha256');
  for (const f of files) h.update(fs.readFileSync(f));
  return h.digest('hex').slice(0, 16);
}

/** The cached root disk, built under a lock if missing (about 10 minutes on 2 cores). */
async function rootDisk(host, log) {
  const [builder, ...inputs] = recipe(host);
  const dir = path.join(CACHE, `rootfs-${recipeKey([builder, ...inputs])}`);
  if (fs.existsSync(path.join(dir, 'stamp'))) return dir;
  fs.mkdirSync(CACHE, { recursive: true });
  const t = Date.now();
  log(`building the root disk in ${dir} (mmdebstrap; about 10 minutes)`);
  // flock: a second run waits for the first build instead of building the same thing twice.
  const script = 'd=$1; shift; [ -f "$d/stamp" ] || { rm -rf "$d" && "$@" && date -u +%FT%TZ > "$d/stamp"; }';
  await new Promise((resolve, reject) => {
    const child = spawn('flock', [path.join(CACHE, 'build.lock'), 'sh', '-c', script, 'sh', dir, builder, dir, ...inputs], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`building the root disk failed (${code})`))));
  });
  log(`root disk built in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  return dir;
}

async function innerGuest() {
  const { stdout } = await run(process.execPath, [path.join(REPO, 'test/guest/build-guest.mjs')], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop());
}

/** The per-run disk: product, Node, inner guest, the host's init and scenario, as /opt/svirt-test. */
async function productDisk(host, rootDir, guest, work) {
  const stage = path.join(work, 'stage');
  const top = path.join(stage, 'opt/svirt-test');
  const product = path.join(top, 'product');
  fs.mkdirSync(path.join(product, 'dist'), { recursive: true });
  for (const f of fs.readdirSync(path.join(REPO, 'dist'))) {
    if (f.endsWith('.map') || f === 'renderer' || f === 'electron') continue;
    fs.cpSync(path.join(REPO, 'dist', f), path.join(product, 'dist', f), { recursive: true });
  }
  for (const d of ['bin', ...host.assets]) fs.cpSync(path.join(REPO, d), path.join(product, d), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(product, 'package.json'));
  // Node is a single binary here (libc, libstdc++ and libgcc are in the guest).
  fs.mkdirSync(path.join(top, 'node'));
  fs.copyFileSync(process.execPath, path.join(top, 'node/node'));
  fs.chmodSync(path.join(top, 'node/node'), 0o755);
  fs.mkdirSync(path.join(top, 'guest'));
  fs.copyFileSync(guest.kernel, path.join(top, 'guest/vmlinuz'));
  fs.copyFileSync(guest.initrd, path.join(top, 'guest/initrd.gz'));
  fs.copyFileSync(guest.disk, path.join(top, 'guest/disk.raw'));
  for (const f of [...SHARED_GUEST_FILES, ...host.guestFiles]) fs.copyFileSync(f, path.join(top, path.basename(f)));
  await run('chown', ['-R', 'root:root', top]);
  await run('chmod', ['-R', 'go-w', top]);
  await host.prepare?.(top, rootDir, stage);
  const { stdout } = await run('du', ['-sm', top]);
  const sizeMb = Number(stdout.split('\t')[0]) + 64;
  const image = path.join(work, 'product.ext4');
  await run('mkfs.ext4', ['-q', '-F', '-L', 'svirt-test', '-d', top, image, `${sizeMb}M`]);
  return image;
}

/** Boots the host, runs its scenario, prints the result line; resolves to the exit code. */
export async function bootTestHost(host) {
  const log = (msg) => process.stderr.write(`${host.tag}: ${msg}\n`);
  // The whole guest run; SVIRT_TEST_HOST_TIMEOUT_MIN raises it on a busy machine.
  const timeoutMs = Number(process.env.SVIRT_TEST_HOST_TIMEOUT_MIN ?? 40) * 60_000;
  const t0 = Date.now();
  try {
    const rootDir = await rootDisk(host, log);
    const guest = await innerGuest();
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'svirt-lsm-host-'));
    try {
      const disk = await productDisk(host, rootDir, guest, work);
      // TCG: nested KVM hangs on these machines. 2 vCPUs (qemu, node and the inner VMs run at once).
      const args = ['-machine', 'q35', '-accel', 'tcg', '-cpu', 'max', '-m', String(host.memoryMiB ?? 3072), '-smp', '2', '-nodefaults', '-display', 'none', '-no-reboot',
        '-serial', 'stdio', '-kernel', path.join(rootDir, 'vmlinuz'), '-initrd', path.join(rootDir, 'initrd.img'), '-append', host.append.join(' '),
        '-drive', `file=${path.join(rootDir, 'rootfs.ext4')},format=raw,if=virtio,snapshot=on`,
        '-drive', `file=${disk},format=raw,if=virtio,readonly=on`];
      const serialLog = path.join(CACHE, `last-serial-${host.tag.replace(/\W+/g, '-')}.log`);
      const out = fs.createWriteStream(serialLog);
      const tBoot = Date.now();
      let tReady = 0;
      let tScenarioEnd = 0;
      let result;
      const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'inherit'] });
      // The guest's whole scenario runs in this one TCG process: on a loaded machine a higher priority
      // keeps its timings near a quiet machine's.
      if (host.priority !== undefined && qemu.pid !== undefined) {
        await run('renice', ['-n', String(host.priority), '-p', String(qemu.pid)]).catch((e) => log(`renice: ${e.message}`));
      }
      const timer = setTimeout(() => { log('timed out: killing the test host'); qemu.kill('SIGKILL'); }, timeoutMs);
      let buf = '';
      qemu.stdout.on('data', (d) => {
        out.write(d);
        buf += d.toString('latin1');
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          if (line.startsWith('SVIRT-HOST:')) {
            process.stdout.write(`${line}\n`);
            if (line.includes(host.readyLine)) tReady = Date.now();
            if (line.includes('scenario exited')) tScenarioEnd = Date.now();
          } else if (line.startsWith('SVIRT-RESULT ')) {
            try { result = JSON.parse(line.slice('SVIRT-RESULT '.length)); } catch { /* reported below */ }
          }
        }
      });
      const code = await new Promise((resolve) => qemu.on('exit', (c, s) => resolve(s ?? c)));
      clearTimeout(timer);
      out.end();
      const s = (a, b) => (a && b ? ((b - a) / 1000).toFixed(0) : '?');
      log(`qemu exited (${code}); boot to ${host.readyLine} ${s(tBoot, tReady)} s, scenario ${s(tReady, tScenarioEnd)} s, whole run ${s(t0, Date.now())} s; serial log: ${serialLog}`);
      const summary = result ?? { error: 'the scenario printed no result' };
      const ok = result !== undefined && Object.entries(host.want).every(([k, v]) => summary[k] === v);
      const { failures, ...line } = summary;
      if (failures) log(`failed: ${failures.join('; ')}`);
      process.stdout.write(`${JSON.stringify(line)}\n`);
      return ok ? 0 : 1;
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  } catch (e) {
    log(e.stack ?? String(e));
    process.stdout.write(`${JSON.stringify({ error: String(e.message ?? e) })}\n`);
    return 1;
  }
}
