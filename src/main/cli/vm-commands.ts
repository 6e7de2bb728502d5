import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { HelperClient, resolveHelperLaunch } from '../helper-client';
import { loadPolicyProfile } from '../selinux-files';
import type { SeclabelDefinition, VmDefinitionInput } from '../vm-definition';
import { importLibvirtXml, probeDiskImage } from '../vm-import';
import { VmService } from '../vm-service';
import { defaultVmDirectory, VmStore } from '../vm-store';
import { runConsole } from './console-command';
import { CliError, EXIT } from './exit-codes';
import { textTable } from './text-table';

/**
 * The VM commands: definitions in the user's store, everything privileged through one root helper per
 * invocation (started on first need, closed at the end; VMs keep running).
 */
class CliSession {
  private client: HelperClient | undefined;
  readonly service = new VmService(new VmStore(defaultVmDirectory()), () => this.helper(), () => loadPolicyProfile());

  helper(): HelperClient {
    this.client ??= HelperClient.start(resolveHelperLaunch());
    return this.client;
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}

async function withSession<T>(fn: (session: CliSession) => Promise<T>): Promise<T> {
  const session = new CliSession();
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** `dynamic`, `none`, or `static:LABEL[:norelabel]` (LABEL itself contains colons). */
export function parseSeclabelOption(text: string): SeclabelDefinition {
  if (text === 'dynamic') return { mode: 'dynamic' };
  if (text === 'none') return { mode: 'none' };
  if (text.startsWith('static:')) {
    const rest = text.slice('static:'.length);
    const norelabel = rest.endsWith(':norelabel');
    const label = norelabel ? rest.slice(0, -':norelabel'.length) : rest;
    if (label === '') throw new CliError('--seclabel static: needs a label, e.g. static:system_u:system_r:svirt_t:s0:c1,c2');
    return { mode: 'static', label, relabel: !norelabel };
  }
  throw new CliError(`--seclabel must be dynamic, none or static:LABEL[:norelabel], not "${text}"`);
}

/** `PATH[:private|:shared|:readonly]`. */
export function parseDiskOption(text: string): { path: string; class: 'private' | 'shared' | 'readonly' } {
  const m = /^(.*):(private|shared|readonly)$/.exec(text);
  return m ? { path: m[1] as string, class: m[2] as 'private' | 'shared' | 'readonly' } : { path: text, class: 'private' };
}

const positiveInt = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new CliError(`${name} must be a positive integer, not "${value}"`);
  return Number(value);
};

function printJsonOrTable(json: boolean | undefined, value: unknown, rows: string[][]): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${textTable(rows)}\n`);
}

export function registerVmCommands(program: Command): void {
  program
    .command('define')
    .description('define a VM that boots a kernel and initrd, with disks and a security label')
    .requiredOption('--name <name>', 'VM name (letters, digits, . _ -)')
    .requiredOption('--kernel <path>', 'kernel image')
    .option('--initrd <path>', 'initial ramdisk')
    .option('--append <cmdline>', 'kernel command line')
    .option('--disk <path[:shared|:readonly]>', 'a disk; repeat for more (private unless :shared or :readonly)', collect, [] as string[])
    .option('--memory <MiB>', 'memory in MiB', positiveInt('--memory'), 512)
    .option('--vcpus <n>', 'virtual CPUs', positiveInt('--vcpus'), 1)
    .option('--seclabel <mode>', 'dynamic | none | static:LABEL[:norelabel]', 'dynamic')
    .action(async (opts: { name: string; kernel: string; initrd?: string; append?: string; disk: string[]; memory: number; vcpus: number; seclabel: string }) => {
      const disks = await Promise.all(opts.disk.map(async (text) => {
        const { path, class: cls } = parseDiskOption(text);
        const probed = await probeDiskImage(path).catch((e: Error) => { throw new CliError(e.message); });
        return { path: probed.path, format: probed.format, class: cls, relabel: true };
      }));
      const input: VmDefinitionInput = {
        name: opts.name,
        memoryMiB: opts.memory,
        vcpus: opts.vcpus,
        boot: { kind: 'kernel', kernel: opts.kernel, ...(opts.initrd ? { initrd: opts.initrd } : {}), ...(opts.append ? { cmdline: opts.append } : {}) },
        disks,
        seclabel: parseSeclabelOption(opts.seclabel),
      };
      const store = new VmStore(defaultVmDirectory());
      const saved = await store.define(input).catch((e: Error) => { throw new CliError(e.message); });
      process.stdout.write(`defined ${saved.name}\n`);
    });

  program
    .command('import-xml')
    .description('define a VM from a libvirt domain XML file')
    .argument('<file>', 'domain XML')
    .option('--name <name>', 'a name other than the domain\'s')
    .action(async (file: string, opts: { name?: string }) => {
      const xml = await readFile(file, 'utf8').catch((e: Error) => { throw new CliError(`cannot read ${file}: ${e.message}`); });
      let imported;
      try {
        imported = importLibvirtXml(xml, opts.name ? { name: opts.name } : {});
      } catch (e) {
        throw new CliError((e as Error).message);
      }
      const saved = await new VmStore(defaultVmDirectory()).define(imported.definition).catch((e: Error) => { throw new CliError(e.message); });
      for (const note of imported.notes) process.stderr.write(`note: ${note}\n`);
      process.stdout.write(`defined ${saved.name}\n`);
    });

  program
    .command('list')
    .description('list VMs: state, qemu pid, process label, image label, confined or not')
    .option('--json', 'JSON output')
    .action((opts: { json?: boolean }) => withSession(async ({ service }) => {
      const { vms, problems } = await service.list();
      for (const p of problems) process.stderr.write(`svirt: skipped ${p.file}: ${p.message}\n`);
      const rows = [['NAME', 'STATE', 'PID', 'PROCESS LABEL', 'IMAGE LABEL', 'CONFINED']];
      for (const vm of vms) {
        rows.push([vm.name, vm.state, vm.pid === null ? '-' : String(vm.pid), vm.processLabel ?? '-', vm.imageLabel ?? '-',
          vm.confined ? 'yes' : `no${vm.state === 'stopped' ? '' : ` (${vm.notConfinedReason ?? ''})`}`]);
      }
      printJsonOrTable(opts.json, vms, rows);
    }));

  program
    .command('start')
    .description('start a VM confined (allocates its MCS pair and labels its files)')
    .argument('<name>')
    .option('--allow-unconfined', 'run qemu even where it cannot be confined (SELinux disabled); files are labeled anyway')
    .action((name: string, opts: { allowUnconfined?: boolean }) => withSession(async ({ service }) => {
      const vm = await service.start(name, { allowUnconfined: Boolean(opts.allowUnconfined) });
      process.stdout.write(`started ${vm.name}: pid ${vm.pid}, ${vm.processLabel ?? 'unconfined'}${vm.confined ? '' : ` (${vm.notConfinedReason})`}\n`);
    }));

  program
    .command('stop')
    .description('shut a VM down (ACPI power button, forced off after a timeout); restores its labels')
    .argument('<name>')
    .option('--force', 'power off at once')
    .action((name: string, opts: { force?: boolean }) => withSession(async ({ service }) => {
      const result = await service.stop(name, { force: Boolean(opts.force) });
      process.stdout.write(`stopped ${name}${result.forced ? ' (forced)' : ''}; ${result.restoredFiles} file label(s) restored\n`);
    }));

  program
    .command('undefine')
    .description('delete a stopped VM\'s definition (its disk images are kept)')
    .argument('<name>')
    .action((name: string) => withSession(async ({ service }) => {
      await service.undefine(name);
      process.stdout.write(`undefined ${name}\n`);
    }));

  program
    .command('labels')
    .description('each file a VM uses: the label it should have, the label on disk, and whether they match')
    .argument('<name>')
    .option('--json', 'JSON output')
    .action((name: string, opts: { json?: boolean }) => withSession(async ({ service }) => {
      const labels = await service.labels(name);
      const rows = [['PATH', 'CLASS', 'EXPECTED', 'ON DISK', 'MATCH']];
      for (const l of labels) {
        rows.push([l.path, l.class, l.expectedLabel ?? `(none; at start: ${l.plannedLabel ?? 'left alone'})`, l.actualLabel ?? '(none)',
          l.match === null ? '-' : l.match ? 'yes' : 'NO']);
      }
      printJsonOrTable(opts.json, labels, rows);
      if (labels.some((l) => l.match === false)) process.exitCode = EXIT.negative;
    }));

  program
    .command('relabel')
    .description('label a file or tree as shared read-write or read-only VM content, or restore its original labels')
    .argument('<path>')
    .addOption(new Option('--shared', 'shared read/write image (svirt_image_t:s0)').conflicts(['readonly', 'restore']))
    .addOption(new Option('--readonly', 'shared read-only content (virt_content_t:s0)').conflicts(['restore']))
    .option('--restore', 'put back the labels it had before')
    .action((path: string, opts: { shared?: boolean; readonly?: boolean; restore?: boolean }) => withSession(async (session) => {
      const mode = opts.shared ? 'shared' : opts.readonly ? 'readonly' : opts.restore ? 'restore' : undefined;
      if (!mode) throw new CliError('say --shared, --readonly or --restore');
      session.helper().on('event', (event: string, data: { done: number; total: number }) => {
        if (event === 'relabel-progress' && process.stderr.isTTY) process.stderr.write(data.total > 0 ? `\r${data.done}/${data.total} files` : `\r${data.done} files`);
      });
      const result = await session.service.relabel(path, mode);
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stdout.write(`${JSON.stringify(result)}\n`);
    }));

  program
    .command('console')
    .description('the VM\'s serial console (interactive; Ctrl+] leaves), or scripted with --send/--expect')
    .argument('<name>')
    .option('--send <text>', 'type this line (a newline is added)')
    .option('--expect <regex>', 'exit 0 once the output matches, 1 on timeout')
    .option('--timeout <seconds>', 'for --expect', positiveInt('--timeout'), 30)
    .action((name: string, opts: { send?: string; expect?: string; timeout: number }) => withSession(async (session) => {
      process.exitCode = await runConsole(session.helper(), name, opts);
    }));
}
