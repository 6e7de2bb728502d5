// The scenario of `npm run test:apparmor` (issue 14 §3), run inside the AppArmor test host by init.sh, as
// root and unconfined (what a desktop user's pkexec'd helper is on Debian and Ubuntu). Everything goes
// through the product's own paths: its install script, the svirt CLI, which starts the installed helper
// the way pkexec does. The helper must pick AppArmor itself (no SELinux on this kernel).
//   complain pass: AppArmor's global mode set to complain; start two VMs, console, stop — every AppArmor
//                  line for a VM profile in that window is the product's own operation (ownDenials);
//   enforce pass:  two VMs, each in its own profile in enforce mode, QMP and console; VM A's qemu asked
//                  over QMP to open VM B's image and a file in a home directory (EACCES, DENIED lines),
//                  and its own image (opens); the product's audit (`svirt audit`, answered from the loaded
//                  profiles) asked the same cross-VM and own-disk questions for both VMs and compared with
//                  what the kernel did (auditDisagreements); stop removes the profiles (profilesLeft);
//   crash:         VM A's qemu killed, the helper gone too: the next CLI call's reconcile removes its profile.
// Progress lines start with "SVIRT-HOST:"; the last one is "SVIRT-RESULT {json}".
import * as fs from 'node:fs';
import path from 'node:path';
import { check, defineVm, HOME, NODE, openOthers, PRODUCT, qmpSession, registry, run, runScenario, say, startTwo, STATE, stopTwo, svirt, TEST } from './scenario-kit.mjs';
import { tinyKernel } from './tiny-kernel.mjs';

const SECURITYFS = '/sys/kernel/security/apparmor';
const MODE_PARAMETER = '/sys/module/apparmor/parameters/mode';

