#!/usr/bin/env node
// Builds the tiny Linux guest that integration tests boot under qemu.
//
// What it makes, in test/guest/cache/<recipe>/ (git-ignored):
//   vmlinuz    Debian's kernel (linux-image-amd64's current dependency), unmodified.
//   initrd.gz  gzip'ed newc cpio: static busybox + applet links, virtio (blk, net)/ACPI button modules, /init,
//              and a udhcpc script, so `udhcpc -i eth0` configures the address it is leased.
//   disk.raw   8 MiB raw data disk (zeros); tests copy it before writing to it.
//
// Boot it with:  -kernel vmlinuz -initrd initrd.gz -append 'console=ttyS0 panic=-1'
//   console=ttyS0  the 8250 UART is built into Debian's kernel, so the serial console needs no module.
//   panic=-1       reboot at once on a panic (e.g. if /init dies) instead of hanging a test until its timeout;
//                  add qemu's -no-reboot to turn that reboot into a qemu exit.
// The guest's /init prints the line SVIRT-GUEST-READY on ttyS0 once /dev/vda (if any) is usable, then runs an
// interactive busybox shell on ttyS0. When that shell exits the guest powers off (qemu exits).
// With a VGA display (and console=tty0 on the command line) tty1 gets the marker and a second shell too.
// An ACPI power button press (QMP system_powerdown) also powers it off, via busybox acpid.
//
// The last line on stdout is one JSON object: {"kernel": "...", "initrd": "...", "disk": "..."} (absolute paths).
// Progress goes to stderr. A second run finds the stamp and prints at once, without touching apt.
// Needs: apt-get (Debian), dpkg-deb, cpio, qemu-img. Runs from any cwd.

