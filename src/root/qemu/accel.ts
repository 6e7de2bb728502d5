// Chooses KVM or TCG for qemu by running a real guest workload, not by looking at /dev/kvm alone.
//
// Why a workload: on nested-virtualisation hosts /dev/kvm opens and SeaBIOS even runs, but guest code
// runs at a few hundred KB/s of memory traffic, so a Linux kernel "hangs" in its decompressor for
// minutes, while TCG boots it in seconds. The probe firmware below enters long mode with paging (like a
// kernel) and copies 16 x 256 KiB byte by byte, printing a '.' to the debugcon port after each round,
// then exits qemu through isa-debug-exit. Real KVM finishes in milliseconds, TCG in ~0.15 s; a KVM that
// has not finished by the deadline is rejected, and the dots tell how far it got.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  /** Why this accelerator: the probe's verdict, in words for logs and the UI. */
  reason: string;
  /** qemu arguments selecting it (and a CPU model that works with it). */
  args: string[];
  /** Wall time the probe took. */
  probeMs: number;
}

export interface ProbeOptions {
  /** qemu binary (default qemu-system-x86_64 on PATH). */
  qemu?: string;
  /** KVM device node (default /dev/kvm). */
  kvmDevice?: string;
  /** How long a KVM candidate may take to finish the workload (default 2500 ms). */
  deadlineMs?: number;
}

/** TCG arguments: always available, the fallback. */
export const TCG_ARGS: readonly string[] = ['-accel', 'tcg'];

/** KVM candidates in order of preference; the first that passes the probe is used. */
export const KVM_CANDIDATES: readonly (readonly string[])[] = [
  ['-accel', 'kvm', '-cpu', 'host'],
  ['-accel', 'kvm'],
];

/** qemu exits with (value << 1) | 1 when the guest writes value to isa-debug-exit. */
const PROBE_EXIT_VALUE = 0x21;
export const PROBE_SUCCESS_EXIT = (PROBE_EXIT_VALUE << 1) | 1;
export const PROBE_ROUNDS = 16;

/*
 * Probe firmware, a 64 KiB -bios image (GNU as, `as --64; objcopy -O binary`):
 *   .code16  cli; lgdtl %cs:gdtr; cr0.PE=1; ljmpl $0x08,$pm32          (reset: cs base 0xffff0000)
 *   .code32  ds=es=ss=0x10; zero 0x1000-0x4fff; PML4[0]@0x1000->0x2000; PDPT[0]->0x3000, PDPT[3]->0x4000;
 *            PD[0]=0|0x83, PD[1]=0x200000|0x83, PD2[511]=0xffe00000|0x83 (this ROM); cr3=0x1000;
 *            cr4.PAE; EFER.LME (wrmsr 0xc0000080); cr0.PG; ljmp $0x18,$lm64
 *   .code64  r8=16 rounds { copy 256 KiB 0x100000->0x200000 byte-wise (al=[rsi]+cl); outb '.',0x402 }
 *            outb $0x21,0xf4; 1: hlt; jmp 1b
 *   gdt: null, 0x00cf9b000000ffff (code32), 0x00cf93000000ffff (data), 0x00af9b000000ffff (code64)
 *   at 0xfff0: jmp rel16 -> 0x0000
 */
const PROBE_CODE_HEX =
  'fa2e660f011610010f20c00c010f22c066ea1800ffff080066b810008ed88ec08ed031c0bf00100000b900100000fcf3abc7' +
  '050010000003200000c7050020000003300000c7051820000003400000c7050030000083000000c7050830000083002000c7' +
  '05f84f00008300e0ffb8001000000f22d80f20e083c8200f22e0b9800000c00f320d000100000f300f20c00d000000800f22' +
  'c0ea9e00ffff180066b810008ed88ec08ed041b81000000041b901000000be00001000bf00002000b9000004008a0600c888' +
  '0748ffc648ffc7ffc975f041ffc975dc66ba0204b02eee41ffc875ca66baf400b021eef4ebfd66900000000000000000ffff' +
  '0000009bcf00ffff00000093cf00ffff0000009baf001f00f000ffff';
const PROBE_RESET_HEX = 'e90d00';

/** The probe's -bios image: code at offset 0, the reset jump at 0xfff0 (x86 reset vector). */
export function probeFirmware(): Buffer {
  const image = Buffer.alloc(0x10000);
  Buffer.from(PROBE_CODE_HEX, 'hex').copy(image, 0);
  Buffer.from(PROBE_RESET_HEX, 'hex').copy(image, 0xfff0);
  return image;
}

