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
// Progress lines start with "SVIRT-HOST:"; the last one is "SVIRT-RESULT {json}".
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const TEST = '/opt/svirt-test';
const PRODUCT = `${TEST}/product`;
const NODE = `${TEST}/node/node`;
const HOME = '/home/user';
const USER_DIR_LABEL = 'unconfined_u:object_r:user_home_dir_t:s0';
const USER_FILE_LABEL = 'unconfined_u:object_r:user_home_t:s0';
const GUEST_APPEND = 'console=ttyS0 panic=-1';
const STATE = '/var/lib/svirt-manager';
const skipModule = fs.readFileSync('/proc/cmdline', 'utf8').includes('svirt.nomodule');
const t0 = Date.now();

const say = (...a) => console.log('SVIRT-HOST:', ...a);
const secs = () => ((Date.now() - t0) / 1000).toFixed(1);
const failures = [];
function check(ok, what) {
  say(`${ok ? 'ok' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
  return ok;
}

// 15 minutes: under TCG a CLI call is a minute or more, the audit (which loads the offline evaluator) several.
function run(cmd, args, { env, timeout = 900_000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: env ?? process.env, timeout, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

// The CLI as a desktop user runs it. The launcher stands in for pkexec (no polkit daemon here): it
// execs the installed wrapper with PKEXEC_UID set, from this (unconfined_t) process.
// `node` on PATH, as an installed Node puts it: bin/svirt.js runs by its own #! line (which turns the JIT
// off: Debian denies unconfined_t execmem, so a JIT would show as a denial here or a crash when enforcing).
const CLI_ENV = { PATH: `${TEST}/node:${process.env.PATH}`, HOME: '/root', LANG: 'C.UTF-8', SVIRT_HELPER_LAUNCHER: `${TEST}/pkexec-standin` };
async function svirt(...args) {
  const t = Date.now();
  const r = await run(`${PRODUCT}/bin/svirt.js`, args, { env: CLI_ENV });
  say(`svirt ${args.join(' ')} -> ${r.code} in ${((Date.now() - t) / 1000).toFixed(1)} s: ${r.stdout.trim().split('\n').slice(0, 3).join(' | ')} ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return r;
}

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

function qmpSession(socketPath) {
  return new Promise((resolve, reject) => {
    const sock = connectLow(socketPath);
    let buf = '';
    const waiting = [];
    sock.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.event) continue;
        waiting.shift()?.(msg);
      }
    });
    sock.on('error', reject);
    const next = () => new Promise((res) => waiting.push(res));
    next().then(async (greeting) => {
      if (!greeting.QMP) return reject(new Error('no QMP greeting'));
      const exec = async (execute, args) => {
        const p = next();
        sock.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
        return p;
      };
      await exec('qmp_capabilities');
      resolve({ exec, close: () => sock.end() });
    });
    setTimeout(() => reject(new Error(`QMP ${socketPath}: no answer`)), 30_000).unref();
  });
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

/**
 * The VMs' kernel: a multiboot (v1, a.out-kludge) image that writes a line to COM1 and halts with
 * interrupts off. A Linux kernel booting under TCG inside TCG kept both guest CPUs busy for the whole
 * scenario and made every later step several times slower; what is tested here (labels, the console
 * relay, QMP, the kernel's denials) needs qemu running, not a booted guest. qemu loads it with -kernel
 * (its multiboot loader) and the initrd as a module, through the same private copies as a Linux kernel.
 */
function tinyKernel(text) {
  const base = 0x100000;
  const magic = 0x1badb002;
  const flags = 0x00010000; // the load addresses below are valid
  const header = Buffer.alloc(32);
  header.writeUInt32LE(magic, 0);
  header.writeUInt32LE(flags, 4);
  header.writeUInt32LE((2 ** 32 - ((magic + flags) % 2 ** 32)) % 2 ** 32, 8);
  header.writeUInt32LE(base, 12); // header_addr
  header.writeUInt32LE(base, 16); // load_addr
  header.writeUInt32LE(0, 20); // load_end_addr: the whole file
  header.writeUInt32LE(0, 24); // bss_end_addr: none
  header.writeUInt32LE(base + 32, 28); // entry_addr: right after the header
  const code = [0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8 (COM1)
  for (const c of Buffer.from(text, 'latin1')) code.push(0xb0, c, 0xee); // mov al, c; out dx, al
  code.push(0xfa, 0xf4, 0xeb, 0xfd); // cli; hlt; jmp back to the hlt
  return Buffer.concat([header, Buffer.from(code)]);
}

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
}

async function labelsUnder(paths) {
  const out = {};
  for (const p of paths) out[p] = await readXattrLabel(p);
  return out;
}

function registry() {
  return JSON.parse(fs.readFileSync(`${STATE}/registry.json`, 'utf8'));
}

async function startTwo() {
  const vms = {};
  for (const name of ['vma', 'vmb']) {
    const r = await svirt('start', name);
    if (!check(r.code === 0, `${name} starts without --allow-unconfined`)) {
      // What the console keeper said (its log stays in the run directory).
      let keeperLog = '(none)';
      try {
        keeperLog = fs.readFileSync(`${STATE}/run/0-${name}/console.log`, 'utf8').split('\n').slice(-10).join(' | ');
      } catch {
        // no log: the keeper never ran
      }
      say(`${name} keeper log: ${keeperLog}`);
    }
  }
  const reg = registry();
  for (const rec of Object.values(reg.vms)) vms[rec.name] = rec;
  return vms;
}

