// What every LSM test host's scenario.mjs shares, run inside the guest from /opt/svirt-test (boot-host.mjs
// copies it beside the scenario): progress lines and checks, commands, the svirt CLI as a desktop user
// runs it, the two VMs' define/start/stop, a QMP session straight to a VM's socket (what any local root
// process could do) and the attack over it, and the result line. Progress lines start with "SVIRT-HOST:",
// which the runner echoes; the scenario's last line is "SVIRT-RESULT {json}".
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import net from 'node:net';

export const TEST = '/opt/svirt-test';
export const PRODUCT = `${TEST}/product`;
export const NODE = `${TEST}/node/node`;
export const HOME = '/home/user';
export const STATE = '/var/lib/svirt-manager';
const GUEST_APPEND = 'console=ttyS0 panic=-1';
const t0 = Date.now();

export const say = (...a) => console.log('SVIRT-HOST:', ...a);
/** Seconds since the scenario started. */
export const secs = () => ((Date.now() - t0) / 1000).toFixed(1);
/** What failed, in order; runScenario adds it to the result. */
const failures = [];
export function check(ok, what) {
  say(`${ok ? 'ok' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
  return ok;
}

// 15 minutes: under TCG a CLI call is a minute or more, the SELinux audit (which loads the offline
// evaluator) several.
export function run(cmd, args, { env, timeout = 900_000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: env ?? process.env, timeout, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

// The CLI as a desktop user runs it. The launcher stands in for pkexec (no polkit daemon here): it
// execs the installed wrapper with PKEXEC_UID set, from this process (its domain under SELinux).
// `node` on PATH, as an installed Node puts it: bin/svirt.js runs by its own #! line (which turns the JIT
// off: Debian denies unconfined_t execmem, so a JIT would show as a denial or a crash when enforcing).
export const CLI_ENV = { PATH: `${TEST}/node:${process.env.PATH}`, HOME: '/root', LANG: 'C.UTF-8', SVIRT_HELPER_LAUNCHER: `${TEST}/pkexec-standin` };
export async function svirt(...args) {
  const t = Date.now();
  const r = await run(`${PRODUCT}/bin/svirt.js`, args, { env: CLI_ENV });
  say(`svirt ${args.join(' ')} -> ${r.code} in ${((Date.now() - t) / 1000).toFixed(1)} s: ${r.stdout.trim().split('\n').slice(0, 3).join(' | ')} ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return r;
}

export function registry() {
  return JSON.parse(fs.readFileSync(`${STATE}/registry.json`, 'utf8'));
}

/** Defines a VM on the tiny kernel and the initrd in HOME (setUp puts them there), with these disks. */
export async function defineVm(name, disks) {
  const r = await svirt('define', '--name', name, '--kernel', `${HOME}/vmlinuz`, '--initrd', `${HOME}/initrd.gz`, '--append', GUEST_APPEND,
    ...disks.flatMap((d) => ['--disk', d]), '--memory', '128');
  check(r.code === 0, `${name} is defined`);
}

/** Starts vma and vmb (each must start confined); resolves to their registry records by name. */
export async function startTwo() {
  for (const name of ['vma', 'vmb']) {
    let r = await svirt('start', name);
    // On a loaded machine the inner qemu may take longer to open its serial line than the keeper waits
    // (10 s): one more try, said so in the log.
    if (r.code !== 0 && /console keeper did not start/.test(r.stderr)) {
      say(`${name}: the console keeper timed out (load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}); starting once more`);
      r = await svirt('start', name);
    }
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
  return Object.fromEntries(Object.values(registry().vms).map((rec) => [rec.name, rec]));
}

export async function stopTwo() {
  for (const name of ['vma', 'vmb']) check((await svirt('stop', name, '--force')).code === 0, `${name} stops`);
}

/**
 * A QMP session on a VM's socket: `exec(command, args)` resolves to qemu's answer (events are skipped).
 * `connect` opens the socket (the SELinux host connects from a level of its own).
 */
export function qmpSession(socketPath, connect = (p) => net.connect(p)) {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
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

/**
 * The attack: VM A's qemu, over its QMP session `q`, asked to open VM B's image and a file in a home
 * directory (both must fail with EACCES), and its own image (must open: the denials are the LSM's doing,
 * not a broken qemu). Read-only and unlocked, so only the LSM stands in the way.
 */
export async function openOthers(q) {
  const open = async (file, node) => q.exec('blockdev-add', { driver: 'file', 'node-name': node, filename: file, 'read-only': true, locking: 'off' });
  const bOpen = await open(`${HOME}/b.img`, 'probeb');
  const hOpen = await open(`${HOME}/secret.txt`, 'probeh');
  const aOpen = await open(`${HOME}/a.img`, 'probea');
  say(`blockdev-add b.img: ${JSON.stringify(bOpen.error ?? bOpen.return)}; secret.txt: ${JSON.stringify(hOpen.error ?? hOpen.return)}; a.img: ${JSON.stringify(aOpen.error ?? aOpen.return)}`);
  return { bOpen, hOpen, aOpen };
}

/** Runs the scenario's main, which resolves to its result, and prints that (failures added) as the last line. */
export function runScenario(main) {
  main().then((result) => {
    say(`scenario ${secs()} s; failures: ${failures.length ? failures.join('; ') : 'none'}`);
    if (failures.length) result.failures = failures;
    console.log(`SVIRT-RESULT ${JSON.stringify(result)}`);
  }).catch((e) => {
    say(`scenario crashed: ${e.stack ?? e}`);
    console.log(`SVIRT-RESULT ${JSON.stringify({ error: String(e.message ?? e) })}`);
  });
}