/** Full argv (after the binary) for one probe run. Pure, for tests. */
export function probeArgv(accelArgs: readonly string[], firmwarePath: string): string[] {
  return [
    ...accelArgs,
    '-machine', 'q35',
    '-m', '16',
    '-display', 'none',
    '-nodefaults',
    '-no-user-config',
    '-bios', firmwarePath,
    // Progress dots arrive on qemu's stdout; the verdict is qemu's exit code.
    '-chardev', 'stdio,id=dbg',
    '-device', 'isa-debugcon,iobase=0x402,chardev=dbg',
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=4',
  ];
}

interface RunResult {
  ok: boolean;
  detail: string;
}

function runProbe(qemu: string, argv: string[], deadlineMs: number): { done: Promise<RunResult>; kill: () => void } {
  const child = spawn(qemu, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let dots = 0;
  let stderr = '';
  child.stdout.setEncoding('latin1').on('data', (d: string) => (dots += d.split('.').length - 1));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, deadlineMs);
  const done = new Promise<RunResult>((resolve) => {
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: `cannot run ${qemu}: ${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const err = stderr.trim().split('\n').filter((l) => !/^qemu-system[^:]*: terminating on signal/.test(l)).join('; ');
      if (code === PROBE_SUCCESS_EXIT && dots === PROBE_ROUNDS) resolve({ ok: true, detail: 'finished the workload' });
      else if (timedOut) resolve({ ok: false, detail: `did ${dots}/${PROBE_ROUNDS} rounds of the workload in ${deadlineMs} ms (too slow: nested KVM?)` });
      else resolve({ ok: false, detail: `qemu ended (${signal ?? `exit ${code}`}) after ${dots}/${PROBE_ROUNDS} rounds${err ? `: ${err}` : ''}` });
    });
  });
  return { done, kill: () => child.kill('SIGKILL') };
}

async function probe(opts: ProbeOptions): Promise<AccelChoice> {
  const t0 = Date.now();
  const qemu = opts.qemu ?? 'qemu-system-x86_64';
  const kvmDevice = opts.kvmDevice ?? '/dev/kvm';
  const deadlineMs = opts.deadlineMs ?? 2500;
  const tcg = (reason: string): AccelChoice => ({ accel: 'tcg', reason, args: [...TCG_ARGS], probeMs: Date.now() - t0 });

  try {
    const h = await fs.open(kvmDevice, 'r+');
    await h.close();
  } catch (e) {
    return tcg(`${kvmDevice} cannot be opened read-write (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'svirt-accel-'));
  try {
    const fw = path.join(dir, 'probe.bin');
    await fs.writeFile(fw, probeFirmware());
    // Candidates run at once (one core each at most), so a failing host costs one deadline, not two.
    const runs = KVM_CANDIDATES.map((args) => ({ args, ...runProbe(qemu, probeArgv(args, fw), deadlineMs) }));
    const results: RunResult[] = [];
    for (const [i, r] of runs.entries()) {
      const res = await r.done;
      results.push(res);
      if (res.ok) {
        for (const later of runs.slice(i + 1)) later.kill();
        await Promise.all(runs.slice(i + 1).map((l) => l.done));
        return { accel: 'kvm', reason: `KVM probe (${r.args.join(' ')}) ${res.detail}`, args: [...r.args], probeMs: Date.now() - t0 };
      }
    }
    return tcg(`KVM rejected: ${runs.map((r, i) => `[${r.args.join(' ')}] ${results[i]?.detail}`).join('; ')}`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const memo = new Map<string, Promise<AccelChoice>>();

/** KVM if it really runs guest code at speed here, else TCG with the reason. Memoized per process and options. */
export function probeAccelerator(opts: ProbeOptions = {}): Promise<AccelChoice> {
  const key = JSON.stringify([opts.qemu, opts.kvmDevice, opts.deadlineMs]);
  let p = memo.get(key);
  if (!p) {
    p = probe(opts);
    memo.set(key, p);
  }
  return p;
}

/** qemu arguments for an accelerator already chosen (TCG, or the first KVM candidate). */
export function accelArgs(accel: Accel): string[] {
  return accel === 'tcg' ? [...TCG_ARGS] : [...(KVM_CANDIDATES[0] ?? ['-accel', 'kvm'])];
}