import { spawn } from 'node:child_process';
import { constants as fsc, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';

// Bump when the recipe below changes what ends up in the files, so stale caches are rebuilt.
const RECIPE = 'guest-v8';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CACHE = path.join(HERE, 'cache');
const OUT = path.join(CACHE, RECIPE);
const STAMP = path.join(OUT, 'stamp.json');
const LOCK = path.join(CACHE, `${RECIPE}.lock`);
const DISK_BYTES = 8 * 1024 * 1024;
// Loaded in this order is not needed: the build sorts them by their modinfo depends=.
const WANTED_MODULES = ['virtio_blk', 'virtio_pci', 'virtio_net', 'evdev', 'button'];
const READY_MARKER = 'SVIRT-GUEST-READY';

const log = (msg) => process.stderr.write(`[guest] ${msg}\n`);

/** Runs a program (argv, no shell); resolves with stdout, rejects with its stderr on non-zero exit. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(Object.assign(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? code}): ${err.trim()}`), { stderr: err }));
    });
  });
}

async function exists(p) {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

async function readStamp() {
  try {
    const stamp = JSON.parse(await fs.readFile(STAMP, 'utf8'));
    if (stamp.recipe !== RECIPE) return null;
    // Names are relative to the cache, so a copied checkout uses its own copy, never the original's files.
    const files = [stamp.kernel, stamp.initrd, stamp.disk];
    if (files.some((f) => typeof f !== 'string' || path.isAbsolute(f) || f.includes('/'))) return null;
    const [kernel, initrd, disk] = files.map((f) => path.join(OUT, f));
    for (const f of [kernel, initrd, disk]) if (!(await exists(f))) return null;
    return { ...stamp, kernel, initrd, disk };
  } catch {
    return null;
  }
}

let aptUpdated = false;
/** apt-get download into dir; runs apt-get update once if the lists do not know the package yet. */
async function aptDownload(dir, pkgs) {
  // As root apt drops to _apt for downloads, which cannot write into an arbitrary checkout: stay root here.
  const args = ['-q', '-o', 'APT::Sandbox::User=root', 'download', ...pkgs];
  try {
    await run('apt-get', args, { cwd: dir });
  } catch (e) {
    if (aptUpdated || !/Unable to locate package|Can't select|has no installation candidate/.test(String(e.stderr ?? e))) throw e;
    log('apt lists do not know the package yet: apt-get update');
    await run('apt-get', ['-q', 'update']);
    aptUpdated = true;
    await run('apt-get', args, { cwd: dir });
  }
  const files = await fs.readdir(dir);
  return pkgs.map((p) => {
    const f = files.find((n) => n.startsWith(`${p}_`) && n.endsWith('.deb'));
    if (!f) throw new Error(`apt-get download ${p} left no .deb in ${dir}`);
    return path.join(dir, f);
  });
}

async function walk(dir, rel = '') {
  const out = [];
  for (const ent of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${ent.name}` : ent.name;
    out.push({ rel: r, ent });
    if (ent.isDirectory()) out.push(...(await walk(dir, r)));
  }
  return out;
}

/** depends= from a .ko's .modinfo section (no modinfo binary needed on the host). */
async function moduleDepends(ko) {
  const text = (await fs.readFile(ko)).toString('latin1');
  const m = /\0depends=([^\0]*)\0/.exec(text);
  return m && m[1] ? m[1].split(',').filter(Boolean) : [];
}

/** The wanted modules plus everything they depend on, dependencies first. */
async function resolveModules(root) {
  const byName = new Map();
  for (const { rel, ent } of await walk(root)) {
    if (ent.isFile() && /\/kernel\/.*\.ko$/.test(`/${rel}`)) byName.set(path.basename(rel, '.ko').replace(/-/g, '_'), path.join(root, rel));
  }
  const order = [];
  const seen = new Set();
  const visit = async (name) => {
    if (seen.has(name)) return;
    seen.add(name);
    const ko = byName.get(name);
    if (!ko) throw new Error(`kernel module ${name} not found in the kernel package`);
    for (const dep of await moduleDepends(ko)) await visit(dep);
    order.push({ name, ko });
  };
  for (const m of WANTED_MODULES) await visit(m);
  return order;
}

function initScript(modules) {
  return `#!/bin/sh
# PID 1 of the svirt test guest (generated by test/guest/build-guest.mjs).
export PATH=/bin HOME=/ TERM=dumb PS1='guest# '
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Dependencies first; a missing device just makes the driver idle.
${modules.map((m) => `insmod /lib/modules/${m.name}.ko`).join('\n')}
# Keep kernel chatter off the serial shell so tests read clean output.
dmesg -n 1
# devtmpfs creates nodes asynchronously: wait (bounded) for the disk the driver found.
i=0
while [ -e /sys/block/vda ] && [ ! -b /dev/vda ] && [ $i -lt 50 ]; do usleep 20000; i=$((i+1)); done
# Power button (QMP system_powerdown) -> /etc/acpi/PWRF/00000080 -> poweroff. The ready marker must
# mean a power button press is heard: wait (bounded) for the button's input node, then for acpid to hold it.
i=0
while [ ! -e /dev/input/event0 ] && [ $i -lt 100 ]; do usleep 20000; i=$((i+1)); done
acpid -c /etc/acpi
i=0
while ! ls -l /proc/$(pidof acpid)/fd 2>/dev/null | grep -q input/event && [ $i -lt 100 ]; do usleep 20000; i=$((i+1)); done
# A viewer on the VGA display gets a shell too.
if [ -c /dev/tty1 ] && echo ${READY_MARKER} > /dev/tty1 2>/dev/null; then
  # Not cttyhack (it reopens the console, ttyS0): a new session's first open of tty1 makes it its controlling tty.
  setsid sh -c 'exec sh -i < /dev/tty1 > /dev/tty1 2>&1' &
  # Opening tty2 allocates it, so Ctrl+Alt+F2 has a console to switch to (an empty one).
  : > /dev/tty2
fi
echo ${READY_MARKER} > /dev/ttyS0
# cttyhack gives the shell ttyS0 as controlling tty, so it is interactive with job control.
setsid cttyhack sh -i < /dev/ttyS0 > /dev/ttyS0 2>&1
sync
poweroff -f
`;
}

// busybox udhcpc only reports a lease: this script puts it on the interface.
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig) ifconfig "$interface" 0.0.0.0 up ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    for r in $router; do route add default gw "$r" dev "$interface"; break; done ;;
esac
`;

async function buildInitramfs(work, busybox, modules, dest) {
  const root = path.join(work, 'initramfs');
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'lib/modules', 'etc/acpi/PWRF', 'var/log', 'var/run']) await fs.mkdir(path.join(root, d), { recursive: true });
  await fs.copyFile(busybox, path.join(root, 'bin/busybox'));
  await fs.chmod(path.join(root, 'bin/busybox'), 0o755);
  // The host can run the static busybox to list its own applets.
  const applets = (await run(busybox, ['--list'])).split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox');
  for (const a of applets) await fs.symlink('busybox', path.join(root, 'bin', a));
  for (const m of modules) await fs.copyFile(m.ko, path.join(root, 'lib/modules', `${m.name}.ko`));
  await fs.writeFile(path.join(root, 'init'), initScript(modules), { mode: 0o755 });
  await fs.writeFile(path.join(root, 'etc/acpi/PWRF/00000080'), '#!/bin/sh\nsync\npoweroff -f\n', { mode: 0o755 });
  // Where Debian's busybox looks for it.
  await fs.mkdir(path.join(root, 'etc/udhcpc'), { recursive: true });
  await fs.writeFile(path.join(root, 'etc/udhcpc/default.script'), UDHCPC_SCRIPT, { mode: 0o755 });
  // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs; mknod needs root, and
  // without it /init still works (it redirects to /dev/ttyS0 itself), so a failure is only noted.
  try {
    await run('mknod', ['-m', '600', path.join(root, 'dev/console'), 'c', '5', '1']);
  } catch (e) {
    log(`no /dev/console in the initramfs (${e.message}); init starts without stdio`);
  }

  const list = (await walk(root)).map((e) => e.rel).join('\n') + '\n';
  const cpio = spawn('cpio', ['-o', '-H', 'newc', '--quiet', '-R', '0:0'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  cpio.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const exited = new Promise((resolve, reject) => {
    cpio.on('error', reject);
    cpio.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cpio failed (${code}): ${err.trim()}`))));
  });
  cpio.stdin.end(list);
  await Promise.all([pipeline(cpio.stdout, createGzip({ level: 9 }), createWriteStream(dest)), exited]);
}

async function build() {
  const work = await fs.mkdtemp(path.join(CACHE, 'build-'));
  try {
    const debs = path.join(work, 'debs');
    await fs.mkdir(debs);
    log('apt-get download linux-image-amd64');
    const [meta] = await aptDownload(debs, ['linux-image-amd64']);
    const depends = await run('dpkg-deb', ['-f', meta, 'Depends']);
    const kpkg = /\b(linux-image-[0-9][^\s,|()]*-amd64)\b/.exec(depends)?.[1];
    if (!kpkg) throw new Error(`no linux-image-<ver>-amd64 in Depends: ${depends.trim()}`);
    log(`apt-get download ${kpkg} busybox-static`);
    const [kdeb, bbdeb] = await aptDownload(debs, [kpkg, 'busybox-static']);

    const x = path.join(work, 'x');
    log('unpacking');
    await run('dpkg-deb', ['-x', kdeb, x]);
    await run('dpkg-deb', ['-x', bbdeb, x]);
    const vmlinuz = (await fs.readdir(path.join(x, 'boot'))).find((n) => n.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`no /boot/vmlinuz-* in ${kpkg}`);
    let busybox = null;
    for (const c of ['bin/busybox', 'usr/bin/busybox']) if (!busybox && (await exists(path.join(x, c)))) busybox = path.join(x, c);
    if (!busybox) throw new Error('no busybox binary in busybox-static');
    const modules = await resolveModules(x);
    log(`modules: ${modules.map((m) => m.name).join(' ')}`);

    const stage = path.join(work, 'out');
    await fs.mkdir(stage);
    await fs.copyFile(path.join(x, 'boot', vmlinuz), path.join(stage, 'vmlinuz'));
    log('building initramfs');
    await buildInitramfs(work, busybox, modules, path.join(stage, 'initrd.gz'));
    await run('qemu-img', ['create', '-q', '-f', 'raw', path.join(stage, 'disk.raw'), String(DISK_BYTES)]);
    // Readable by anyone: tests also boot the guest as an unprivileged qemu user.
    for (const f of ['vmlinuz', 'initrd.gz', 'disk.raw']) await fs.chmod(path.join(stage, f), 0o644);
    await fs.chmod(stage, 0o755);
    const stamp = {
      recipe: RECIPE,
      kernelPackage: path.basename(kdeb),
      busyboxPackage: path.basename(bbdeb),
      modules: modules.map((m) => m.name),
      kernel: 'vmlinuz',
      initrd: 'initrd.gz',
      disk: 'disk.raw',
    };
    await fs.writeFile(path.join(stage, 'stamp.json'), JSON.stringify(stamp, null, 2) + '\n');
    await fs.rm(OUT, { recursive: true, force: true });
    await fs.rename(stage, OUT);
    return { ...stamp, kernel: path.join(OUT, stamp.kernel), initrd: path.join(OUT, stamp.initrd), disk: path.join(OUT, stamp.disk) };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** One builder at a time (vitest workers may all ask at once); a lock left by a dead process is taken over. */
async function withLock(fn) {
  for (;;) {
    try {
      const h = await fs.open(LOCK, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644);
      await h.writeFile(String(process.pid));
      await h.close();
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const pid = Number(await fs.readFile(LOCK, 'utf8').catch(() => ''));
      let alive = false;
      if (pid > 0) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (k) {
          alive = k.code === 'EPERM';
        }
      }
      if (!alive && pid > 0) {
        await fs.rm(LOCK, { force: true });
        continue;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(LOCK, { force: true });
  }
}

async function main() {
  let stamp = await readStamp();
  if (!stamp) {
    await fs.mkdir(CACHE, { recursive: true });
    const t0 = Date.now();
    stamp = await withLock(async () => (await readStamp()) ?? build());
    log(`guest ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (${stamp.kernelPackage})`);
  }
  process.stdout.write(JSON.stringify({ kernel: stamp.kernel, initrd: stamp.initrd, disk: stamp.disk }) + '\n');
}

main().catch((e) => {
  log(`failed: ${e.stack ?? e}`);
  process.exit(1);
});
