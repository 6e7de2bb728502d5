import { spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CATEGORY_RANGE, buildPolicyProfile, FALLBACK_PROFILE_FILES } from '../../core/selinux/policy-profile';
import { McsAllocator } from '../../core/selinux/mcs-allocator';
import { vmTypeSets } from '../../core/selinux/seclabel-rules';
import { DacDriver } from '../../security/dac/dac-driver';
import { NoneDriver } from '../../security/none/none-driver';
import type { FileHolds, ModelState, SecuredVm, SecurityDriver, SecurityModelId, VmLabel } from '../../security/security-driver';
import { SecurityStack } from '../../security/security-stack';
import { SelinuxDriver } from '../../security/selinux/selinux-driver';
import { processStartTime } from '../../host/state-lock';
import { HelperStateStore, type RunRecord } from '../state/helper-state';
import type { HelperConfig } from './helper-config';
import { VmLifecycle, type StartRuntime } from './vm-lifecycle';

/**
 * The lifecycle's order and its one clean-up path, with a fake MAC driver and fake processes (sleep) in
 * place of qemu and its console keeper: no root-only kernel feature, no qemu.
 */

const VM_UID = 61_300;
let dir: string;
let store: HelperStateStore;
let disk: string;
const children: ChildProcess[] = [];

/** A process standing in for qemu or its keeper, running as `uid` (the DAC layer checks qemu's). */
function sleeper(uid = 0): ChildProcess {
  const child = spawn('sleep', ['60'], { stdio: 'ignore', uid, gid: uid });
  children.push(child);
  return child;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lifecycle-'));
  store = new HelperStateStore(path.join(dir, 'state'));
  await store.init();
  disk = path.join(dir, 'guest.img');
  await writeFile(disk, Buffer.alloc(4096));
  await chown(disk, 1000, 1000);
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
  await rm(`${store.dir}-display`, { recursive: true, force: true });
});

function config(): HelperConfig {
  return {
    stateDir: store.dir, pathPolicy: { pools: [], devices: [] }, categoryRange: DEFAULT_CATEGORY_RANGE,
    vmIdRange: { first: VM_UID, last: VM_UID + 10 }, shutdownTimeoutSeconds: 1, allowSeclabelNone: false, configPath: '/etc/svirt-manager/helper.json',
  };
}

function definition(): Record<string, unknown> {
  return {
    version: 1, createdAt: '2026-01-01T00:00:00.000Z', name: 'guest', memoryMiB: 256, vcpus: 1, boot: { kind: 'disk' },
    disks: [{ path: disk, format: 'raw', class: 'private', relabel: true }], seclabel: { mode: 'dynamic' },
  };
}

/** A MAC driver that logs each verb, reads the registry when its files are labelled, and fails where told. */
class FakeMac extends NoneDriver {
  readonly log: string[] = [];
  constructor(private readonly state: ModelState, private readonly verifyProblem: string | null = null) {
    super();
    (this as { model: SecurityModelId }).model = 'apparmor';
  }
  override async probe() {
    return { model: this.model, state: this.state };
  }
  override async generate(vm: SecuredVm): Promise<VmLabel> {
    this.log.push('generate');
    return { model: this.model, dynamic: true, process: `profile-${vm.name}`, image: null, distinct: `profile-${vm.name}` };
  }
  override release(vmId: string): void {
    this.log.push(`release ${vmId}`);
  }
  override async setAll(vm: SecuredVm, _label: VmLabel, _files: FileHolds): Promise<void> {
    const recorded = (await store.readRegistry()).vms[vm.id] !== undefined;
    this.log.push(`setAll (record ${recorded ? 'written' : 'missing'})`);
  }
  override async restoreAll(vmId: string): Promise<void> {
    this.log.push(`restoreAll ${vmId}`);
  }
  override confineProcess(vm: SecuredVm) {
    this.log.push('confineProcess');
    return { execPrefix: ['confine', vm.name] };
  }
  override async verifyProcess(): Promise<string | null> {
    this.log.push('verifyProcess');
    return this.verifyProblem;
  }
}

function lifecycle(mac: SecurityDriver, runtime: Partial<StartRuntime>, selinux?: SelinuxDriver): VmLifecycle {
  const cfg = config();
  return new VmLifecycle({
    store, config: cfg, requester: { uid: 0 },
    security: new SecurityStack(mac, new DacDriver({ range: cfg.vmIdRange }), selinux ? [selinux] : []),
    accel: async () => ({ accel: 'tcg', args: ['-accel', 'tcg'], reason: 'test', probeMs: 0 }),
    keeperCommand: { command: 'false', argsPrefix: [] },
    runtime,
  });
}

/** Fake qemu and keeper processes, logging into the same log as the driver. */
function fakeRuntime(log: string[]): Partial<StartRuntime> & { qemu?: ChildProcess; keeper?: ChildProcess } {
  const runtime: Partial<StartRuntime> & { qemu?: ChildProcess; keeper?: ChildProcess } = {
    startKeeper: async (options) => {
      log.push('startKeeper');
      void options.nextSpareAfter?.then(() => log.push('next spare may start'));
      runtime.keeper = sleeper();
      return { pid: runtime.keeper.pid as number };
    },
    launchQemu: async (spec) => {
      log.push(`launchQemu as ${spec.uid} through ${spec.execPrefix?.join(' ') ?? 'nothing'}`);
      runtime.qemu = sleeper(spec.uid);
      const pid = runtime.qemu.pid as number;
      await new Promise((r) => setTimeout(r, 50));
      return { pid, name: spec.name, uid: spec.uid, gid: spec.gid, runDir: spec.runDir, qmpSocketPath: path.join(spec.runDir, 'qmp.sock'), serialPath: '', pidFile: '', logFile: '', argv: [], accelArgs: [] };
    },
    resume: async () => {
      log.push('resume');
    },
  };
  return runtime;
}

