// The scenario of `npm run test:selinux` (issue 11 §4), run inside the SELinux test host by init.sh, as
// root in the desktop user's context unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023, with the
// kernel permissive at first. Everything goes through the product's own paths: its install script (the
// policy module with it), the svirt CLI, which starts the installed helper the way pkexec does.
//   permissive pass: start two VMs, console, relabel a shared and a read-only tree, restore, audit,
//                    stop — every AVC denial in that window is the product's own (c), audit vs
//                    evaluator (d);
//   enforcing pass:  two VMs confined with distinct pairs, QMP and console (a), VM A's qemu asked over
//                    QMP to open VM B's image and a user_home_t file (b), audit vs evaluator (d), stop
//                    restores every label and frees the pairs (e).
// Block-device disks (issue 15) ride along in both passes: a VG on a loop device with LVs a, b, shared
// and other; VM A has LV a privately, VM B LV b, both share LV shared. Enforcing: each LV node carries its
// VM's pair and uid, qemu's writes land on the LV, A's qemu is denied B's LV (AVC, tclass blk_file), stop
// restores label and owner; the refusals (an active PV, an LV the user is not allowed, a /dev/mapper link
// to another LV) change nothing; an LV whose node lvchange made anew while its VM was dead is left alone by
// the reconcile. An iSCSI LUN from a loopback target (tgt and open-iscsi on 127.0.0.1), when one comes up,
// must pass the helper's device checks (iscsiLun; the same code path as any block device).
// Progress lines start with "SVIRT-HOST:"; the last one is "SVIRT-RESULT {json}".
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { check, CLI_ENV, defineVm, HOME, NODE, openOthers, PRODUCT, qmpSession, registry, run, runScenario, say, secs, startTwo, STATE, stopTwo, svirt, TEST } from './scenario-kit.mjs';
import { tinyKernel } from './tiny-kernel.mjs';

const USER_DIR_LABEL = 'unconfined_u:object_r:user_home_dir_t:s0';
const USER_FILE_LABEL = 'unconfined_u:object_r:user_home_t:s0';
const VG = 'svirtvg';
// Sizes tell qemu's drives apart: a private LV (16 MiB) from the shared one (12 MiB) and the image (8 MiB).
const LV_MIB = { a: 16, b: 16, shared: 12, other: 8 };
const LV_NAMES = Object.keys(LV_MIB);
const lvPath = (lv) => `/dev/${VG}/${lv}`;
const FIXED_DISK_LABEL = 'system_u:object_r:fixed_disk_device_t:s0';
const SHARED_IMAGE_LABEL = 'system_u:object_r:svirt_image_t:s0';
// The uid the refusal of an LV not granted to it runs as (helper.json grants it LV a only).
const OTHER_UID = 1000;
const skipModule = fs.readFileSync('/proc/cmdline', 'utf8').includes('svirt.nomodule');

function readXattrLabel(p) {
  // getfattr prints the value of security.selinux; --only-values keeps it bare.
  return new Promise((resolve) => execFile('getfattr', ['--only-values', '-n', 'security.selinux', p], (err, out) => resolve(err ? null : String(out).replace(/\0+$/, ''))));
}

/** The kernel log's AVC denial lines (dmesg), deduplicated by what they deny. */
async function avcLines() {
  const r = await run('dmesg', []);
  return r.stdout.split('\n').filter((l) => /avc:\s+denied/.test(l));
}
function avcKey(line) {
  const g = (re) => re.exec(line)?.[1] ?? '?';
  return `${g(/denied\s+\{([^}]*)\}/).trim()} scontext=${g(/scontext=(\S+)/)} tcontext=${g(/tcontext=(\S+)/)} tclass=${g(/tclass=(\S+)/)} comm=${g(/comm=(\S+)/)}`;
}
/** Distinct kinds of denial: each VM's own pair written as cA,cB. */
function uniqueAvcs(lines) {
  return [...new Set(lines.map((l) => avcKey(l).replace(/:s0:c\d+,c\d+/g, ':s0:cA,cB')))];
}

// ----------------------------------------------------------------------------------------------
// QMP, straight to the socket a VM's qemu listens on (what any local root process could do)