async function stopTwo() {
  for (const name of ['vma', 'vmb']) check((await svirt('stop', name, '--force')).code === 0, `${name} stops`);
}

const IMAGE_FILES = ['a.img', 'b.img', 'vmlinuz', 'initrd.gz'].map((f) => `${HOME}/${f}`);
const TREE_FILES = ['shared', 'shared/one', 'shared/sub', 'shared/sub/two', 'content', 'content/one', 'content/sub', 'content/sub/two'].map((f) => `${HOME}/${f}`);

async function main() {
  const result = { enforcing: false, confinedVms: 0, crossVmDenied: false, hostFileDenied: false, ownDenials: -1, auditDisagreements: -1 };
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

  for (const [name, disk] of [['vma', 'a.img'], ['vmb', 'b.img']]) {
    const r = await svirt('define', '--name', name, '--kernel', `${HOME}/vmlinuz`, '--initrd', `${HOME}/initrd.gz`, '--append', GUEST_APPEND,
      '--disk', `${HOME}/${disk}`, '--memory', '128');
    check(r.code === 0, `${name} is defined`);
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

  if (skipModule) {
    console.log(`SVIRT-RESULT ${JSON.stringify(result)}`);
    return;
  }

  // ---- enforcing pass
  const setenforce = await run('setenforce', ['1']);
  result.enforcing = setenforce.code === 0 && (await run('getenforce', [])).stdout.trim() === 'Enforcing';
  check(result.enforcing, 'the kernel enforces');
  const tE = Date.now();
  const markE = (await avcLines()).length;
  const vms = await startTwo();
  const pairs = new Set();
  const qmpA = {};
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
      const q = await qmpSession(path.join(rec.runDir, 'qmp.sock'));
      const st = await q.exec('query-status');
      qmpOk = check(st.return !== undefined, `${name}: QMP answers (${JSON.stringify(st.return ?? st.error)})`);
      if (name === 'vma') Object.assign(qmpA, { q, label: current }); else q.close();
    } catch (e) {
      check(false, `${name}: QMP answers (${e.message})`);
    }
    const consoleOk = check((await svirt('console', name, '--expect', '\\S', '--timeout', '600')).code === 0, `${name}: the console relays qemu's first output`);
    if (inDomain && imageOk && qmpOk && consoleOk) result.confinedVms++;
  }
  if (!check(pairs.size === 2, `the two VMs have distinct pairs (${[...pairs].join(' ')})`)) result.confinedVms = Math.min(result.confinedVms, 1);

  // (b) VM A's qemu, asked over QMP to open what is not its own.
  if (qmpA.q) {
    const open = async (file, node) => qmpA.q.exec('blockdev-add', { driver: 'file', 'node-name': node, filename: file, 'read-only': true, locking: 'off' });
    const bOpen = await open(`${HOME}/b.img`, 'probeb');
    const hOpen = await open(`${HOME}/secret.txt`, 'probeh');
    const aOpen = await open(`${HOME}/a.img`, 'probea');
    say(`blockdev-add b.img: ${JSON.stringify(bOpen.error ?? bOpen.return)}; secret.txt: ${JSON.stringify(hOpen.error ?? hOpen.return)}; a.img: ${JSON.stringify(aOpen.error ?? aOpen.return)}`);
    qmpA.q.close();
    const avcs = (await avcLines()).slice(markE);
    const labelB = vms.vmb?.imageLabel ?? '?';
    const deniedB = avcs.some((l) => l.includes(`scontext=${qmpA.label} `) && l.includes(`tcontext=${labelB} `) && l.includes('tclass=file') && l.includes('permissive=0'));
    const deniedH = avcs.some((l) => l.includes(`scontext=${qmpA.label} `) && l.includes(`tcontext=${USER_FILE_LABEL} `) && l.includes('tclass=file') && l.includes('permissive=0'));
    result.crossVmDenied = check(/Permission denied/.test(bOpen.error?.desc ?? '') && deniedB, 'VM A\'s qemu may not open VM B\'s image (EACCES, AVC with A\'s scontext)');
    result.hostFileDenied = check(/Permission denied/.test(hOpen.error?.desc ?? '') && deniedH, 'VM A\'s qemu may not open a user_home_t file (EACCES, AVC with A\'s scontext)');
    // The denial is the label's doing, not a broken qemu: its own image still opens.
    if (!check(aOpen.error === undefined, 'VM A\'s qemu still opens its own image')) result.crossVmDenied = false;
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
  const enforcingAvcs = uniqueAvcs((await avcLines()).slice(markE));
  say(`enforcing pass: ${((Date.now() - tE) / 1000).toFixed(1)} s; AVC denials (the attack's expected among them):`);
  for (const k of enforcingAvcs) say(`  enforcing: ${k}`);

  say(`scenario ${secs()} s; failures: ${failures.length ? failures.join('; ') : 'none'}`);
  if (failures.length) result.failures = failures;
  console.log(`SVIRT-RESULT ${JSON.stringify(result)}`);
}

main().catch((e) => {
  say(`scenario crashed: ${e.stack ?? e}`);
  console.log(`SVIRT-RESULT ${JSON.stringify({ error: String(e.message ?? e) })}`);
});