const alive = (child: ChildProcess | undefined) => child?.exitCode === null && child.signalCode === null;

describe('VmLifecycle.start on the security seam', () => {
  it('takes the labels, records the VM, labels its files, launches qemu confined, checks it, then resumes it', async () => {
    const mac = new FakeMac('enforcing');
    const runtime = fakeRuntime(mac.log);
    const info = await lifecycle(mac, runtime).start(definition());
    expect(mac.log).toEqual([
      'generate', 'setAll (record written)', 'confineProcess', 'startKeeper', `launchQemu as ${VM_UID} through confine guest`, 'verifyProcess', 'resume',
      // Not while qemu starts: a Node start-up would compete with it.
      'next spare may start',
    ]);
    expect(info.state).toBe('running');
    expect(info.security).toMatchObject({ model: 'apparmor', layers: [{ model: 'dac', parts: expect.arrayContaining([{ name: 'uid', value: String(VM_UID), meaning: expect.any(String) }]) }] });
    // DAC handed the private disk to the VM's uid, journaled.
    expect((await stat(disk)).uid).toBe(VM_UID);
    const { journal } = await store.read();
    expect(journal.entries[disk]).toMatchObject({ holder: '0/guest', applied: null, owner: { uid: 1000, gid: 1000 } });
  });

  it('stops a qemu that does not carry its label, and gives back its files, labels, keeper and record on one path', async () => {
    const mac = new FakeMac('enforcing', 'qemu runs as unconfined');
    const runtime = fakeRuntime(mac.log);
    await expect(lifecycle(mac, runtime).start(definition())).rejects.toThrow(/start of guest failed: qemu runs as unconfined; it was stopped/);
    expect(mac.log.slice(-4)).toEqual(['verifyProcess', 'next spare may start', 'restoreAll 0/guest', 'release 0/guest']);
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(runtime.qemu)).toBe(false);
    expect(alive(runtime.keeper)).toBe(false);
    expect((await stat(disk)).uid).toBe(1000);
    const { registry, journal } = await store.read();
    expect(registry.vms).toEqual({});
    expect(journal.entries).toEqual({});
  });

  it('refuses to start a VM the host cannot confine unless allowed, taking nothing', async () => {
    const mac = new FakeMac('absent');
    const runtime = fakeRuntime(mac.log);
    await expect(lifecycle(mac, runtime).start(definition())).rejects.toThrow(/not confined: this host runs no mandatory access control model/);
    expect(mac.log).toEqual(['generate', 'release 0/guest']);
    expect((await store.readRegistry()).vms).toEqual({});
    expect((await stat(disk)).uid).toBe(1000);
  });
});

describe('records written before the security drivers', () => {
  const oldRecord = (pid: number | null, pidStartTime: string | null): RunRecord => ({
    id: '1000/old', name: 'old', ownerUid: 1000, phase: 'running', helperPid: 1, helperStartTime: 'x',
    pid, pidStartTime, keeperPid: null, keeperStartTime: null, runDir: path.join(store.runRoot, '1000-old'),
    level: 's0:c7,c9', processLabel: 'system_u:system_r:svirt_t:s0:c7,c9', imageLabel: 'system_u:object_r:svirt_image_t:s0:c7,c9',
    confined: true, notConfinedReason: null, accel: 'tcg', qemuUid: VM_UID + 3,
    definition: definition(), startedAt: '2026-01-01T00:00:00.000Z',
  });

  function selinux(): SelinuxDriver {
    const profile = buildPolicyProfile(FALLBACK_PROFILE_FILES);
    return new SelinuxDriver({
      profile, vmTypes: async () => vmTypeSets(profile, undefined), categoryRange: DEFAULT_CATEGORY_RANGE,
      allowSeclabelNone: false, configPath: 'helper.json', mode: async () => 'enforcing', live: async () => [],
    });
  }

  async function writeOldRegistry(record: RunRecord): Promise<void> {
    const mcs = new McsAllocator({ range: DEFAULT_CATEGORY_RANGE });
    mcs.reserve('s0:c7,c9', record.id);
    await store.transaction(async (tx) => {
      tx.registry.mcs = mcs.toJSON();
      tx.registry.vms[record.id] = record;
    });
  }

  it('describes a running VM of an older helper from its SELinux fields and its uid', async () => {
    await writeOldRegistry(oldRecord(process.pid, processStartTime(process.pid) ?? null));
    const [info] = await lifecycle(selinux(), {}).list();
    expect(info?.security).toMatchObject({
      model: 'selinux', processLabel: 'system_u:system_r:svirt_t:s0:c7,c9', distinct: 's0:c7,c9',
      layers: [{ model: 'dac', parts: expect.arrayContaining([expect.objectContaining({ name: 'uid', value: String(VM_UID + 3) })]) }],
    });
    expect(info?.processLabel).toBe('system_u:system_r:svirt_t:s0:c7,c9');
  });

  it('releases the pair of an older helper\'s VM whose qemu died, even on a host whose MAC model is now another', async () => {
    await writeOldRegistry(oldRecord(null, null));
    const report = await lifecycle(new FakeMac('enforcing'), {}, selinux()).reconcile();
    expect(report.cleanedUp).toEqual(['1000/old']);
    const registry = await store.readRegistry();
    expect(registry.vms).toEqual({});
    expect(McsAllocator.savedOwners(registry.mcs)).toEqual([]);
  });
});
