import { mkdir, readFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { Argument, Command, Option } from 'commander';
import { HelperClient, resolveHelperLaunch } from '../helper-client';
import { loadPolicyProfile } from '../../security/selinux/selinux-files';
import { SELINUX_EXAMPLES } from '../../core/selinux/label-examples';
import { DISK_FORMATS, checkVmName, type DiskDefinition, type SeclabelDefinition, type VmDefinitionInput } from '../../core/vm-definition';
import { checkPortForwards, CLI_CHANGE_FIELDS, parsePortForward, readableIso, type VmChanges } from '../vm-changes';
import { NEW_VM_DEFAULTS } from '../../contracts/ipc-contract';
import { createDiskImage, defaultImageDirectory, DiskImageError, parseDiskSize } from '../disk-images';
import { importLibvirtXml, probeDiskImage } from '../vm-import';
import { checkBootFiles, VmService } from '../vm-service';
import { defaultVmDirectory, VmStore } from '../vm-store';
import { runConsole } from './console-command';
import { CliError, EXIT } from './exit-codes';
import { describeRelabel } from './relabel-summary';
import { textTable } from './text-table';
import { describeFileError } from '../../core/user-words';

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

export async function withSession<T>(fn: (session: CliSession) => Promise<T>): Promise<T> {
  const session = new CliSession();
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** `define --help`: what each kind of VM needs, since no single flag is required for all of them. */
const DEFINE_KINDS_HELP = `
What each kind of VM needs (besides --name, which every VM needs):
  kernel boot   --kernel FILE     required; --initrd, --append and --disk optional
  ISO install   --iso FILE        required; add --disk FILE or --disk-size SIZE to install onto
  disk boot     --disk FILE       required (no --kernel, no --iso); the VM boots from the first --disk
`;

/** `dynamic`, `none`, or `static:LABEL[:norelabel]` (LABEL itself contains colons). */
export function parseSeclabelOption(text: string): SeclabelDefinition {
  if (text === 'dynamic') return { mode: 'dynamic' };
  if (text === 'none') return { mode: 'none' };
  if (text.startsWith('static:')) {
    const rest = text.slice('static:'.length);
    const norelabel = rest.endsWith(':norelabel');
    const label = norelabel ? rest.slice(0, -':norelabel'.length) : rest;
    if (label === '') throw new CliError(`--seclabel static: needs a label, e.g. static:${SELINUX_EXAMPLES.processLabel}`);
    return { mode: 'static', label, relabel: !norelabel };
  }
  throw new CliError(`--seclabel must be dynamic, none or static:LABEL[:norelabel], not "${text}"`);
}

/**
 * `PATH[:private|:shared|:readonly]`. A colon in the file name starts a suffix, and one that is not of
 * these is an error rather than part of the path (`x.img:rw` would otherwise be looked for as a file of
 * that name). A file whose name has a colon is given with its class spelled out: `a:b.img:private`.
 */
export function parseDiskOption(text: string, flag = '--disk'): { path: string; class: 'private' | 'shared' | 'readonly' } {
  const m = /^(.*):(private|shared|readonly)$/.exec(text);
  if (m) return { path: m[1] as string, class: m[2] as 'private' | 'shared' | 'readonly' };
  const fileName = text.slice(text.lastIndexOf('/') + 1);
  const colon = fileName.lastIndexOf(':');
  if (colon >= 0) {
    throw new CliError(`${flag} ${text}: ":${fileName.slice(colon + 1)}" is not a disk suffix: use :private (the default), :shared or :readonly (for a file name with a colon, add :private)`);
  }
  return { path: text, class: 'private' };
}

const positiveInt = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new CliError(`${name} must be a positive integer, not "${value}"`);
  return Number(value);
};

/**
 * `--disk` values: relative paths are the user's, resolved against the current directory. A block device
 * (under /dev) is root's to open: the helper checks it as a start would (allowed for this user, unused by
 * the host), and the name stays as given (/dev/VG/LV outlives the dm-N it points to now).
 */
async function probeDiskOptions(texts: readonly string[], flag: string, helper: () => HelperClient): Promise<DiskDefinition[]> {
  return Promise.all(texts.map(async (text) => {
    const { path, class: cls } = parseDiskOption(text, flag);
    const absolute = nodePath.resolve(path);
    if (absolute.startsWith('/dev/')) {
      await helper().request('checkDevice', { path: absolute, class: cls }).catch((e: Error) => { throw new CliError(`${flag} ${text}: ${e.message}`); });
      return { path: absolute, format: 'raw' as const, class: cls, relabel: true };
    }
    // The probe's message names the file (made absolute), so the flag alone leads it.
    const probed = await probeDiskImage(absolute).catch((e: Error) => { throw new CliError(`${flag}: ${e.message}`); });
    return { path: probed.path, format: probed.format, class: cls, relabel: true };
  }));
}

/** `--disk-size`: a new private qcow2 disk named after the VM in the user's image directory. */
async function createVmDisk(vmName: string, sizeText: string): Promise<DiskDefinition> {
  const sizeBytes = cliValue(() => parseDiskSize(sizeText, '--disk-size'));
  const dir = defaultImageDirectory();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const created = await createDiskImage({ path: nodePath.join(dir, `${cliValue(() => checkVmName(vmName))}.qcow2`), format: 'qcow2', sizeBytes })
    .catch((e: Error) => { throw new CliError(`--disk-size: ${e.message}`); });
  process.stderr.write(`created ${created.path} (${sizeText})\n`);
  return { path: created.path, format: 'qcow2', class: 'private', relabel: true };
}

/** Runs a parser of user input, turning its error into a usage error (exit 2). */
function cliValue<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

interface DefineOptions {
  name: string; kernel?: string; initrd?: string; append?: string; iso?: string; disk: string[]; diskSize?: string; memory: number; vcpus: number;
  firmware: 'bios' | 'uefi'; network: 'user' | 'none'; forward: string[]; display?: boolean; seclabel: string;
}

interface EditOptions {
  name?: string; memory?: number; vcpus?: number; addDisk: string[]; removeDisk: string[];
  iso?: string | false; network?: 'user' | 'none'; forward: string[]; forwards: boolean; display?: boolean; firmware?: 'bios' | 'uefi';
}

/** `--iso`: relative to the current directory, checked now rather than at the next start. */
function cliIso(text: string): Promise<string> {
  return readableIso(nodePath.resolve(text), '--iso').catch((e: Error) => { throw new CliError(e.message); });
}

function printJsonOrTable(json: boolean | undefined, value: unknown, rows: string[][]): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${textTable(rows)}\n`);
}

export function registerVmCommands(program: Command): void {
  program
    .command('define')
    .description('define a VM that boots a kernel, an installer ISO or its first disk, with disks, network, display, firmware and a security label')
    .requiredOption('--name <name>', '(required) VM name (letters, digits, . _ -)')
    .option('--kernel <path>', 'boot this kernel directly (one of --kernel, --iso or --disk is required)')
    .option('--initrd <path>', 'initial ramdisk (with --kernel)')
    .option('--append <cmdline>', 'kernel command line (with --kernel)')
    .addOption(new Option('--iso <file>', 'boot an installer ISO from a CD-ROM, then the disks; gets a display unless --no-display').conflicts('kernel'))
    .option('--disk <path[:shared|:readonly]>', 'a disk; repeat for more (private unless :shared or :readonly); without --kernel or --iso the first one boots', collect, [] as string[])
    .option('--disk-size <size>', 'also create a new qcow2 disk of this size (20G, 512M) in ~/.local/share/svirt-manager/images')
    .option('--memory <MiB>', 'memory in MiB', positiveInt('--memory'), 512)
    .option('--vcpus <n>', 'virtual CPUs', positiveInt('--vcpus'), 1)
    .addOption(new Option('--firmware <kind>', 'bios: SeaBIOS; uefi: OVMF with a variable store of its own').choices(['bios', 'uefi']).default('bios'))
    .addOption(new Option('--network <mode>', 'user: user-mode networking (NAT); none: no network card').choices(['user', 'none']).default(NEW_VM_DEFAULTS.network.mode))
    .option('--forward <HOST:GUEST>', 'forward a host loopback port (1024-65535) to a guest TCP port; repeat for more', collect, [] as string[])
    .option('--display', 'a graphical display (VNC); the default with --iso')
    .option('--no-display', 'serial console only; the default without --iso')
    .option('--seclabel <mode>', 'dynamic | none | static:LABEL[:norelabel]', 'dynamic')
    .addHelpText('after', DEFINE_KINDS_HELP)
    .action((opts: DefineOptions) => withSession(async (session) => {
      const { service } = session;
      const forwards = opts.forward.map((f) => cliValue(() => parsePortForward(f, '--forward')));
      cliValue(() => checkPortForwards(forwards, '--forward'));
      if (forwards.length > 0 && opts.network === 'none') throw new CliError('--forward needs user-mode networking, not --network none');
      if (opts.kernel === undefined && (opts.initrd !== undefined || opts.append !== undefined)) throw new CliError('--initrd and --append go with --kernel');
      const disks = await probeDiskOptions(opts.disk, '--disk', () => session.helper());
      if (opts.kernel === undefined && opts.iso === undefined && disks.length === 0) {
        throw new CliError('nothing to boot: give --kernel FILE, --iso FILE or --disk FILE');
      }
      const iso = opts.iso === undefined ? undefined : await cliIso(opts.iso);
      const seclabel = parseSeclabelOption(opts.seclabel);
      // Relative paths are the user's, resolved against the current directory (the helper takes absolute ones only).
      const boot: VmDefinitionInput['boot'] = opts.kernel !== undefined
        ? { kind: 'kernel', kernel: nodePath.resolve(opts.kernel), ...(opts.initrd ? { initrd: nodePath.resolve(opts.initrd) } : {}), ...(opts.append ? { cmdline: opts.append } : {}) }
        : iso !== undefined ? { kind: 'iso', iso } : { kind: 'disk' };
      const input: VmDefinitionInput = {
        name: opts.name,
        memoryMiB: opts.memory,
        vcpus: opts.vcpus,
        boot,
        disks,
        seclabel,
        network: opts.network === 'none' ? { mode: 'none' } : { mode: 'user', ...(forwards.length === 0 ? {} : { portForwards: forwards }) },
        firmware: opts.firmware === 'uefi' ? { kind: 'uefi', nvram: '' } : { kind: 'bios' },
        display: (opts.display ?? iso !== undefined) ? 'vnc' : 'none',
      };
      // Before a new disk is created: a definition that fails on its kernel leaves no image behind.
      await checkBootFiles(input, `defining "${opts.name}"`);
      if (opts.diskSize !== undefined) disks.push(await createVmDisk(opts.name, opts.diskSize));
      const saved = await service.define(input, CLI_CHANGE_FIELDS).catch((e: Error) => { throw new CliError(e.message); });
      process.stdout.write(`defined ${saved.name}\n`);
    }));

  program
    .command('import-xml')
    .description('define a VM from a libvirt domain XML file; says what it changed and which devices it dropped')
    .argument('<file>', 'domain XML')
    .option('--name <name>', 'a name other than the domain\'s')
    .option('--json', 'print {defined, notes, dropped} as JSON (dropped devices are also on stderr)')
    .action((file: string, opts: { name?: string; json?: boolean }) => withSession(async ({ service }) => {
      const xml = await readFile(file, 'utf8').catch((e: unknown) => { throw new CliError(describeFileError(file, e)); });
      let imported;
      try {
        imported = importLibvirtXml(xml, opts.name ? { name: opts.name } : {});
      } catch (e) {
        throw new CliError((e as Error).message);
      }
      const saved = await service.define(imported.definition).catch((e: Error) => { throw new CliError(e.message); });
      for (const note of imported.notes) process.stderr.write(`note: ${note}\n`);
      for (const d of imported.dropped) process.stderr.write(`dropped: ${d.device}: ${d.reason}\n`);
      process.stdout.write(opts.json
        ? `${JSON.stringify({ defined: saved.name, notes: imported.notes, dropped: imported.dropped }, null, 2)}\n`
        : `defined ${saved.name}\n`);
    }));

  program
    .command('list')
    .description('list VMs: state, qemu pid, process label, image label, and how qemu is held: confined, permissive (labels applied, not enforced), unconfined-disabled or unconfined-none')
    .option('--json', 'JSON output')
    .action((opts: { json?: boolean }) => withSession(async (session) => {
      const { vms, problems } = await session.service.list();
      for (const p of problems) process.stderr.write(`svirt: skipped ${p.file}: ${p.message}\n`);
      // A running VM names the model that confines it; a stopped one the model its next start meets.
      const active = vms.some((vm) => vm.security === null) ? (await session.helper().request('status')).security : null;
      const rows = [['NAME', 'STATE', 'PID', 'PROCESS LABEL', 'IMAGE LABEL', 'CONFINEMENT', 'MODEL']];
      for (const vm of vms) {
        const model = vm.security?.modelName ?? (active ? `${active.modelName} (${active.state})` : '-');
        rows.push([vm.name, vm.state, vm.pid === null ? '-' : String(vm.pid), vm.processLabel ?? '-', vm.imageLabel ?? '-', vm.confinement ?? '-', model]);
      }
      if (vms.length === 0 && !opts.json) {
        process.stdout.write('no VMs yet: define one with `svirt define --name NAME --kernel FILE --disk FILE` (see `svirt define --help`), or `svirt import-xml domain.xml`\n');
        return;
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
      process.stdout.write(`started ${vm.name}: pid ${vm.pid}, ${vm.processLabel ?? 'no label'}, ${vm.confinement}${vm.notConfinedReason ? ` (${vm.notConfinedReason})` : ''}\n`);
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
        const notYet = l.plannedLabel === null ? '(none; left alone)' : l.freshPair ? `(none yet; ${l.plannedLabel} with a fresh pair at start)` : `(none; at start: ${l.plannedLabel})`;
        rows.push([l.path, l.class, l.expectedLabel ?? notYet, l.actualLabel ?? '(none)',
          l.match === null ? '-' : l.match ? 'yes' : 'NO']);
      }
      printJsonOrTable(opts.json, labels, rows);
      if (labels.some((l) => l.match === false)) process.exitCode = EXIT.negative;
    }));

  program
    .command('relabel')
    .description('label a file or tree as shared read-write or read-only VM content, or restore its original labels')
    .argument('<path>')
    .addOption(new Option('--shared', `shared read/write image (under SELinux: ${SELINUX_EXAMPLES.sharedImage})`).conflicts(['readonly', 'restore']))
    .addOption(new Option('--readonly', `shared read-only content (under SELinux: ${SELINUX_EXAMPLES.readonlyContent})`).conflicts(['restore']))
    .option('--restore', 'put back the labels it had before')
    .option('--json', 'print the helper\'s result as JSON instead of a sentence')
    .action((path: string, opts: { shared?: boolean; readonly?: boolean; restore?: boolean; json?: boolean }) => withSession(async (session) => {
      const mode = opts.shared ? 'shared' : opts.readonly ? 'readonly' : opts.restore ? 'restore' : undefined;
      if (!mode) throw new CliError('say --shared, --readonly or --restore');
      session.helper().on('event', (event: string, data: { done: number; total: number }) => {
        if (event === 'relabel-progress' && process.stderr.isTTY) process.stderr.write(data.total > 0 ? `\r${data.done}/${data.total} files` : `\r${data.done} files`);
      });
      const result = await session.service.relabel(path, mode);
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stdout.write(opts.json ? `${JSON.stringify(result)}\n` : `${describeRelabel(path, mode, result)}\n`);
    }));

  program
    .command('console')
    .description('the VM\'s serial console (interactive; Ctrl+] leaves), or scripted with --send/--expect')
    .argument('<name>')
    .option('--send <text>', 'type this line (a newline is added)')
    .option('--expect <regex>', 'exit 0 once the output matches, 1 on timeout')
    .option('--timeout <seconds>', 'for --expect', positiveInt('--timeout'), 30)
    .action((name: string, opts: { send?: string; expect?: string; timeout: number }) => withSession(async (session) => {
      process.exitCode = await session.service.onRunning(name, () => runConsole(session.helper(), name, opts));
    }));

  const disk = program.command('disk').description('disk images');
  disk
    .command('create')
    .description('create a disk image as you (qemu-img create): qcow2 or raw, or a qcow2 overlay over a backing image')
    .argument('<path>', 'the new image (relative to the current directory, or absolute); never overwritten')
    .option('--size <size>', 'size: 20G, 512M, 1.5GiB, or bytes with B; a bare number is MiB (an overlay defaults to its backing image\'s)')
    .addOption(new Option('--format <format>', 'image format').choices([...DISK_FORMATS]).default('qcow2'))
    .option('--backing <image>', 'a qcow2 overlay over this image, which stays read-only for the VM')
    .action(async (path: string, opts: { size?: string; format: 'raw' | 'qcow2'; backing?: string }) => {
      if (opts.size === undefined && opts.backing === undefined) throw new CliError('--size is required (except for an overlay with --backing)');
      const sizeBytes = opts.size === undefined ? undefined : cliValue(() => parseDiskSize(opts.size as string, '--size'));
      const created = await createDiskImage({
        path: nodePath.resolve(path), format: opts.format,
        ...(sizeBytes === undefined ? {} : { sizeBytes }),
        ...(opts.backing === undefined ? {} : { backing: nodePath.resolve(opts.backing) }),
      }).catch((e: Error) => { throw e instanceof DiskImageError ? new CliError(e.message) : e; });
      process.stdout.write(`created ${created.path} (${created.format}, ${created.sizeBytes} bytes)\n`);
    });

  for (const [action, description] of [['pause', 'pause a running VM (its vCPUs stop; QMP stop)'], ['resume', 'resume a paused VM (QMP cont)'], ['reboot', 'reset a running VM (QMP system_reset)']] as const) {
    program
      .command(action)
      .description(description)
      .argument('<name>')
      .action((name: string) => withSession(async ({ service }) => {
        const result = await service.control(name, action);
        process.stdout.write(`${name}: ${result.status}\n`);
      }));
  }

  program
    .command('snapshot')
    .description('internal snapshots of a VM\'s qcow2 disks: qemu-img while stopped, QMP while running (revert needs the VM stopped)')
    .argument('<name>', 'the VM')
    .addArgument(new Argument('<op>', 'what to do').choices(['list', 'take', 'revert', 'delete']))
    .argument('[snapshot]', 'the snapshot name (letters, digits, . _ -; starts with a letter)')
    .option('--json', 'JSON output')
    .action((name: string, op: 'list' | 'take' | 'revert' | 'delete', snapshot: string | undefined, opts: { json?: boolean }) => withSession(async ({ service }) => {
      if (op !== 'list' && snapshot === undefined) throw new CliError(`snapshot ${op} needs a snapshot name`);
      const result = await service.snapshot(name, op, snapshot).catch((e: Error) => { throw e instanceof DiskImageError ? new CliError(e.message) : e; });
      if (op !== 'list' && !opts.json) {
        process.stdout.write(`${op === 'take' ? 'took' : op === 'revert' ? 'reverted to' : 'deleted'} ${snapshot as string} on ${name} (${result.via})\n`);
        return;
      }
      const rows = [['DISK', 'SNAPSHOT', 'DATE', 'VM STATE']];
      for (const d of result.disks) for (const s of d.snapshots) rows.push([d.disk, s.name, s.date, String(s.vmStateBytes)]);
      printJsonOrTable(opts.json, result, rows);
    }));

  program
    .command('clone')
    .description('copy a stopped VM: its private disks copied as you (cp --reflink=auto), shared and backing images shared; a static label becomes dynamic')
    .argument('<source>')
    .argument('<name>', 'the new VM')
    .option('--disk-path <path>', 'where each private disk\'s copy goes, in order (default: <name>-<n>.<format> beside the original)', collect, [] as string[])
    .action((source: string, name: string, opts: { diskPath: string[] }) => withSession(async ({ service }) => {
      const result = await service.clone(source, cliValue(() => checkVmName(name)), opts.diskPath.map((p) => nodePath.resolve(p)))
        .catch((e: Error) => { throw e instanceof DiskImageError ? new CliError(e.message) : e; });
      if (result.note) process.stderr.write(`note: ${result.note}\n`);
      process.stdout.write(`cloned ${source} as ${name}${result.copied.map((c) => `; ${c.from} -> ${c.to}`).join('')}\n`);
    }));

  program
    .command('edit')
    .description('change a stopped VM: name, memory, vCPUs, disks, installer ISO, network and port forwards, display, firmware')
    .argument('<name>')
    .option('--name <new>', 'rename it')
    .option('--memory <MiB>', 'memory in MiB', positiveInt('--memory'))
    .option('--vcpus <n>', 'virtual CPUs', positiveInt('--vcpus'))
    .option('--add-disk <path[:shared|:readonly]>', 'attach an existing image; repeat for more', collect, [] as string[])
    .option('--remove-disk <path>', 'detach an image (the file is kept); repeat for more', collect, [] as string[])
    .option('--iso <file>', 'attach an installer ISO as a CD-ROM, booted before the disks (replaces one attached before)')
    .option('--no-iso', 'detach the installer ISO; the VM boots from its first disk')
    .addOption(new Option('--network <mode>', 'user: user-mode networking (NAT); none: no network card').choices(['user', 'none']))
    .option('--forward <HOST:GUEST>', 'add a forward from a host loopback port (1024-65535) to a guest TCP port; repeat for more', collect, [] as string[])
    .option('--no-forwards', 'drop the port forwards it has (with --forward: replace them)')
    .option('--display', 'give it a graphical display (VNC)')
    .option('--no-display', 'serial console only')
    .addOption(new Option('--firmware <kind>', 'bios: SeaBIOS; uefi: OVMF with its own variable store (bios deletes the store)').choices(['bios', 'uefi']))
    .action((name: string, opts: EditOptions) => withSession(async (session) => {
      const { service } = session;
      const current = await service.store.get(name);
      const added = opts.forward.map((f) => cliValue(() => parsePortForward(f, '--forward')));
      const kept = opts.forwards === false || current.network?.mode !== 'user' ? [] : current.network.portForwards ?? [];
      const changes: VmChanges = {
        ...(opts.name === undefined ? {} : { name: opts.name }),
        ...(opts.memory === undefined ? {} : { memoryMiB: opts.memory }),
        ...(opts.vcpus === undefined ? {} : { vcpus: opts.vcpus }),
        removeDisks: opts.removeDisk.map((p) => nodePath.resolve(p)),
        addDisks: await probeDiskOptions(opts.addDisk, '--add-disk', () => session.helper()),
        ...(opts.iso === undefined ? {} : { iso: opts.iso === false ? null : await cliIso(opts.iso) }),
        ...(opts.network === undefined ? {} : { network: opts.network }),
        ...(added.length === 0 && opts.forwards !== false ? {} : { portForwards: [...kept, ...added] }),
        ...(opts.display === undefined ? {} : { display: opts.display }),
        ...(opts.firmware === undefined ? {} : { firmware: opts.firmware }),
      };
      const saved = await service.edit(name, changes, CLI_CHANGE_FIELDS).catch((e: Error) => { throw new CliError(e.message); });
      process.stdout.write(`edited ${saved.name}\n`);
    }));
}
