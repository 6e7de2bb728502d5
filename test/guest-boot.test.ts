// Boots the real test guest under qemu: the base every qemu integration test stands on.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PROBE_ROUNDS, PROBE_SUCCESS_EXIT, TCG_ARGS, probeAccelerator, probeArgv, probeFirmware } from '../src/root/qemu/accel';
import { GUEST_APPEND, GUEST_READY_MARKER, SerialConsole, connectUnix } from './support/guest';
import { useQemuBed } from './support/qemu-bed';

const bed = useQemuBed('svirt-boot-');

beforeAll(() => {
  console.log(`accelerator: ${bed.accel.accel} (${bed.accel.reason}); probe took ${bed.accel.probeMs} ms`);
});

/** Minimal QMP exchange (the real client lives in src/root/qemu/qmp.ts): handshake, then one command. */
async function qmpCommand(socketPath: string, execute: string): Promise<unknown> {
  const sock = await connectUnix(socketPath);
  sock.setEncoding('utf8');
  let buf = '';
  const next = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (!('event' in msg)) return msg;
        continue;
      }
      const [chunk] = (await once(sock, 'data')) as [string];
      buf += chunk;
    }
  };
  try {
    expect(await next()).toHaveProperty('QMP');
    sock.write('{"execute":"qmp_capabilities"}\n');
    expect(await next()).toEqual({ return: {} });
    sock.write(JSON.stringify({ execute }) + '\n');
    return await next();
  } finally {
    sock.destroy();
  }
}

describe('accelerator probe', () => {
  it('its firmware finishes under TCG, so a KVM rejection is about KVM', async () => {
    const fw = path.join(bed.dir, 'probe.bin');
    await writeFile(fw, probeFirmware());
    const child = spawn('qemu-system-x86_64', probeArgv(TCG_ARGS, fw), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('latin1').on('data', (d: string) => (out += d));
    const t0 = Date.now();
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(PROBE_SUCCESS_EXIT);
    expect(out).toBe('.'.repeat(PROBE_ROUNDS));
    console.log(`probe workload under TCG: ${Date.now() - t0} ms`);
  });

  it('answers an accelerator with matching qemu args, memoized', async () => {
    expect(['kvm', 'tcg']).toContain(bed.accel.accel);
    expect(bed.accel.args).toContain(bed.accel.accel);
    expect(bed.accel.reason.length).toBeGreaterThan(0);
    expect(await probeAccelerator()).toBe(bed.accel);
  });
});

describe('test guest', () => {
  it('boots to a serial shell that evaluates commands and sees its virtio disk, then quits via QMP', async () => {
    const serialPath = path.join(bed.dir, 'serial.sock');
    const qmpPath = path.join(bed.dir, 'qmp.sock');
    const t0 = Date.now();
    const qemu = spawn(
      'qemu-system-x86_64',
      [
        ...bed.accel.args,
        '-machine', 'q35',
        '-display', 'none', '-nodefaults', '-no-user-config',
        '-m', '256',
        '-kernel', bed.guest.kernel,
        '-initrd', bed.guest.initrd,
        '-append', GUEST_APPEND,
        '-drive', `file=${bed.guest.disk},if=virtio,format=raw,readonly=on`,
        '-chardev', `socket,id=ser0,path=${serialPath},server=on,wait=off`,
        '-serial', 'chardev:ser0',
        '-qmp', `unix:${qmpPath},server=on,wait=off`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    bed.children.push(qemu);
    let stderr = '';
    qemu.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = once(qemu, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;

    // wait=off: qemu discards serial output until someone connects, so connect as soon as the socket exists.
    const serial = await SerialConsole.connect(serialPath);
    try {
      await serial.waitFor(new RegExp(`^${GUEST_READY_MARKER}\\r?$`, 'm'), 90_000);
      const bootMs = Date.now() - t0;
      console.log(`guest boot to ${GUEST_READY_MARKER} under ${bed.accel.accel}: ${bootMs} ms`);

      // The typed line is echoed with "6*7" in it, so only a line that is exactly 42 proves evaluation.
      const from = serial.send('echo $((6*7))');
      await serial.waitFor(/^42\r?$/m, 30_000, from);

      // 8 MiB disk = 16384 sectors, attached read-only: the virtio modules loaded and qemu honoured readonly=on.
      expect((await serial.run('cat /sys/block/vda/size /sys/block/vda/ro')).trim().split('\n')).toEqual(['16384', '1']);
    } finally {
      serial.close();
    }

    const reply = await qmpCommand(qmpPath, 'quit');
    expect(reply).toEqual({ return: {} });
    const [code, signal] = await exited;
    expect({ code, signal }, stderr).toEqual({ code: 0, signal: null });
  });
});