// From s0, as the helper connects (src/security/selinux/socket-context.ts): qemu may not use its end of a connection
// made at this process's range s0-s0:c0.c1023.
// r+, not writeFileSync: O_CREAT on a /proc attribute is a `create` check the policy denies.
function setSockcreate(value) {
  const fd = fs.openSync('/proc/thread-self/attr/sockcreate', 'r+');
  try {
    fs.writeSync(fd, value);
  } finally {
    fs.closeSync(fd);
  }
}
function connectLow(socketPath) {
  setSockcreate('unconfined_u:unconfined_r:unconfined_t:s0');
  try {
    return net.connect(socketPath);
  } finally {
    setSockcreate('');
  }
}

// ----------------------------------------------------------------------------------------------
// (d) The product's own audit: the running kernel's access vectors (selinuxfs `access`) side by side
// with the offline evaluator on the kernel's loaded policy, for every running VM and every file a VM uses.

async function auditDisagreements(pass) {
  const r = await svirt('audit', '--compare-offline', '--json');
  let report;
  try {
    report = JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    check(false, `${pass}: svirt audit --compare-offline printed its JSON (exit ${r.code})`);
    return 1;
  }
  const comparison = report.comparison ?? { checks: 0, disagreements: [] };
  for (const d of comparison.disagreements) {
    say(`audit disagreement: ${d.vm} ${d.path} ${d.tclass} ${d.perm}: kernel ${d.kernel.decision} (${d.kernel.reason}), evaluator ${d.evaluator.decision} (${d.evaluator.reason})`);
  }
  // Two VMs, each with its image, kernel and initrd: the comparison must have asked something.
  if (!check(comparison.checks > 0, `${pass}: the audit compared ${comparison.checks} checks with the kernel (mode ${report.mode})`)) return 1;
  say(`${pass} audit: ${comparison.checks} checks, ${comparison.disagreements.length} disagreement(s)`);
  return comparison.disagreements.length;
}

// ----------------------------------------------------------------------------------------------
// Set-up: a user's files with the labels a home directory gives them

async function setUp() {
  const g = `${TEST}/guest`;
  fs.mkdirSync(HOME, { recursive: true, mode: 0o755 });
  for (const [from, to] of [['initrd.gz', 'initrd.gz'], ['disk.raw', 'a.img'], ['disk.raw', 'b.img']]) {
    fs.copyFileSync(`${g}/${from}`, `${HOME}/${to}`);
  }
  fs.writeFileSync(`${HOME}/vmlinuz`, tinyKernel('svirt test guest: up\r\n'));
  fs.writeFileSync(`${HOME}/secret.txt`, 'a user file no VM may read\n');
  for (const tree of ['shared', 'content']) {
    fs.mkdirSync(`${HOME}/${tree}/sub`, { recursive: true });
    for (const f of ['one', 'sub/two']) fs.writeFileSync(`${HOME}/${tree}/${f}`, `${tree} ${f}\n`);
  }
  // DAC lets anyone read: what stops a VM must be the policy.
  await run('chmod', ['-R', 'a+rX', HOME]);
  await run('chmod', ['a+rw', `${HOME}/a.img`, `${HOME}/b.img`]);
  await run('chcon', ['-R', USER_FILE_LABEL, HOME]);
  await run('chcon', [USER_DIR_LABEL, HOME]);
  await setUpVolumes();
}

async function labelsUnder(paths) {
  const out = {};
  for (const p of paths) out[p] = await readXattrLabel(p);
  return out;
}

// ----------------------------------------------------------------------------------------------
// Block devices: a VG on a loop device. This host runs no udev: what udev does on a desktop (the
// /dev/VG/LV and /dev/mapper links to the dm-N node, the node's file-context label, group disk) is done
// here by udevLike(); lvm, without udev, makes nodes of its own in /dev/mapper, which it replaces.

const blockDevices = { pv: null, node: {}, lun: null };

