import { execFileSync } from 'node:child_process';
import { chmod, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HelperClient } from '../src/user/helper-client';
import { readLabel } from '../src/security/selinux/file-labels';
import { processStartTime } from '../src/host/state-lock';
import { GUEST_READY_MARKER } from './support/guest';
import { ConsoleTap, createTestHost, ORIGINAL_LABEL, type TestHost } from './support/helper-session';
import { wireDefinition } from './support/wire-definition';

// Real helper process, real qemu (TCG), real labels on real files: the helper issue's integration test.
let host: TestHost;
let helper: HelperClient;

const definition = (name: string, disks: object[], seclabel: object = { mode: 'dynamic' }) => wireDefinition({
  version: 1, name, memoryMiB: 128, vcpus: 1, createdAt: new Date().toISOString(),
  boot: { kind: 'kernel', kernel: host.kernel, initrd: host.initrd, cmdline: host.append },
  disks, seclabel,
});
const disk = (p: string, cls: 'private' | 'shared' | 'readonly', relabel = true) => ({ path: p, format: 'raw', class: cls, relabel });

beforeAll(async () => {
  host = await createTestHost();
  helper = host.startHelper();
});
afterAll(async () => {
  const running = await helper.request('list').catch(() => []);
  for (const vm of running) await helper.request('forceOff', { vm: vm.id }).catch(() => undefined);
  await host.dispose();
});

