import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_APPEND, GUEST_READY_MARKER, SerialConsole, testGuest } from '../../../test/support/guest';
import { probeAccelerator } from './accel';
import { SANDBOX_ARG, buildQemuArgv, fdLayout, launchQemu, qemuRunPaths, readQemuPid, validateLaunchSpec, type LaunchSpec, type LaunchedQemu } from './launch';
import { readLabel } from '../../security/selinux/file-labels';
import { DEFAULT_VM_ID_RANGE } from '../state/vm-ids';
import { QmpClient } from './qmp';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../../..');

const base: LaunchSpec = { name: 'vm1', runDir: '/run/svirt/vm1', memoryMiB: 256, cpus: 2, uid: 61184, gid: 61184 };

describe('buildQemuArgv (pure)', () => {
  it('builds the confined argv: sandbox, sockets by fd, disks as fd sets, direct kernel boot', () => {
    const spec: LaunchSpec = {
      ...base,
      kernel: '/k/vmlinuz',
      initrd: '/k/initrd.gz',
      append: 'console=ttyS0 panic=-1',
      disks: [{ path: '/img/a.raw' }, { path: '/img/b,c.qcow2', format: 'qcow2', readonly: true }],
    };
    expect(buildQemuArgv(spec, ['-accel', 'tcg'])).toEqual([
      '-name', 'guest=vm1',
      '-no-user-config', '-nodefaults',
      '-display', 'none',
      '-machine', 'q35',
      '-accel', 'tcg',
      '-m', '256',
      '-smp', '2',
      '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
      '-msg', 'timestamp=on',
      '-chardev', 'pipe,id=serial0,path=/proc/self/fd/3/ttyS0',
      '-serial', 'chardev:serial0',
      '-chardev', 'socket,id=qmp0,fd=4,server=on,wait=off',
      '-mon', 'chardev=qmp0,mode=control',
      '-add-fd', 'fd=5,set=1,opaque=ro:/img/a.raw',
      '-add-fd', 'fd=6,set=1,opaque=rw:/img/a.raw',
      '-drive', 'file=/dev/fdset/1,format=raw,if=none,id=drive1,readonly=off',
      '-device', 'virtio-blk-pci,drive=drive1',
      // A read-only disk gets no writable fd at all; the comma in its path is doubled for QemuOpts.
      '-add-fd', 'fd=7,set=2,opaque=ro:/img/b,,c.qcow2',
      '-drive', 'file=/dev/fdset/2,format=qcow2,if=none,id=drive2,readonly=on',
      '-device', 'virtio-blk-pci,drive=drive2',
      // qemu reopens its own fds: no path of the user's (with its commas) reaches a loader.
      '-kernel', '/proc/self/fd/8',
      '-initrd', '/proc/self/fd/9',
      '-append', 'console=ttyS0 panic=-1',
    ]);
    expect(SANDBOX_ARG).toBe('on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  });

  it('hands a qcow2 backing chain over as one read-only fd set and -blockdev node per layer, the bottom backing null', () => {
    const spec: LaunchSpec = {
      ...base,
      disks: [
        { path: '/p/top', format: 'qcow2', backing: [{ path: '/p/mid', format: 'qcow2' }, { path: '/p/base', format: 'raw' }] },
        { path: '/p/plain', format: 'qcow2', backing: [] },
      ],
    };
    expect(fdLayout(spec).disks).toEqual([
      // Backing layers take the fd sets after everything else, so they renumber nothing.
      { fdSet: 1, roFd: 5, rwFd: 6, backing: [{ fdSet: 3, roFd: 9 }, { fdSet: 4, roFd: 10 }] },
      { fdSet: 2, roFd: 7, rwFd: 8, backing: [] },
    ]);
    const argv = buildQemuArgv(spec, []);
    const blockdevs = argv.flatMap((a, i) => (argv[i - 1] === '-blockdev' ? [JSON.parse(a) as Record<string, unknown>] : []));
    expect(blockdevs).toEqual([
      { driver: 'file', filename: '/dev/fdset/4', 'node-name': 'disk0-b2-file', 'read-only': true },
      { driver: 'raw', file: 'disk0-b2-file', 'node-name': 'disk0-b2', 'read-only': true },
      { driver: 'file', filename: '/dev/fdset/3', 'node-name': 'disk0-b1-file', 'read-only': true },
      { driver: 'qcow2', file: 'disk0-b1-file', 'node-name': 'disk0-b1', 'read-only': true, backing: 'disk0-b2' },
      { driver: 'file', filename: '/dev/fdset/1', 'node-name': 'disk0-file', 'read-only': false },
      { driver: 'qcow2', file: 'disk0-file', 'node-name': 'disk0', 'read-only': false, backing: 'disk0-b1' },
      { driver: 'file', filename: '/dev/fdset/2', 'node-name': 'disk1-file', 'read-only': false },
      // No backing layers: still `backing: null`, so a header naming one is never followed.
      { driver: 'qcow2', file: 'disk1-file', 'node-name': 'disk1', 'read-only': false, backing: null },
    ]);
    expect(argv).toContain('fd=9,set=3,opaque=ro:/p/mid');
    expect(argv).toContain('virtio-blk-pci,drive=disk0,id=disk0-dev');
    expect(argv).not.toContain('-drive');
    expect(() => buildQemuArgv({ ...base, disks: [{ path: '/p/top', format: 'qcow2', backing: [{ path: '/p/base', format: 'raw' }, { path: '/p/x', format: 'qcow2' }] }] }, []))
      .toThrow('a raw backing layer must be the last one');
  });

  it('lays out child fds after stdio: serial, QMP, then each disk', () => {
    expect(fdLayout({ disks: [{ path: '/a', readonly: true }, { path: '/b' }, { path: '/c' }] })).toEqual({
      serialFd: 3,
      qmpFd: 4,
      disks: [{ fdSet: 1, roFd: 5 }, { fdSet: 2, roFd: 6, rwFd: 7 }, { fdSet: 3, roFd: 8, rwFd: 9 }],
      maxFd: 9,
    });
    expect(fdLayout({}).maxFd).toBe(4);
  });

  it('puts an ISO on a read-only CD-ROM booted before the disk, UEFI code and variables in pflash by fd', () => {
    const argv = buildQemuArgv({
      ...base,
      disks: [{ path: '/img/disk.qcow2', format: 'qcow2', bootIndex: 2 }, { path: '/iso/install.iso', cdrom: true, bootIndex: 1 }],
      firmware: { code: '/fw/OVMF_CODE_4M.fd', vars: '/vm/nvram.fd' },
    }, []);
    const joined = argv.join(' ');
    expect(joined).toContain('-device virtio-blk-pci,drive=drive1,bootindex=2');
    // A CD-ROM gets no writable fd, whatever the spec says about readonly.
    expect(joined).toContain('-add-fd fd=7,set=2,opaque=ro:/iso/install.iso -drive file=/dev/fdset/2,format=raw,if=none,id=drive2,readonly=on,media=cdrom -device ide-cd,drive=drive2,bootindex=1');
    expect(joined).not.toContain('opaque=rw:/iso/install.iso');
    expect(joined).toContain('-add-fd fd=8,set=3,opaque=ro:/fw/OVMF_CODE_4M.fd -drive if=pflash,unit=0,format=raw,readonly=on,file=/dev/fdset/3');
    expect(joined).toContain('-add-fd fd=9,set=4,opaque=ro:/vm/nvram.fd -add-fd fd=10,set=4,opaque=rw:/vm/nvram.fd -drive if=pflash,unit=1,format=raw,readonly=off,file=/dev/fdset/4');
    expect(fdLayout({ disks: [{ path: '/a' }], firmware: { code: '/c', vars: '/v' } })).toMatchObject({
      firmware: { code: { fdSet: 2, roFd: 7 }, vars: { fdSet: 3, roFd: 8, rwFd: 9 } },
      maxFd: 9,
    });
  });

  it('adds user-mode networking with loopback-only port forwards, and a VGA display on a VNC socket only when asked', () => {
    const plain = buildQemuArgv(base, []);
    expect(plain).not.toContain('-netdev');
    expect(plain).not.toContain('-vnc');
    const argv = buildQemuArgv({ ...base, network: { portForwards: [{ hostPort: 2222, guestPort: 22 }] }, displayDir: '/run/svirt/display/0-vm1' }, []);
    expect(argv.join(' ')).toContain('-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net0,romfile=');
    expect(argv.join(' ')).toContain('-device VGA');
    expect(argv.slice(argv.indexOf('-vnc'), argv.indexOf('-vnc') + 2)).toEqual(['-vnc', 'unix:/run/svirt/display/0-vm1/vnc.sock']);
  });

  it('adds -S for a paused start, the machine and accelerator given, and no kernel options without a kernel', () => {
    const argv = buildQemuArgv({ ...base, paused: true, machine: 'pc' }, ['-accel', 'kvm', '-cpu', 'host']);
    expect(argv.at(-1)).toBe('-S');
    expect(argv.join(' ')).toContain('-machine pc -accel kvm -cpu host');
    expect(argv).not.toContain('-kernel');
  });

  it('rejects specs that must not reach qemu', () => {
    const bad: Partial<LaunchSpec>[] = [
      { name: 'a,b' },
      { name: '-x' },
      { name: '' },
      { runDir: 'relative/run' },
      { memoryMiB: 0 },
      { memoryMiB: 1.5 },
      { cpus: 0 },
      { kernel: 'vmlinuz' },
      { initrd: '/i' },
      { kernel: '/k', append: 'a\nb' },
      { disks: [{ path: 'disk.raw' }] },
      { machine: 'q35,accel=kvm' },
      { uid: 0 },
      { gid: 0 },
      { uid: 1.5 },
      { network: { portForwards: [{ hostPort: 80, guestPort: 80 }] } },
      { network: { portForwards: [{ hostPort: 8080, guestPort: 0 }] } },
      { network: { portForwards: [{ hostPort: 8080, guestPort: 1 }, { hostPort: 8080, guestPort: 2 }] } },
      { firmware: { code: 'code.fd', vars: '/v' } },
      { displayDir: 'display' },
    ];
    for (const b of bad) expect(() => validateLaunchSpec({ ...base, ...b }), JSON.stringify(b)).toThrow();
    expect(() => validateLaunchSpec({ ...base, kernel: '/k', initrd: '/i', append: 'x' })).not.toThrow();
  });

  it('names the run files', () => {
    expect(qemuRunPaths('/run/x')).toEqual({
      qmpSocket: '/run/x/qmp.sock',
      serialDir: '/run/x/serial',
      serialLine: '/run/x/serial/ttyS0',
      pidFile: '/run/x/qemu.pid',
      logFile: '/run/x/qemu.log',
    });
  });
});

/** State and real uids of a pid from /proc, or undefined once it is gone (a zombie counts as gone). */
async function procStatus(pid: number): Promise<Record<string, string> | undefined> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const fields = Object.fromEntries(text.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
  return fields.State?.startsWith('Z') ? undefined : fields;
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await procStatus(pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('launchQemu (real qemu; needs root to switch uid)', () => {
  let dir: string;
  let bootDir: string;
  let diskDir: string;
  let accelArgs: string[];
  const pids: number[] = [];

  beforeAll(async () => {
    const [guest, accel] = await Promise.all([testGuest(), probeAccelerator()]);
    accelArgs = accel.args;
    dir = await mkdtemp(path.join(os.tmpdir(), 'svirt-launch-'));
    // qemu reopens -kernel/-initrd as /proc/self/fd/N: they must be readable by its uid (world-readable here).
    await chmod(dir, 0o711);
    bootDir = path.join(dir, 'boot');
    await mkdir(bootDir, { mode: 0o755 });
    for (const [from, to] of [[guest.kernel, 'vmlinuz'], [guest.initrd, 'initrd.gz']] as const) {
      await copyFile(from, path.join(bootDir, to));
      await chmod(path.join(bootDir, to), 0o644);
    }
    // Disks stay root-only (0600 in a 0700 dir): only the fds the launcher passes can reach them.
    diskDir = path.join(dir, 'disks');
    await mkdir(diskDir, { mode: 0o700 });
    for (const [name, mark] of [['rw.raw', 'SVIRT-DISK-MARK!'], ['ro.raw', 'READONLY-DISK-00']] as const) {
      const p = path.join(diskDir, name);
      await copyFile(guest.disk, p);
      await chmod(p, 0o600);
      const h = await open(p, 'r+');
      await h.write(mark, 0);
      await h.close();
    }
  });

  afterAll(async () => {
    for (const pid of pids) if (await procStatus(pid)) process.kill(pid, 'SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function spec(name: string, extra: Partial<LaunchSpec> = {}): LaunchSpec {
    return {
      name,
      runDir: path.join(dir, 'run', name),
      memoryMiB: 256,
      cpus: 1,
      kernel: path.join(bootDir, 'vmlinuz'),
      initrd: path.join(bootDir, 'initrd.gz'),
      append: GUEST_APPEND,
      accelArgs,
      uid: DEFAULT_VM_ID_RANGE.last,
      gid: DEFAULT_VM_ID_RANGE.last,
      ...extra,
    };
  }

  /** Runs launchQemu in a separate node process that exits right after, as the helper's launcher would. */
  async function launchFromShortLivedProcess(s: LaunchSpec): Promise<{ launched: LaunchedQemu; launcherPid: number }> {
    const script = path.join(dir, 'launcher.mts');
    await writeFile(
      script,
      `import { launchQemu } from ${JSON.stringify(path.join(HERE, 'launch.ts'))};\n` +
        `const r = await launchQemu(JSON.parse(process.argv[2]));\n` +
        `process.stdout.write(JSON.stringify({ launched: r, launcherPid: process.pid }) + '\\n');\n`,
    );
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', script, JSON.stringify(s)], { cwd: REPO, timeout: 60_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`launcher failed: ${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    const result = JSON.parse(out.trim().split('\n').pop() ?? '') as { launched: LaunchedQemu; launcherPid: number };
    pids.push(result.launched.pid);
    return result;
  }

  it('boots the guest as an unprivileged, seccomp-confined, detached qemu that reads and writes its disks by fd', async () => {
    const t0 = Date.now();
    const s = spec('guest1', {
      paused: true,
      disks: [{ path: path.join(diskDir, 'rw.raw') }, { path: path.join(diskDir, 'ro.raw'), readonly: true }],
    });
    const { launched, launcherPid } = await launchFromShortLivedProcess(s);
    const launchMs = Date.now() - t0;

    // The launcher has exited; qemu lives on, reparented, in its own session.
    expect(await procStatus(launcherPid)).toBeUndefined();
    const status = await procStatus(launched.pid);
    expect(status).toBeDefined();
    expect(status?.Uid?.split(/\s+/).map(Number)).toEqual([launched.uid, launched.uid, launched.uid, launched.uid]);
    expect(launched.uid).not.toBe(0);
    expect(status?.Gid?.split(/\s+/).map(Number)).not.toContain(0);
    expect(status?.Seccomp).toBe('2');
    expect(Number(status?.PPid)).not.toBe(launcherPid);
    const statFields = (await readFile(`/proc/${launched.pid}/stat`, 'utf8')).replace(/^.*\) /, '').split(' ');
    expect(Number(statFields[3])).toBe(launched.pid); // session id: it leads its own session

    // Run dir: root-owned 0700 with the sockets, the pidfile and the log.
    const rd = await stat(s.runDir);
    expect({ uid: rd.uid, mode: rd.mode & 0o777 }).toEqual({ uid: 0, mode: 0o700 });
    expect(readQemuPid(s.runDir)).toBe(launched.pid);
    // The serial line: the VM uid's directory and FIFOs, inside the root-only run dir.
    const lineDir = await stat(path.dirname(launched.serialPath));
    expect({ uid: lineDir.uid, mode: lineDir.mode & 0o777 }).toEqual({ uid: launched.uid, mode: 0o700 });
    for (const end of ['in', 'out']) expect((await stat(`${launched.serialPath}.${end}`)).isFIFO()).toBe(true);
    expect((await stat(launched.qmpSocketPath)).isSocket()).toBe(true);

    // Another process (this one) reaches it by the socket and line paths. Paused, so nothing printed is missed.
    const serial = await SerialConsole.open(launched.serialPath);
    const qmp = await QmpClient.connect(launched.qmpSocketPath);
    try {
      expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
      const bootStart = Date.now();
      await qmp.execute('cont');
      await serial.waitFor(new RegExp(`^${GUEST_READY_MARKER}\\r?$`, 'm'), 90_000);
      console.log(`launch (separate process, incl. node+tsx start) ${launchMs} ms; confined boot to ready ${Date.now() - bootStart} ms under ${accelArgs.join(' ')}`);

      // The bytes written into the root-only image before the start, read by the guest.
      const od = await serial.run('head -c 16 /dev/vda | od -c');
      expect(od.replace(/\s+/g, '')).toContain('SVIRT-DISK-MARK!');
      expect((await serial.run('head -c 16 /dev/vdb; echo')).trim()).toBe('READONLY-DISK-00');
      expect((await serial.run('cat /sys/block/vda/ro /sys/block/vdb/ro')).trim().split('\n')).toEqual(['0', '1']);
      // The guest writes through the read-write fd; the read-only disk refuses writes.
      await serial.run('printf GUEST-WROTE-THIS | dd of=/dev/vda bs=512 seek=1 conv=fsync 2>/dev/null; sync');
      expect(await serial.run('printf X | dd of=/dev/vdb bs=512 seek=1 conv=fsync 2>/dev/null; echo rc=$?')).toMatch(/rc=[1-9]/);

      const gone = waitGone(launched.pid, 15_000);
      expect(await qmp.execute('quit')).toEqual({});
      expect(await gone).toBe(true);
    } finally {
      serial.close();
      await qmp.close().catch(() => {});
    }

    const rw = await open(path.join(diskDir, 'rw.raw'), 'r');
    const buf = Buffer.alloc(16);
    await rw.read(buf, 0, 16, 512);
    await rw.close();
    expect(buf.toString('latin1')).toBe('GUEST-WROTE-THIS');
    const ro = await readFile(path.join(diskDir, 'ro.raw'));
    expect(ro.subarray(512, 513)[0]).toBe(0);
    expect(readQemuPid(s.runDir)).toBeUndefined();
  });

  it('hands the caller the QMP connection it checked qemu with, when asked, and the paused VM resumes on it', async () => {
    const { qmp, pid } = await launchQemu(spec('kept-qmp', { paused: true, keepQmp: true }));
    pids.push(pid);
    expect(qmp).toBeDefined();
    try {
      expect(await qmp?.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
      await qmp?.execute('cont');
      expect(await qmp?.execute('query-status')).toMatchObject({ status: 'running', running: true });
      const gone = waitGone(pid, 15_000);
      await qmp?.execute('quit');
      expect(await gone).toBe(true);
    } finally {
      await qmp?.close();
    }
  });

  it('reports a qemu that dies at start with its log, and leaves no process or pidfile', async () => {
    const s = spec('broken', { machine: 'no-such-machine' });
    await expect(launchQemu(s)).rejects.toThrow(/qemu did not start[\s\S]*no-such-machine/);
    await expect(stat(qemuRunPaths(s.runDir).pidFile)).rejects.toThrow(/ENOENT/);
  });

  it('gives qemu.log the VM\'s image label before qemu inherits it, and qemu writes into that file', async () => {
    const logLabel = 'system_u:object_r:svirt_image_t:s0:c7,c9';
    const s = spec('labeled-log', { machine: 'no-such-machine', logLabel });
    await expect(launchQemu(s)).rejects.toThrow(/qemu did not start/);
    const logFile = qemuRunPaths(s.runDir).logFile;
    expect(await readLabel(logFile)).toBe(logLabel);
    expect(await readFile(logFile, 'utf8')).toMatch(/no-such-machine/);
  });

  it('refuses a kernel the VM\'s uid cannot read (qemu reopens it by /proc/self/fd)', async () => {
    const hidden = path.join(diskDir, 'vmlinuz');
    await copyFile(path.join(bootDir, 'vmlinuz'), hidden);
    await chmod(hidden, 0o600);
    await expect(launchQemu(spec('hidden', { kernel: hidden }))).rejects.toThrow(/is not readable by the VM's uid/);
  });
});