async function sh(cmd, args) {
  const r = await run(cmd, args, { timeout: 120_000 });
  if (r.code !== 0) say(`${cmd} ${args.join(' ')} -> ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  return r;
}

/** The dm-N node of each LV (from sysfs), linked and labeled as udev would. */
async function udevLike(lvs = LV_NAMES) {
  const byName = {};
  for (const dm of fs.readdirSync('/sys/block').filter((d) => d.startsWith('dm-'))) {
    byName[fs.readFileSync(`/sys/block/${dm}/dm/name`, 'utf8').trim()] = dm;
  }
  for (const lv of lvs) {
    const dm = byName[`${VG}-${lv}`];
    if (!dm) {
      say(`no device-mapper node for ${VG}/${lv}`);
      continue;
    }
    blockDevices.node[lv] = `/dev/${dm}`;
    fs.mkdirSync(`/dev/${VG}`, { recursive: true });
    for (const link of [`/dev/mapper/${VG}-${lv}`, lvPath(lv)]) {
      fs.rmSync(link, { force: true });
      fs.symlinkSync(`../${dm}`, link);
    }
    await sh('restorecon', [`/dev/${dm}`]);
  }
}

async function setUpVolumes() {
  for (const m of ['loop', 'dm_mod']) await sh('modprobe', [m]);
  const file = '/var/tmp/svirt-pv.img';
  await sh('truncate', ['-s', '64M', file]);
  const pv = (await sh('losetup', ['--find', '--show', file])).stdout.trim();
  blockDevices.pv = pv;
  await sh('restorecon', [pv]);
  await sh('vgcreate', ['-q', VG, pv]);
  // -Zn: the backing file is sparse, the LVs read zeros already (and zeroing would need the node lvm waits for).
  for (const lv of LV_NAMES) await sh('lvcreate', ['-q', '-y', '-Zn', '-L', `${LV_MIB[lv]}M`, '-n', lv, VG]);
  await udevLike();
  // Open to every uid, like the images above: with 0660 the per-VM uid refuses A's qemu B's LV first and the
  // kernel never asks SELinux, so the label would go untested.
  for (const node of Object.values(blockDevices.node)) {
    await sh('chown', ['root:disk', node]);
    await sh('chmod', ['0666', node]);
  }
  // Who may use what: uid 1000 gets LV a, nobody else anything (root needs no grant).
  fs.mkdirSync('/etc/svirt-manager', { recursive: true });
  fs.writeFileSync('/etc/svirt-manager/helper.json', `${JSON.stringify({ devices: [{ device: lvPath('a'), users: [String(OTHER_UID)] }] })}\n`);
  const t = Date.now();
  blockDevices.lun = await setUpIscsiLun().catch((e) => (say(`iSCSI: ${e.message}`), null));
  say(`iSCSI LUN: ${blockDevices.lun ?? 'none'} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  say(`volumes: ${pv} holds ${VG}: ${LV_NAMES.map((lv) => `${lv}=${blockDevices.node[lv]}`).join(' ')}`);
}

/**
 * An iSCSI LUN (a /dev/sdX once logged in) from a loopback target: tgt's user-space target on 127.0.0.1
 * serving a sparse file, open-iscsi's initiator logging in over loopback. Both daemons run from copies of
 * their binaries, so they stay in this (unconfined) domain: their own domains are not what is tested, and
 * their denials would otherwise count as the product's. Returns the LUN's node, or null (said why).
 */
async function setUpIscsiLun() {
  const iqn = 'iqn.2026-12.test.svirt:lun';
  const bin = (name) => ['/usr/sbin', '/sbin', '/usr/bin'].map((d) => `${d}/${name}`).find((p) => fs.existsSync(p)) ?? name;
  const daemon = (file, args) => {
    const copy = `/var/tmp/svirt-${path.basename(file)}`;
    fs.copyFileSync(file, copy);
    fs.chmodSync(copy, 0o755);
    const child = spawn(copy, args, { stdio: 'ignore', detached: true });
    child.on('error', (e) => say(`${file}: ${e.message}`));
    child.unref();
  };
  const until = async (what, probe, tries = 60) => {
    for (let i = 0; i < tries; i++) {
      if (await probe()) return true;
      await new Promise((r) => setTimeout(r, 500));
    }
    say(`iSCSI: ${what} did not happen`);
    return false;
  };
  for (const m of ['sd_mod', 'iscsi_tcp']) await sh('modprobe', [m]);
  // The init brings no interface up, lo included ("Network is unreachable" on 127.0.0.1); the host has no
  // ip(8), python3 sets IFF_UP (SIOCGIFFLAGS, SIOCSIFFLAGS).
  await sh('python3', ['-c', [
    'import fcntl, socket, struct', 's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    "flags = struct.unpack('16sH22x', fcntl.ioctl(s, 0x8913, struct.pack('16sH22x', b'lo', 0)))[1]",
    "fcntl.ioctl(s, 0x8914, struct.pack('16sH22x', b'lo', flags | 1))"].join('\n')]);
  fs.writeFileSync('/etc/iscsi/initiatorname.iscsi', 'InitiatorName=iqn.2026-12.test.svirt:initiator\n');
  fs.mkdirSync('/run/lock/iscsi', { recursive: true });
  await sh('truncate', ['-s', '16M', '/var/tmp/svirt-lun.img']);
  daemon(bin('tgtd'), ['-f', '--iscsi', 'portal=127.0.0.1:3260']);
  const tgtadm = (...a) => run(bin('tgtadm'), ['--lld', 'iscsi', ...a], { timeout: 30_000 });
  if (!(await until('tgtd answering', async () => (await tgtadm('--mode', 'target', '--op', 'show')).code === 0))) return null;
  for (const args of [
    ['--mode', 'target', '--op', 'new', '--tid', '1', '-T', iqn],
    ['--mode', 'logicalunit', '--op', 'new', '--tid', '1', '--lun', '1', '-b', '/var/tmp/svirt-lun.img'],
    ['--mode', 'target', '--op', 'bind', '--tid', '1', '-I', '127.0.0.1'],
  ]) {
    const r = await tgtadm(...args);
    if (r.code !== 0) return (say(`iSCSI: tgtadm ${args.join(' ')}: ${r.stderr.trim()}`), null);
  }
  daemon(bin('iscsid'), ['-f']);
  const iscsiadm = (...a) => run(bin('iscsiadm'), a, { timeout: 60_000 });
  let discovery;
  if (!(await until('discovery on 127.0.0.1', async () => (discovery = await iscsiadm('-m', 'discovery', '-t', 'sendtargets', '-p', '127.0.0.1')).code === 0, 6))) {
    const ps = (await run('ps', ['-eo', 'pid,args'])).stdout.split('\n').filter((l) => /tgtd|iscsid/.test(l)).join(' | ');
    return (say(`iSCSI: discovery: ${discovery.code} ${discovery.stdout.trim()} ${discovery.stderr.trim()}; daemons: ${ps}`), null);
  }
  const login = await iscsiadm('-m', 'node', '-T', iqn, '-p', '127.0.0.1', '--login');
  if (login.code !== 0) return (say(`iSCSI: login: ${login.stderr.trim()}`), null);
  let node = null;
  await until('the LUN\'s disk appearing', async () => {
    for (const d of fs.readdirSync('/sys/block').filter((x) => x.startsWith('sd'))) {
      const model = fs.readFileSync(`/sys/block/${d}/device/model`, 'utf8').trim();
      if (/VIRTUAL-DISK/.test(model) && fs.existsSync(`/dev/${d}`)) node = `/dev/${d}`;
    }
    return node !== null;
  });
  if (node) {
    await sh('restorecon', [node]);
    await sh('chown', ['root:disk', node]);
    await sh('chmod', ['0660', node]);
  }
  return node;
}

/** Label, owner and inode of a device node. */
async function nodeState(p) {
  const st = fs.statSync(p);
  return { label: await readXattrLabel(p), uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino };
}

const qemuUid = (pid) => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/**
 * qemu itself writes `pattern` over the first 4 KiB of its private LV (HMP's qemu-io, through QMP): the
 * drive of LV_MIB, the only size the VM's private LV has among its disks.
 */
async function qemuWrites(q, pattern) {
  const blocks = await q.exec('query-block');
  const drive = (blocks.return ?? []).find((b) => b.inserted?.image?.['virtual-size'] === LV_MIB.a * 2 ** 20)?.device;
  if (!drive) return `no drive of ${LV_MIB.a} MiB in ${JSON.stringify(blocks.return ?? blocks.error).slice(0, 400)}`;
  const out = [];
  for (const cmd of [`write -P ${pattern} 0 4096`, 'flush']) {
    const r = await q.exec('human-monitor-command', { 'command-line': `qemu-io ${drive} "${cmd}"` });
    out.push(r.error ? JSON.stringify(r.error) : String(r.return).trim());
  }
  return out.join(' / ');
}

/** Whether the first 4 KiB of a device are all `pattern`. */
function filledWith(p, pattern) {
  const fd = fs.openSync(p, 'r');
  try {
    const buf = Buffer.alloc(4096);
    fs.readSync(fd, buf, 0, 4096, 0);
    return buf.every((b) => b === pattern);
  } finally {
    fs.closeSync(fd);
  }
}

function journal() {
  try {
    return JSON.parse(fs.readFileSync(`${STATE}/journal.json`, 'utf8'));
  } catch {
    return { entries: {} };
  }
}

const IMAGE_FILES = ['a.img', 'b.img', 'vmlinuz', 'initrd.gz'].map((f) => `${HOME}/${f}`);
const TREE_FILES = ['shared', 'shared/one', 'shared/sub', 'shared/sub/two', 'content', 'content/one', 'content/sub', 'content/sub/two'].map((f) => `${HOME}/${f}`);

/**
 * The helper's refusals on LVM, each with nothing changed: the PV under active LVs, an LV the user is not
 * granted (as uid OTHER_UID, which helper.json grants LV a only), a /dev/mapper link to another LV's node.
 */
async function lvRefusals(lvOriginals) {
  const define = (name, disk, env) => run(`${PRODUCT}/bin/svirt.js`, ['define', '--name', name, '--kernel', `${HOME}/vmlinuz`, '--disk', disk], { env: { ...CLI_ENV, ...env } });
  const refused = async (what, name, disk, message, env = {}) => {
    const before = await nodeState(disk);
    const r = await define(name, disk, env);
    const after = await nodeState(disk);
    const err = r.stderr.trim().split('\n').pop();
    say(`svirt define --disk ${disk}${env.SVIRT_TEST_CALLER_UID ? ` (as uid ${env.SVIRT_TEST_CALLER_UID})` : ''} -> ${r.code}: ${err}`);
    return check(r.code !== 0 && message.test(r.stderr) && JSON.stringify(after) === JSON.stringify(before), `refused, nothing changed: ${what}`);
  };
  const evil = `/dev/mapper/${VG}-evil`;
  fs.symlinkSync(`../${path.basename(blockDevices.node.a)}`, evil);
  const results = [
    await refused('the PV under active LVs', 'pv', blockDevices.pv, /it is in use by \/dev\/dm-\d+.*it is an LVM physical volume/),
    await refused('an LV the user is not allowed', 'other', lvPath('other'), /not allowed for this user/, { SVIRT_TEST_CALLER_UID: String(OTHER_UID) }),
    await refused('a /dev/mapper link to another LV\'s node', 'evil', evil, new RegExp(`device-mapper ${VG}-a\\), not to device-mapper device ${VG}-evil`)),
  ];
  fs.rmSync(evil, { force: true });
  const now = await nodeState(blockDevices.node.a);
  return results.every(Boolean) && check(JSON.stringify(now) === JSON.stringify(lvOriginals.a), 'LV a is untouched by the refusals');
}

/**
 * A node made anew while its VM was dead (a reboot, vgchange -an/-ay): VM A's qemu is killed with LV a
 * labeled for it, LV a is deactivated and activated again (a new dm node), and the reconcile of the next
 * helper must leave the new node as it is and drop the stale entry. The fresh node keeps devtmpfs's
 * owner root:root 0600 here (what udev would set is root:disk 0660, the original's): a restore of the
 * old node's original onto it would show as gid 6.
 */
async function recreatedNode() {
  if ((await svirt('start', 'vma')).code !== 0) return check(false, 'vma starts for the recreated-node case');
  const pid = Object.values(registry().vms).find((v) => v.name === 'vma')?.pid;
  if (!pid) return check(false, 'vma runs for the recreated-node case');
  const labeled = await readXattrLabel(blockDevices.node.a);
  check(/svirt_image_t:s0:c\d+,c\d+$/.test(labeled ?? ''), `LV a carries vma's label (${labeled})`);
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 100));
  // lvm's own domain is not what is tested: it runs with the kernel permissive for these two calls.
  await run('setenforce', ['0']);
  const off = await sh('lvchange', ['-q', '-an', `${VG}/a`]);
  const on = await sh('lvchange', ['-q', '-ay', `${VG}/a`]);
  await run('setenforce', ['1']);
  await udevLike(['a']);
  const fresh = await nodeState(blockDevices.node.a);
  say(`lvchange -an/-ay -> ${off.code}/${on.code}; LV a is now ${blockDevices.node.a}: ${JSON.stringify(fresh)}`);
  const listed = await svirt('list');
  const after = await nodeState(blockDevices.node.a);
  const stale = Object.keys(journal().entries ?? {}).filter((p) => p === lvPath('a') || p === blockDevices.node.a);
  const gone = Object.values(registry().vms).every((v) => v.name !== 'vma');
  return check(off.code === 0 && on.code === 0 && listed.code === 0 && JSON.stringify(after) === JSON.stringify(fresh) && fresh.gid === 0 && stale.length === 0 && gone,
    `the reconcile leaves the node lvchange made anew as it is (${JSON.stringify(after)}), its journal entry and vma's record are gone (${stale.join(' ')})`);
}