describe('helper VM lifecycle', () => {
  it('reports its status: SELinux mode, policy profile from the installed policy, accelerator', async () => {
    const status = await helper.request('status');
    expect(['enforcing', 'permissive', 'disabled']).toContain(status.selinux);
    expect(status.policy).toMatchObject({ processType: 'svirt_t', imageType: 'svirt_image_t', contentType: 'virt_content_t' });
    expect(['kvm', 'tcg']).toContain(status.accel.kind);
  });

  it('refuses to start a confined VM on a host without SELinux unless unconfined is allowed, changing nothing', async () => {
    const a = await host.disk('refused.img');
    await expect(helper.request('start', { definition: definition('refused', [disk(a, 'private')]) })).rejects.toThrow(/not confined: SELinux is disabled/);
    expect(await readLabel(a)).toBe(ORIGINAL_LABEL);
    expect(await helper.request('list')).toEqual([]);
  });

  it('starts two VMs with distinct pairs, labels their files, relays consoles, and restores everything at stop', async () => {
    const [privA, privB, shared, readonly] = await Promise.all(['a.img', 'b.img', 'shared.img', 'ro.img'].map((n) => host.disk(n)));
    const vmA = await helper.request('start', {
      definition: definition('vm-a', [disk(privA!, 'private'), disk(shared!, 'shared'), disk(readonly!, 'readonly')]), allowUnconfined: true,
    });
    const vmB = await helper.request('start', {
      definition: definition('vm-b', [disk(privB!, 'private'), disk(shared!, 'shared')]), allowUnconfined: true,
    });
    expect(vmA.level).toMatch(/^s0:c\d+[,.]c\d+$/);
    expect(vmB.level).toMatch(/^s0:c\d+[,.]c\d+$/);
    expect(vmA.level).not.toBe(vmB.level);
    expect(vmA.processLabel).toBe(`system_u:system_r:svirt_t:${vmA.level}`);
    expect(vmA.confined).toBe(false);
    expect(vmA.confinement).toBe('unconfined-disabled');
    expect(vmA.notConfinedReason).toBe('not confined: SELinux disabled');

    expect(await readLabel(privA!)).toBe(`system_u:object_r:svirt_image_t:${vmA.level}`);
    expect(await readLabel(privB!)).toBe(`system_u:object_r:svirt_image_t:${vmB.level}`);
    expect(await readLabel(shared!)).toBe('system_u:object_r:svirt_image_t:s0');
    expect(await readLabel(readonly!)).toBe('system_u:object_r:virt_content_t:s0');
    expect(await readLabel(host.kernel)).toBe('system_u:object_r:virt_content_t:s0');

    // qemu runs unprivileged and under seccomp.
    const status = await readFile(`/proc/${vmA.pid}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).not.toBe('0');
    expect(status).toMatch(/^Seccomp:\s+2$/m);

    const [consoleA, consoleB] = await Promise.all([ConsoleTap.attach(helper, 'vm-a'), ConsoleTap.attach(helper, 'vm-b')]);
    await Promise.all([consoleA.waitFor(new RegExp(GUEST_READY_MARKER)), consoleB.waitFor(new RegExp(GUEST_READY_MARKER))]);
    await consoleA.run('echo $((6*7))', /^42\r?$/m);
    await consoleB.run('echo $((7*7))', /^49\r?$/m);

    const stopped = await Promise.all([helper.request('stop', { vm: 'vm-a' }), helper.request('stop', { vm: 'vm-b' })]);
    expect(stopped.map((s) => s.forced)).toEqual([false, false]); // ACPI shutdown worked
    expect(await readLabel(privA!)).toBe(ORIGINAL_LABEL);
    expect(await readLabel(privB!)).toBe(ORIGINAL_LABEL);
    // Shared and read-only content keeps its label after stop, as libvirt does.
    expect(await readLabel(shared!)).toBe('system_u:object_r:svirt_image_t:s0');
    expect(await readLabel(readonly!)).toBe('system_u:object_r:virt_content_t:s0');
    expect(await helper.request('list')).toEqual([]);
    const registry = JSON.parse(await readFile(path.join(host.stateDir, 'registry.json'), 'utf8'));
    expect(registry.mcs.holds).toEqual([]);
    const journal = JSON.parse(await readFile(path.join(host.stateDir, 'journal.json'), 'utf8'));
    expect(Object.keys(journal.entries).filter((p) => p === privA || p === privB)).toEqual([]);
  });

  it('undoes a start that qemu refuses at once: labels back, no keeper or qemu left behind', async () => {
    const img = await host.disk('bad-kernel.img');
    const notAKernel = await host.disk('not-a-kernel.img');
    await chmod(notAKernel, 0o644);
    // qemu refuses to load an initrd with something that is not a bzImage: "linux kernel too old to load a ram disk".
    const bad = wireDefinition({ ...definition('bad-kernel', [disk(img, 'private')]), boot: { kind: 'kernel', kernel: notAKernel, initrd: host.initrd } });
    await expect(helper.request('start', { definition: bad, allowUnconfined: true })).rejects.toThrow(/qemu did not start/);
    expect(await readLabel(img)).toBe(ORIGINAL_LABEL);
    expect(await helper.request('list')).toEqual([]);
    // Neither qemu nor a console keeper (still waiting for qemu's socket, if not ended) names the run dir.
    const processes = execFileSync('ps', ['-eo', 'args']).toString();
    expect(processes).not.toContain(`${host.stateDir}/run/0-bad-kernel`);
  });

  it('never touches the files of a static VM with relabel off, byte for byte and label for label', async () => {
    const img = await host.disk('static.img');
    const before = await readFile(img);
    const vm = await helper.request('start', {
      definition: definition('static-vm', [disk(img, 'private', false)], { mode: 'static', label: 'system_u:system_r:svirt_t:s0:c7,c9', relabel: false }),
      allowUnconfined: true,
    });
    expect(vm.processLabel).toBe('system_u:system_r:svirt_t:s0:c7,c9');
    expect(vm.level).toBeNull();
    const tap = await ConsoleTap.attach(helper, 'static-vm');
    await tap.waitFor(new RegExp(GUEST_READY_MARKER));
    expect(await readLabel(img)).toBe(ORIGINAL_LABEL);
    await helper.request('forceOff', { vm: 'static-vm' });
    expect(await readLabel(img)).toBe(ORIGINAL_LABEL);
    expect((await readFile(img)).equals(before)).toBe(true);
  });

  it('survives SIGKILL of the helper: a new helper lists the VM, attaches to its console, and stops it', async () => {
    const img = await host.disk('survivor.img');
    const vm = await helper.request('start', { definition: definition('survivor', [disk(img, 'private')]), allowUnconfined: true });
    const first = await ConsoleTap.attach(helper, 'survivor');
    await first.waitFor(new RegExp(GUEST_READY_MARKER));
    const qemuStart = processStartTime(vm.pid!);
    helper.kill('SIGKILL');
    await helper.exited;

    helper = host.startHelper();
    const listed = await helper.request('list');
    expect(listed.map((v) => [v.name, v.pid, v.level])).toEqual([['survivor', vm.pid, vm.level]]);
    expect(processStartTime(vm.pid!)).toBe(qemuStart);
    const second = await ConsoleTap.attach(helper, 'survivor');
    expect(second.replayedBytes).toBeGreaterThan(GUEST_READY_MARKER.length);
    // Output from before the helper died is replayed from the keeper's scrollback.
    await second.waitFor(new RegExp(GUEST_READY_MARKER));
    await second.run('echo $((6*7))', /^42\r?$/m);
    await helper.request('stop', { vm: 'survivor' });
    expect(await readLabel(img)).toBe(ORIGINAL_LABEL);
  });
});
