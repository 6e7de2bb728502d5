// QmpClient against real qemu processes: a booted test guest and an idle machine.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { GUEST_APPEND, GUEST_READY_MARKER, SerialConsole, connectUnix } from '../../../test/support/guest';
import { useQemuBed } from '../../../test/support/qemu-bed';
import { QmpClient, QmpError, type QmpEvent } from './qmp';

const bed = useQemuBed('svirt-qmp-');

interface Qemu {
  child: ChildProcess;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  qmpPath: string;
  serialPath: string;
}

function startQemu(name: string, extra: string[]): Qemu {
  const qmpPath = path.join(bed.dir, `${name}.qmp`);
  const serialPath = path.join(bed.dir, `${name}.serial`);
  const child = spawn(
    'qemu-system-x86_64',
    [
      '-display', 'none', '-nodefaults', '-no-user-config',
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
      '-chardev', `socket,id=ser0,path=${serialPath},server=on,wait=off`,
      '-serial', 'chardev:ser0',
      ...extra,
    ],
    { stdio: 'ignore' },
  );
  bed.children.push(child);
  return { child, exited: once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>, qmpPath, serialPath };
}

describe('QmpClient on a booted guest', () => {
  let vm: Qemu;
  let qmp: QmpClient;
  const events: QmpEvent[] = [];

  beforeAll(async () => {
    vm = startQemu('guest', [
      ...bed.accel.args, '-machine', 'q35', '-m', '256',
      '-kernel', bed.guest.kernel, '-initrd', bed.guest.initrd, '-append', GUEST_APPEND,
    ]);
    const serial = await SerialConsole.connect(vm.serialPath);
    qmp = await QmpClient.connect(await connectUnix(vm.qmpPath));
    qmp.on('event', (ev: QmpEvent) => events.push(ev));
    // acpid starts before the marker, so the power button is handled from here on.
    await serial.waitFor(new RegExp(`^${GUEST_READY_MARKER}\\r?$`, 'm'), 90_000);
    serial.close();
  });

  it('negotiated capabilities and read the greeting', () => {
    expect(qmp.greeting?.QMP.version.qemu.major).toBeGreaterThanOrEqual(7);
  });

  it('query-status returns running', async () => {
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'running', running: true });
  });

  it('throws the QMP error desc for a failing command', async () => {
    const err = await qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ errorClass: 'CommandNotFound', message: "The command no-such-command has not been found" });
    await expect(qmp.execute('query-block-jobs', { bogus: 1 })).rejects.toThrow(/bogus/);
    // The connection is still usable after errors, and answers in order.
    const [a, b] = await Promise.all([qmp.execute('query-status'), qmp.execute<{ name?: string }>('query-name')]);
    expect(a).toMatchObject({ status: 'running' });
    expect(b).toEqual({});
  });

  it('delivers STOP and RESUME events', async () => {
    const stopped = qmp.waitForEvent('STOP', 10_000);
    await qmp.execute('stop');
    await stopped;
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'paused', running: false });
    const resumed = qmp.waitForEvent('RESUME', 10_000);
    await qmp.execute('cont');
    await resumed;
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['STOP', 'RESUME']));
  });

  it('system_powerdown: the guest (busybox acpid) powers off; qemu reports it and exits', async () => {
    const powerdown = qmp.waitForEvent('POWERDOWN', 10_000);
    const shutdown = qmp.waitForEvent('SHUTDOWN', 30_000);
    await qmp.execute('system_powerdown');
    await powerdown;
    expect((await shutdown).data).toMatchObject({ guest: true, reason: 'guest-shutdown' });
    expect(await vm.exited).toEqual([0, null]);
    await qmp.closed;
    expect(qmp.isClosed).toBe(true);
    await expect(qmp.execute('query-status')).rejects.toThrow(/closed/);
  });
});

describe('QmpClient on an idle machine', () => {
  it('connects by path, reports prelaunch, and quit ends qemu', async () => {
    const vm = startQemu('idle', ['-accel', 'tcg', '-machine', 'none', '-S']);
    const deadline = Date.now() + 10_000;
    let qmp: QmpClient | undefined;
    while (!qmp) {
      try {
        qmp = await QmpClient.connect(vm.qmpPath);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
    const closed = once(qmp, 'close');
    expect(await qmp.execute('quit')).toEqual({});
    await closed;
    expect(await vm.exited).toEqual([0, null]);
  });

  it('close() leaves qemu running; a second client can connect', async () => {
    const vm = startQemu('idle2', ['-accel', 'tcg', '-machine', 'none', '-S']);
    const first = await QmpClient.connect(await connectUnix(vm.qmpPath));
    await first.close();
    expect(first.isClosed).toBe(true);
    const second = await QmpClient.connect(vm.qmpPath);
    expect(await second.execute('query-status')).toMatchObject({ status: 'prelaunch' });
    await second.execute('quit');
    expect(await vm.exited).toEqual([0, null]);
  });

  it('times out on a peer that never greets', async () => {
    const sockPath = path.join(bed.dir, 'silent.sock');
    const server = net.createServer(() => {});
    await new Promise<void>((r) => server.listen(sockPath, r));
    try {
      await expect(QmpClient.connect(sockPath, { timeoutMs: 300 })).rejects.toThrow(/no QMP handshake within 300 ms/);
    } finally {
      server.close();
    }
  });
});