/** The kernel log's AppArmor audit lines (DENIED, ALLOWED in complain mode) about a VM profile. */
async function apparmorLines() {
  const r = await run('dmesg', []);
  return r.stdout.split('\n').filter((l) => /apparmor="(DENIED|ALLOWED)"/.test(l) && /profile="svirt-vm-/.test(l));
}
function lineKey(line) {
  const g = (re) => re.exec(line)?.[1] ?? '?';
  return `${g(/apparmor="(\w+)"/)} ${g(/operation="([^"]*)"/)} profile=${g(/profile="([^"]*)"/).replace(/^svirt-vm-\d+-\w+/, 'svirt-vm-VM')} name=${g(/name="([^"]*)"/)} mask=${g(/requested_mask="([^"]*)"/)} comm=${g(/comm="([^"]*)"/)}`;
}
const unique = (lines) => [...new Set(lines.map(lineKey))];

const vmProfiles = () => fs.readFileSync(`${SECURITYFS}/profiles`, 'utf8').split('\n').filter((l) => l.startsWith('svirt-vm-'));
const storedProfiles = () => {
  try {
    return fs.readdirSync(`${STATE}/apparmor`).filter((f) => f.startsWith('svirt-vm-'));
  } catch {
    return [];
  }
};
const confinement = (pid) => fs.readFileSync(`/proc/${pid}/attr/current`, 'utf8').replace(/\0+$/, '').trim();

async function setUp() {
  const g = `${TEST}/guest`;
  fs.mkdirSync(HOME, { recursive: true, mode: 0o755 });
  for (const [from, to] of [['initrd.gz', 'initrd.gz'], ['disk.raw', 'a.img'], ['disk.raw', 'b.img']]) fs.copyFileSync(`${g}/${from}`, `${HOME}/${to}`);
  fs.writeFileSync(`${HOME}/vmlinuz`, tinyKernel('svirt test guest: up\r\n'));
  fs.writeFileSync(`${HOME}/secret.txt`, 'a user file no VM may read\n');
  // DAC lets anyone read and write: what stops a VM must be its profile.
  await run('chmod', ['-R', 'a+rwX', HOME]);
}

/**
 * The product's audit against the kernel: for each VM and each VM's image, may its qemu read it? The audit
 * answers from the loaded profiles (`svirt audit --json`); the kernel answers when that VM's qemu is asked
 * over QMP to open the image read-only (`kernel`: image path → allowed, per VM). Returns the disagreements.
 */
async function auditDisagreements(kernel) {
  const r = await svirt('audit', '--json');
  let report;
  try {
    report = JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    check(false, `svirt audit printed its JSON (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    return -1;
  }
  check(report.model === 'apparmor' && report.source?.kind === 'profiles', `the audit names AppArmor and answers from the loaded profiles (${report.model}, ${report.source?.kind}: ${report.source?.why})`);
  let disagreements = report.model === 'apparmor' ? 0 : 1;
  let asked = 0;
  for (const [vm, answers] of Object.entries(kernel)) {
    for (const [file, allowed] of Object.entries(answers)) {
      const cell = report.cells.find((c) => c.vm === vm && c.path === file);
      const audited = cell !== undefined && (cell.access === 'read' || cell.access === 'write');
      asked++;
      say(`audit ${vm} ${file}: ${cell ? `${cell.access} (${cell.reason})` : 'no cell'}; kernel: ${allowed ? 'opened' : 'EACCES'}`);
      if (cell === undefined || audited !== allowed) {
        disagreements++;
        say(`audit disagreement: ${vm} ${file}: audit ${cell?.access ?? 'no cell'}, kernel ${allowed ? 'allowed' : 'denied'}`);
      }
    }
  }
  check(asked === 4, `the audit was compared with the kernel on ${asked} questions (each VM, each VM's image)`);
  for (const p of report.problems ?? []) say(`audit problem: ${p.severity} ${p.message}`);
  return asked === 4 ? disagreements : Math.max(disagreements, 1);
}

async function main() {
  const result = { enforcing: false, confinedVms: 0, crossVmDenied: false, hostFileDenied: false, ownDenials: -1, auditDisagreements: -1, profilesLeft: -1, crashProfileRemoved: false };
  say(`scenario start: ${confinement('self')}, AppArmor mode ${fs.readFileSync(MODE_PARAMETER, 'utf8').trim()}, SELinux ${fs.existsSync('/sys/fs/selinux') ? 'present' : 'absent'}`);
  await setUp();
  const t = Date.now();
  const inst = await run('/bin/sh', [`${PRODUCT}/assets/linux/install-helper.sh`, 'install', '--runtime', NODE,
    '--helper-script', `${PRODUCT}/dist/svirt-helper.js`, '--policy', `${PRODUCT}/assets/polkit/org.svirtmanager.helper.policy`,
    '--copy-runtime', '--apparmor-dir', `${PRODUCT}/assets/apparmor`]);
  say(`install-helper.sh -> ${inst.code} in ${((Date.now() - t) / 1000).toFixed(1)} s: ${inst.stdout.trim()} ${inst.stderr.trim()}`);
  check(inst.code === 0 && fs.existsSync('/etc/apparmor.d/abstractions/svirt-qemu'), 'the install script installs the helper and the qemu abstraction');
  for (const [name, disk] of [['vma', 'a.img'], ['vmb', 'b.img']]) await defineVm(name, [`${HOME}/${disk}`]);

  // ---- complain pass: every AppArmor line about a VM profile is the product's own doing
  fs.writeFileSync(MODE_PARAMETER, 'complain');
  const markC = (await apparmorLines()).length;
  const tC = Date.now();
  const vmsC = await startTwo();
  for (const name of ['vma', 'vmb']) {
    const rec = vmsC[name];
    if (rec?.pid) say(`complain: ${name}'s qemu ${rec.pid} runs as ${confinement(rec.pid)}`);
  }
  check((await svirt('console', 'vma', '--expect', '\\S', '--timeout', '600')).code === 0, 'complain: the console relays qemu\'s first output');
  await stopTwo();
  const own = (await apparmorLines()).slice(markC);
  result.ownDenials = own.length;
  say(`complain pass: ${((Date.now() - tC) / 1000).toFixed(1)} s; AppArmor lines for VM profiles: ${own.length}`);
  for (const k of unique(own)) say(`  own: ${k}`);

  // ---- enforce pass
  fs.writeFileSync(MODE_PARAMETER, 'enforce');
  result.enforcing = fs.readFileSync(MODE_PARAMETER, 'utf8').trim() === 'enforce' && fs.readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
  check(result.enforcing, 'AppArmor enforces');
  const tE = Date.now();
  const markE = (await apparmorLines()).length;
  const vms = await startTwo();
  const profiles = new Set();
  let qmpA;
  let qmpB;
  for (const name of ['vma', 'vmb']) {
    const rec = vms[name];
    if (!check(rec !== undefined && rec.pid !== null, `${name} runs`)) continue;
    const current = confinement(rec.pid);
    const m = /^(svirt-vm-\d+-vm[ab]) \(enforce\)$/.exec(current);
    const inProfile = check(m !== null && m[1].endsWith(name), `${name}: qemu ${rec.pid} runs as ${current}`);
    if (m) profiles.add(m[1]);
    const loaded = check(m !== null && vmProfiles().includes(`${m[1]} (enforce)`), `${name}: its profile is loaded in enforce mode`);
    let qmpOk = false;
    try {
      const q = await qmpSession(path.join(rec.runDir, 'qmp.sock'));
      const st = await q.exec('query-status');
      qmpOk = check(st.return !== undefined, `${name}: QMP answers (${JSON.stringify(st.return ?? st.error)})`);
      if (name === 'vma') qmpA = { q, profile: m?.[1] }; else qmpB = { q, profile: m?.[1] };
    } catch (e) {
      check(false, `${name}: QMP answers (${e.message})`);
    }
    const consoleOk = check((await svirt('console', name, '--expect', '\\S', '--timeout', '600')).code === 0, `${name}: the console relays qemu's first output`);
    if (inProfile && loaded && qmpOk && consoleOk) result.confinedVms++;
  }
  if (!check(profiles.size === 2, `the two VMs have distinct profiles (${[...profiles].join(' ')})`)) result.confinedVms = Math.min(result.confinedVms, 1);

  // VM A's qemu, asked over QMP to open what is not its own.
  if (qmpA) {
    const { bOpen, hOpen, aOpen } = await openOthers(qmpA.q);
    qmpA.q.close();
    // The same two questions of VM B's qemu, then of the product's audit.
    if (qmpB) {
      const openB = async (file, node) => qmpB.q.exec('blockdev-add', { driver: 'file', 'node-name': node, filename: file, 'read-only': true, locking: 'off' });
      const baOpen = await openB(`${HOME}/a.img`, 'probea');
      const bbOpen = await openB(`${HOME}/b.img`, 'probeb');
      say(`vmb blockdev-add a.img: ${JSON.stringify(baOpen.error ?? baOpen.return)}; b.img: ${JSON.stringify(bbOpen.error ?? bbOpen.return)}`);
      qmpB.q.close();
      // Opened, or refused by the profile (EACCES); any other failure is not the kernel's verdict.
      const verdict = (r) => (r.error === undefined ? true : /Permission denied/.test(r.error.desc ?? '') ? false : undefined);
      const kernel = {
        vma: { [`${HOME}/a.img`]: verdict(aOpen), [`${HOME}/b.img`]: verdict(bOpen) },
        vmb: { [`${HOME}/a.img`]: verdict(baOpen), [`${HOME}/b.img`]: verdict(bbOpen) },
      };
      const unanswered = Object.values(kernel).flatMap((m) => Object.values(m)).filter((v) => v === undefined).length;
      if (check(unanswered === 0, 'the kernel answered each of the four opens (opened or EACCES)')) result.auditDisagreements = await auditDisagreements(kernel);
    }
    const lines = (await apparmorLines()).slice(markE);
    const denied = (file) => lines.some((l) => l.includes('apparmor="DENIED"') && l.includes(`profile="${qmpA.profile}"`) && l.includes(`name="${file}"`));
    result.crossVmDenied = check(/Permission denied/.test(bOpen.error?.desc ?? '') && denied(`${HOME}/b.img`), 'VM A\'s qemu may not open VM B\'s image (EACCES, DENIED with A\'s profile)');
    result.hostFileDenied = check(/Permission denied/.test(hOpen.error?.desc ?? '') && denied(`${HOME}/secret.txt`), 'VM A\'s qemu may not open a file in a home directory (EACCES, DENIED with A\'s profile)');
    // The denial is the profile's doing, not a broken qemu: its own image still opens.
    if (!check(aOpen.error === undefined, 'VM A\'s qemu still opens its own image')) result.crossVmDenied = false;
  }
  qmpB?.q.close();
  await stopTwo();
  const left = [...vmProfiles(), ...storedProfiles()];
  result.profilesLeft = left.length;
  check(left.length === 0, `stop removed the VM profiles (left: ${left.join(', ') || 'none'})`);
  say(`enforce pass: ${((Date.now() - tE) / 1000).toFixed(1)} s; AppArmor lines (the attack's expected among them):`);
  for (const k of unique((await apparmorLines()).slice(markE))) say(`  enforce: ${k}`);

  // ---- a crash: qemu killed with nobody to clean up; the next request's reconcile removes the profile
  if ((await svirt('start', 'vma')).code === 0) {
    const rec = registry().vms['0/vma'];
    const name = rec?.pid ? /^(\S+)/.exec(confinement(rec.pid))?.[1] : undefined;
    const before = vmProfiles().some((l) => l.startsWith(`${name} `));
    // The console keeper goes with it: nothing of the VM is left running.
    for (const pid of [rec?.pid, rec?.keeperPid]) if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await new Promise((r) => setTimeout(r, 1000));
    await svirt('list');
    const after = [...vmProfiles(), ...storedProfiles()].filter((l) => l.startsWith(`${name}`));
    result.crashProfileRemoved = check(before && after.length === 0, `a crashed VM's profile (${name}, loaded before: ${before}) is removed at the next reconcile (left: ${after.join(', ') || 'none'})`);
  } else {
    check(false, 'vma starts again for the crash test');
  }

  return result;
}

runScenario(main);