async function main() {
  const result = {
    enforcing: false, confinedVms: 0, crossVmDenied: false, hostFileDenied: false, ownDenials: -1, auditDisagreements: -1,
    lvLabeled: false, lvWritten: false, lvCrossVmDenied: false, lvRestored: false, lvRefusals: false, lvRecreatedReconciled: false, iscsiLun: false,
  };
  say(`scenario start as ${fs.readFileSync('/proc/self/attr/current', 'utf8').replace(/\0/g, '')}, mode ${(await run('getenforce', [])).stdout.trim()}`);
  const before = await avcLines();
  say(`AVC denials before the product ran: ${before.length}`);
  for (const k of uniqueAvcs(before)) say(`  before: ${k}`);
  await setUp();

  // Everything from here is the product's own operation (install, define, start, console, relabel, stop).
  // From the first step: a permissive kernel logs a denial once, then lets it pass unlogged.
  const markP = (await avcLines()).length;
  // The product's own install path, SELinux branch included.
  if (!skipModule) {
    const t = Date.now();
    const inst = await run('/bin/sh', [`${PRODUCT}/assets/linux/install-helper.sh`, 'install', '--runtime', NODE,
      '--helper-script', `${PRODUCT}/dist/svirt-helper.js`, '--policy', `${PRODUCT}/assets/polkit/org.svirtmanager.helper.policy`,
      '--copy-runtime', '--selinux-dir', `${PRODUCT}/assets/selinux`]);
    say(`install-helper.sh -> ${inst.code} in ${((Date.now() - t) / 1000).toFixed(1)} s: ${inst.stdout.trim()} ${inst.stderr.trim()}`);
    check(inst.code === 0, 'the install script installs the helper and the policy module');
    const wrapper = await readXattrLabel('/usr/libexec/svirt-manager/svirt-helper');
    check(/:svirt_manager_exec_t:/.test(wrapper ?? ''), `the installed wrapper is labeled svirt_manager_exec_t (${wrapper})`);
  } else {
    // Without the module (to record what the product needs): the helper installed the same way.
    const inst = await run('/bin/sh', [`${PRODUCT}/assets/linux/install-helper.sh`, 'install', '--runtime', NODE,
      '--helper-script', `${PRODUCT}/dist/svirt-helper.js`, '--policy', `${PRODUCT}/assets/polkit/org.svirtmanager.helper.policy`, '--copy-runtime']);
    say(`install-helper.sh (no module) -> ${inst.code} ${inst.stderr.trim()}`);
  }
  const originals = await labelsUnder([...IMAGE_FILES, ...TREE_FILES]);

  const lvStates = async () => {
    const out = {};
    for (const lv of LV_NAMES) out[lv] = await nodeState(blockDevices.node[lv]);
    return out;
  };
  const lvOriginals = await lvStates();
  // After stop: every LV as it was, but the shared one, which keeps svirt_image_t:s0 (shared and read-only
  // labels are never restored: another VM may be using them).
  const lvAfterStop = { ...lvOriginals, shared: { ...lvOriginals.shared, label: SHARED_IMAGE_LABEL } };
  check(lvOriginals.a.label === FIXED_DISK_LABEL, `LV a's node ${blockDevices.node.a} carries the host disk label (${lvOriginals.a.label})`);
  for (const [name, disk, lv] of [['vma', 'a.img', 'a'], ['vmb', 'b.img', 'b']]) {
    await defineVm(name, [`${HOME}/${disk}`, lvPath(lv), `${lvPath('shared')}:shared`]);
  }

  // ---- permissive pass: what the product's own operation makes the kernel log
  const tP = Date.now();
  const vmsP = await startTwo();
  check((await svirt('console', 'vma', '--expect', '\\S', '--timeout', '600')).code === 0, 'permissive: the console relays qemu\'s first output');
  for (const [tree, mode] of [['shared', '--shared'], ['content', '--readonly']]) {
    check((await svirt('relabel', `${HOME}/${tree}`, mode)).code === 0, `permissive: relabel ${tree} ${mode}`);
  }
  for (const tree of ['shared', 'content']) check((await svirt('relabel', `${HOME}/${tree}`, '--restore')).code === 0, `permissive: restore ${tree}`);
  const disagreeP = Object.values(vmsP).filter((v) => v.pid).length === 2 ? await auditDisagreements('permissive') : 1;
  await stopTwo();
  const own = (await avcLines()).slice(markP);
  result.ownDenials = own.length;
  say(`permissive pass: ${secs()} s since start, ${((Date.now() - tP) / 1000).toFixed(1)} s; AVC denials from the product's operation: ${own.length} lines, ${result.ownDenials} distinct`);
  for (const k of uniqueAvcs(own)) say(`  own: ${k}`);
  const afterP = await labelsUnder([...IMAGE_FILES, ...TREE_FILES]);
  check(JSON.stringify(afterP) === JSON.stringify(originals), 'permissive: every label is back after stop and restore');
  const lvsAfterP = await lvStates();
  check(JSON.stringify(lvsAfterP) === JSON.stringify(lvAfterStop), `permissive: every LV node has its label and owner back (${JSON.stringify(lvsAfterP)})`);

  if (skipModule) return result;

  // ---- enforcing pass
  const setenforce = await run('setenforce', ['1']);
  result.enforcing = setenforce.code === 0 && (await run('getenforce', [])).stdout.trim() === 'Enforcing';
  check(result.enforcing, 'the kernel enforces');
  const tE = Date.now();
  const markE = (await avcLines()).length;
  const vms = await startTwo();
  const pairs = new Set();
  const qmpA = {};
  const lvChecks = [];
  for (const name of ['vma', 'vmb']) {
    const rec = vms[name];
    if (!check(rec !== undefined && rec.pid !== null, `${name} runs`)) continue;
    const current = fs.readFileSync(`/proc/${rec.pid}/attr/current`, 'utf8').replace(/\0+$/, '');
    const m = /^system_u:system_r:(svirt_t|svirt_tcg_t):(s0:c\d+,c\d+)$/.exec(current);
    const inDomain = check(m !== null, `${name}: qemu ${rec.pid} runs as ${current}`);
    const image = await readXattrLabel(`${HOME}/${name === 'vma' ? 'a' : 'b'}.img`);
    const imageOk = check(m !== null && image === `system_u:object_r:svirt_image_t:${m[2]}`, `${name}: its image is labeled ${image}`);
    if (m) pairs.add(m[2]);
    let qmpOk = false;
    try {
      const q = await qmpSession(path.join(rec.runDir, 'qmp.sock'), connectLow);
      const st = await q.exec('query-status');
      qmpOk = check(st.return !== undefined, `${name}: QMP answers (${JSON.stringify(st.return ?? st.error)})`);
      // Block devices: the VM's LV node carries its pair and uid; qemu writes to it through the fd it was handed.
      const lv = name === 'vma' ? 'a' : 'b';
      const node = await nodeState(blockDevices.node[lv]);
      lvChecks.push(check(m !== null && node.label === `system_u:object_r:svirt_image_t:${m[2]}` && node.uid === qemuUid(rec.pid),
        `${name}: LV ${lv} (${blockDevices.node[lv]}) is labeled ${node.label}, owned by ${node.uid} (qemu's uid ${qemuUid(rec.pid)})`));
      const wrote = await qemuWrites(q, name === 'vma' ? '0xa1' : '0xb2');
      say(`${name}: qemu-io on its LV: ${wrote}`);
      if (name === 'vma') Object.assign(qmpA, { q, label: current }); else q.close();
    } catch (e) {
      check(false, `${name}: QMP answers (${e.message})`);
    }
    const consoleOk = check((await svirt('console', name, '--expect', '\\S', '--timeout', '600')).code === 0, `${name}: the console relays qemu's first output`);
    if (inDomain && imageOk && qmpOk && consoleOk) result.confinedVms++;
  }
  if (!check(pairs.size === 2, `the two VMs have distinct pairs (${[...pairs].join(' ')})`)) result.confinedVms = Math.min(result.confinedVms, 1);
  const sharedLv = await readXattrLabel(blockDevices.node.shared);
  lvChecks.push(check(sharedLv === SHARED_IMAGE_LABEL, `the LV both VMs share is labeled ${sharedLv}`));
  result.lvLabeled = lvChecks.length === 3 && lvChecks.every(Boolean);

  // (b) VM A's qemu, asked over QMP to open what is not its own.
  if (qmpA.q) {
    const { bOpen, hOpen, aOpen } = await openOthers(qmpA.q);
    // ... and B's LV: the node qemu would open by name (read-only, no lock: only the label stands in the way).
    const openDev = async (node, name) => qmpA.q.exec('blockdev-add', { driver: 'host_device', 'node-name': name, filename: node, 'read-only': true, locking: 'off' });
    const lvBOpen = await openDev(blockDevices.node.b, 'probelvb');
    const lvAOpen = await openDev(blockDevices.node.a, 'probelva');
    say(`blockdev-add ${blockDevices.node.b} (LV b): ${JSON.stringify(lvBOpen.error ?? lvBOpen.return)}; ${blockDevices.node.a} (LV a): ${JSON.stringify(lvAOpen.error ?? lvAOpen.return)}`);
    qmpA.q.close();
    const avcs = (await avcLines()).slice(markE);
    const labelB = vms.vmb?.imageLabel ?? '?';
    const deniedB = avcs.some((l) => l.includes(`scontext=${qmpA.label} `) && l.includes(`tcontext=${labelB} `) && l.includes('tclass=file') && l.includes('permissive=0'));
    const deniedH = avcs.some((l) => l.includes(`scontext=${qmpA.label} `) && l.includes(`tcontext=${USER_FILE_LABEL} `) && l.includes('tclass=file') && l.includes('permissive=0'));
    result.crossVmDenied = check(/Permission denied/.test(bOpen.error?.desc ?? '') && deniedB, 'VM A\'s qemu may not open VM B\'s image (EACCES, AVC with A\'s scontext)');
    result.hostFileDenied = check(/Permission denied/.test(hOpen.error?.desc ?? '') && deniedH, 'VM A\'s qemu may not open a user_home_t file (EACCES, AVC with A\'s scontext)');
    // The denial is the label's doing, not a broken qemu: its own image still opens.
    if (!check(aOpen.error === undefined, 'VM A\'s qemu still opens its own image')) result.crossVmDenied = false;
    const deniedLvB = avcs.some((l) => l.includes(`scontext=${qmpA.label} `) && l.includes(`tcontext=${labelB} `) && l.includes('tclass=blk_file') && l.includes('permissive=0'));
    result.lvCrossVmDenied = check(/Permission denied/.test(lvBOpen.error?.desc ?? '') && deniedLvB, 'VM A\'s qemu may not open VM B\'s LV (EACCES, AVC on blk_file with A\'s scontext)')
      && check(lvAOpen.error === undefined, 'VM A\'s qemu still opens its own LV');
  }

  const disagreeE = Object.values(vms).filter((v) => v.pid).length === 2 ? await auditDisagreements('enforcing') : 1;
  result.auditDisagreements = disagreeP + disagreeE;

  // (e) Stop restores every label and frees the pairs.
  await stopTwo();
  const afterE = await labelsUnder([...IMAGE_FILES, ...TREE_FILES]);
  check(JSON.stringify(afterE) === JSON.stringify(originals), 'enforcing: every label is back after stop');
  const reg = registry();
  const held = JSON.stringify(reg.mcs?.holds ?? []);
  check(Object.keys(reg.vms).length === 0 && [...pairs].every((p) => !held.includes(p)), `the pairs are free after stop (holds: ${held})`);
  const lvsAfterE = await lvStates();
  result.lvRestored = check(JSON.stringify(lvsAfterE) === JSON.stringify(lvAfterStop), `enforcing: every LV node has its label and owner back (${JSON.stringify(lvsAfterE)})`);
  // What qemu wrote is on the LVs themselves.
  result.lvWritten = check(filledWith(lvPath('a'), 0xa1) && filledWith(lvPath('b'), 0xb2), 'the bytes each VM\'s qemu wrote are on its own LV');

  result.lvRefusals = await lvRefusals(lvOriginals);
  if (blockDevices.lun) {
    // The LUN takes the path of any block device: the helper's start checks (open, claim, probe) accept it.
    const before = await nodeState(blockDevices.lun);
    const r = await svirt('define', '--name', 'lun', '--kernel', `${HOME}/vmlinuz`, '--disk', blockDevices.lun);
    result.iscsiLun = check(r.code === 0 && JSON.stringify(await nodeState(blockDevices.lun)) === JSON.stringify(before), `the iSCSI LUN ${blockDevices.lun} passes the helper's device checks`);
  }
  result.lvRecreatedReconciled = await recreatedNode();
  const enforcingAvcs = uniqueAvcs((await avcLines()).slice(markE));
  say(`enforcing pass: ${((Date.now() - tE) / 1000).toFixed(1)} s; AVC denials (the attack's expected among them):`);
  for (const k of enforcingAvcs) say(`  enforcing: ${k}`);

  return result;
}

runScenario(main);
