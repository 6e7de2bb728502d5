import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORIGINAL_LABEL } from '../support/helper-session';
import { seededUnit } from '../support/seeded-random';
import { CRASH_KINDS, crashIteration, createCrashRig, leaveTornTempFiles, type CrashRig } from './support/crash-scenario';
import { checkInvariants, findProcesses, helperEnv, snapshotFiles, vmDefinition } from './support/reliability';

// Crash at every step of start and stop, one iteration of each kind (the soak runs many, with random timings).
let rig: CrashRig;
const random = seededUnit(Number(process.env.SVIRT_CRASH_SEED ?? 7));

beforeAll(async () => {
  rig = await createCrashRig();
});
afterAll(async () => {
  await rig?.host.dispose();
});

describe('crash recovery', () => {
  // Here: every fault point, a qemu killed during its start, a power loss. The soak runs every kind many times.
  for (const kind of CRASH_KINDS.filter((k) => k !== 'kill-qemu-in-stop' && k !== 'kill-helper-in-start')) {
    it(`recovers from ${kind}: a new helper reconciles and every invariant holds`, async () => {
      const result = await crashIteration(rig, kind, `c-${kind}`, random);
      expect(result.violations).toEqual([]);
      expect(result.killed).toBe(true);
    });
  }
});

describe('power loss and damaged state files', () => {
  it('ignores half-written temp files beside the state files (the rename never happened)', async () => {
    const store = path.join(rig.host.stateDir);
    const helper = rig.host.startHelper(helperEnv(0));
    await helper.request('list');
    await helper.close();
    // Absent until something changed: then the helper has nothing but temp files to be misled by.
    const read = () => Promise.all(['registry.json', 'journal.json'].map((f) => readFile(path.join(store, f), 'utf8').then((t) => JSON.parse(t) as unknown, () => null)));
    const before = await read();
    const temps = await leaveTornTempFiles(store, random);
    // A torn temp file of a registry that lists a VM: it must not be read as the state.
    await writeFile(temps[0] as string, JSON.stringify({ version: 1, mcs: null, vms: { '0/ghost': { id: '0/ghost' } } }).slice(0, 40));
    const next = rig.host.startHelper(helperEnv(0));
    expect(await next.request('list')).toEqual([]);
    await next.close();
    expect(await read()).toEqual(before);
    expect(await checkInvariants(rig.host)).toEqual([]);
  });

  it('refuses to run on a guessed state when a state file is damaged (a disk error; rename never tears one), leaving the VMs and the file alone', async () => {
    const disk = rig.privateDisks[0] as string;
    const first = rig.host.startHelper(helperEnv(0));
    const vm = await first.request('start', { definition: vmDefinition(rig.host, 'damaged', [{ path: disk, class: 'private' }]), allowUnconfined: true });
    await first.close();
    const labels = await snapshotFiles([disk]);
    for (const damage of ['truncated registry.json', 'empty registry.json', 'truncated journal.json', 'registry.json of the wrong shape']) {
      const file = path.join(rig.host.stateDir, damage.includes('journal') ? 'journal.json' : 'registry.json');
      const good = await readFile(file, 'utf8');
      const damaged = damage.startsWith('empty') ? '' : damage.includes('shape') ? '{"version":1,"vms":[]}' : good.slice(0, Math.floor(good.length / 2));
      await writeFile(file, damaged);

      const refused = rig.host.startHelper(helperEnv(0));
      const error = await refused.request('list').then(() => undefined, (err: Error & { code?: string }) => err);
      expect(error?.code, damage).toBe('helper-exited');
      expect(error?.message, damage).toContain(path.basename(file));
      expect(error?.message, damage).toMatch(/not valid JSON|invalid registry|invalid label journal/);
      await refused.exited;
      // Nothing was guessed: the file is as damaged as it was, the VM still runs with its labels.
      expect(await readFile(file, 'utf8'), damage).toBe(damaged);
      expect(findProcesses(rig.host.dir, 'qemu').map((p) => p.pid), damage).toEqual([vm.pid]);
      expect(await snapshotFiles([disk]), damage).toEqual(labels);
      // Once the administrator puts the file back, the next helper carries on.
      await writeFile(file, good);
    }
    const fixed = rig.host.startHelper(helperEnv(0));
    await fixed.request('forceOff', { vm: 'damaged' });
    await fixed.close();
    expect(await checkInvariants(rig.host, [{ vmId: '0/damaged', path: disk, original: ORIGINAL_LABEL }])).toEqual([]);
  });
});
