import { Ajv, type ErrorObject } from 'ajv';
import { staticLabelProblem } from './selinux/context';
import type { Accel, BackingStoreSpec, CharDeviceSpec, DiskSpec, SeclabelSpec, VmSpec } from './vm-spec';
import { checkPathSyntax } from './path-rules';

/**
 * A VM definition as the user's VM store keeps it: one JSON document per VM, validated by a JSON Schema
 * (shape) and by semantic checks (paths, SELinux contexts, consistency) on every read and write. The
 * label-relevant parts reuse the VmSpec types so that a definition converts to a VmSpec without mapping.
 */

export const VM_DEFINITION_VERSION = 1;

export type DiskClass = DiskSpec['class'];
export type DiskFormat = NonNullable<DiskSpec['format']>;

/** A disk as stored: unlike DiskSpec, format and relabel are always spelled out. */
export type DiskDefinition = Required<Pick<DiskSpec, 'path' | 'format' | 'class' | 'relabel'>> & Pick<DiskSpec, 'label'>;

export type BootDefinition =
  | { readonly kind: 'kernel'; readonly kernel: string; readonly initrd?: string; readonly dtb?: string; readonly cmdline?: string }
  /** Boots from the first disk. */
  | { readonly kind: 'disk' }
  /** Boots from a CD-ROM image, which is read-only content. */
  | { readonly kind: 'iso'; readonly iso: string };

export type BootKind = BootDefinition['kind'];

/** A host loopback port that reaches a guest TCP port through user-mode networking's NAT. */
export interface PortForward {
  readonly hostPort: number;
  readonly guestPort: number;
}

/**
 * `user`: qemu's user-mode networking (slirp) behind a virtio NIC: the guest gets 10.0.2.15 by DHCP and
 * reaches the host's loopback through 10.0.2.2, with no privilege and no host interface. `none`: no NIC.
 * An absent network means none (definitions written before networks existed had no NIC).
 */
export type NetworkDefinition =
  | { readonly mode: 'user'; readonly portForwards?: readonly PortForward[] }
  | { readonly mode: 'none' };

/**
 * `bios`: SeaBIOS (absent means bios). `uefi`: OVMF; `nvram` is this VM's own copy of the variable store
 * template, a user-owned file qemu writes (labeled as a private image while the VM runs, like libvirt's nvram).
 */
export type FirmwareDefinition = { readonly kind: 'bios' } | { readonly kind: 'uefi'; readonly nvram: string };

/** `vnc`: a graphical console (VGA, served over VNC to the helper's relay). Absent means none (serial only). */
export type DisplayDefinition = 'vnc' | 'none';

/** The stored seclabel is VmSpec's own. */
export type SeclabelDefinition = SeclabelSpec;

export interface VmDefinition {
  readonly version: typeof VM_DEFINITION_VERSION;
  readonly name: string;
  readonly memoryMiB: number;
  readonly vcpus: number;
  readonly boot: BootDefinition;
  readonly disks: readonly DiskDefinition[];
  readonly seclabel: SeclabelDefinition;
  /** A host file that receives the guest's serial output. */
  readonly serialLog?: string;
  readonly network?: NetworkDefinition;
  readonly firmware?: FirmwareDefinition;
  readonly display?: DisplayDefinition;
  /** ISO 8601, UTC. */
  readonly createdAt: string;
}

/** What a caller supplies; the store stamps version and createdAt. */
export type VmDefinitionInput = Omit<VmDefinition, 'version' | 'createdAt'>;

// Runtime lists for the schema, checked against the VmSpec types so that the two cannot drift apart.
type ListsAll<T, L extends readonly T[]> = [Exclude<T, L[number]>] extends [never] ? true : never;
export const DISK_CLASSES = ['private', 'shared', 'readonly'] as const satisfies readonly DiskClass[];
// Only what VmSpec (and so the launcher) knows; other formats are converted with qemu-img first.
export const DISK_FORMATS = ['raw', 'qcow2'] as const satisfies readonly DiskFormat[];
void (true satisfies ListsAll<DiskClass, typeof DISK_CLASSES>);
void (true satisfies ListsAll<DiskFormat, typeof DISK_FORMATS>);

export const VM_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$';
/** A snapshot name: starts with a letter (qemu also finds snapshots by numeric id), at most 64 characters. */
export const SNAPSHOT_NAME_PATTERN = '^[A-Za-z][A-Za-z0-9._-]{0,63}$';
export const VM_NAME_MAX_LENGTH = 64;
export const MEMORY_MIB_RANGE = { min: 16, max: 1_048_576 } as const;
export const VCPU_RANGE = { min: 1, max: 512 } as const;
/** qemu runs unprivileged, so it can only listen on unprivileged host ports. */
export const HOST_PORT_RANGE = { min: 1024, max: 65535 } as const;
export const GUEST_PORT_RANGE = { min: 1, max: 65535 } as const;

// PATH_MAX; the semantic check below decides what an acceptable path is.
const pathSchema = { type: 'string', minLength: 1, maxLength: 4096 } as const;
const contextSchema = { type: 'string', minLength: 1, maxLength: 1024 } as const;

const nameSchema = {
  type: 'string',
  minLength: 1,
  maxLength: VM_NAME_MAX_LENGTH,
  pattern: VM_NAME_PATTERN,
  description: 'must start with a letter or digit and contain only letters, digits, ".", "_" and "-"',
} as const;

const diskSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path', 'format', 'class', 'relabel'],
  properties: {
    path: pathSchema,
    format: { type: 'string', enum: DISK_FORMATS },
    class: { type: 'string', enum: DISK_CLASSES },
    relabel: { type: 'boolean' },
    label: contextSchema,
  },
} as const;

const bootSchema = {
  type: 'object',
  required: ['kind'],
  discriminator: { propertyName: 'kind' },
  oneOf: [
    {
      additionalProperties: false,
      required: ['kind', 'kernel'],
      properties: {
        kind: { const: 'kernel' },
        kernel: pathSchema,
        initrd: pathSchema,
        dtb: pathSchema,
        // Linux's largest COMMAND_LINE_SIZE (arm64, riscv).
        cmdline: { type: 'string', maxLength: 4096 },
      },
    },
    { additionalProperties: false, required: ['kind'], properties: { kind: { const: 'disk' } } },
    { additionalProperties: false, required: ['kind', 'iso'], properties: { kind: { const: 'iso' }, iso: pathSchema } },
  ],
} as const;

const portSchema = (range: { min: number; max: number }) => ({ type: 'integer', minimum: range.min, maximum: range.max }) as const;

const networkSchema = {
  type: 'object',
  required: ['mode'],
  discriminator: { propertyName: 'mode' },
  oneOf: [
    {
      additionalProperties: false,
      required: ['mode'],
      properties: {
        mode: { const: 'user' },
        portForwards: {
          type: 'array',
          maxItems: 32,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['hostPort', 'guestPort'],
            properties: { hostPort: portSchema(HOST_PORT_RANGE), guestPort: portSchema(GUEST_PORT_RANGE) },
          },
        },
      },
    },
    { additionalProperties: false, required: ['mode'], properties: { mode: { const: 'none' } } },
  ],
} as const;

const firmwareSchema = {
  type: 'object',
  required: ['kind'],
  discriminator: { propertyName: 'kind' },
  oneOf: [
    { additionalProperties: false, required: ['kind'], properties: { kind: { const: 'bios' } } },
    { additionalProperties: false, required: ['kind', 'nvram'], properties: { kind: { const: 'uefi' }, nvram: pathSchema } },
  ],
} as const;

const seclabelSchema = {
  type: 'object',
  required: ['mode'],
  discriminator: { propertyName: 'mode' },
  oneOf: [
    { additionalProperties: false, required: ['mode'], properties: { mode: { const: 'dynamic' }, baseLabel: contextSchema } },
    {
      additionalProperties: false,
      required: ['mode', 'label', 'relabel'],
      properties: { mode: { const: 'static' }, label: contextSchema, relabel: { type: 'boolean' }, imageLabel: contextSchema },
    },
    { additionalProperties: false, required: ['mode'], properties: { mode: { const: 'none' } } },
  ],
} as const;

const definitionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'name', 'memoryMiB', 'vcpus', 'boot', 'disks', 'seclabel', 'createdAt'],
  properties: {
    version: { const: VM_DEFINITION_VERSION },
    name: nameSchema,
    memoryMiB: { type: 'integer', minimum: MEMORY_MIB_RANGE.min, maximum: MEMORY_MIB_RANGE.max },
    vcpus: { type: 'integer', minimum: VCPU_RANGE.min, maximum: VCPU_RANGE.max },
    boot: bootSchema,
    disks: { type: 'array', items: diskSchema, maxItems: 64 },
    seclabel: seclabelSchema,
    serialLog: pathSchema,
    network: networkSchema,
    firmware: firmwareSchema,
    display: { type: 'string', enum: ['vnc', 'none'] },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;

const ISO_UTC_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

// verbose: errors carry their schema, which the messages below quote (allowed values, pattern meaning).
const ajv = new Ajv({ allErrors: true, discriminator: true, verbose: true });
ajv.addFormat('date-time', (text: string) => ISO_UTC_TIMESTAMP.test(text) && !Number.isNaN(Date.parse(text)));
const validateShape = ajv.compile<VmDefinition>(definitionSchema);
const validateName = ajv.compile<string>(nameSchema);

export class VmDefinitionError extends Error {
  constructor(
    /** One line per problem, each naming its field (`disks[0].class …`). */
    readonly problems: readonly string[],
    /** The file or operation the definition came from. */
    readonly source?: string,
  ) {
    super(`${source === undefined ? '' : `${source}: `}invalid VM definition: ${problems.join('; ')}`);
    this.name = 'VmDefinitionError';
  }
}

/** `/disks/0/class` → `disks[0].class`. */
function fieldName(instancePath: string): string {
  if (instancePath === '') return 'the definition';
  return instancePath
    .slice(1)
    .split('/')
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((out, segment) => (/^\d+$/.test(segment) ? `${out}[${segment}]` : out === '' ? segment : `${out}.${segment}`), '');
}

const join = (parent: string, child: string) => (parent === 'the definition' ? child : `${parent}.${child}`);

function describeSchemaError(error: ErrorObject): string {
  const field = fieldName(error.instancePath);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return `${join(field, String(params.missingProperty))} is required`;
    case 'additionalProperties':
      return `${join(field, String(params.additionalProperty))} is not a known field`;
    case 'enum':
      return `${field} must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')} (found ${JSON.stringify(error.data)})`;
    case 'const':
      return `${field} must be ${JSON.stringify(params.allowedValue)} (found ${JSON.stringify(error.data)})`;
    case 'pattern': {
      const description = (error.parentSchema as { description?: string } | undefined)?.description;
      return `${field} ${description ?? `must match ${String(params.pattern)}`} (found ${JSON.stringify(error.data)})`;
    }
    case 'maximum':
      return `${field} must be at most ${String(params.limit)} (found ${JSON.stringify(error.data)})`;
    case 'minimum':
      return `${field} must be at least ${String(params.limit)} (found ${JSON.stringify(error.data)})`;
    case 'format':
      return `${field} must be an ISO 8601 UTC timestamp such as 2024-01-31T12:00:00.000Z (found ${JSON.stringify(error.data)})`;
    case 'discriminator': {
      const tag = String(params.tag);
      const branches = (error.parentSchema as { oneOf?: { properties: Record<string, { const?: unknown }> }[] } | undefined)?.oneOf ?? [];
      const allowed = branches.map((b) => String(b.properties[tag]?.const)).join(', ');
      return `${join(field, tag)} must be one of ${allowed} (found ${JSON.stringify(params.tagValue)})`;
    }
    default: {
      const found = typeof error.data === 'object' && error.data !== null ? '' : ` (found ${JSON.stringify(error.data)})`;
      return `${field} ${error.message ?? 'is invalid'}${found}`;
    }
  }
}

/** Checks a VM name without reading anything: it becomes a file name, so it must not be a path. */
export function checkVmName(name: unknown): string {
  if (!validateName(name)) throw new VmDefinitionError((validateName.errors ?? []).map((e) => describeSchemaError({ ...e, instancePath: '/name' })));
  return name;
}

function pathProblem(field: string, value: string | undefined): string[] {
  if (value === undefined) return [];
  try {
    checkPathSyntax(value);
    return [];
  } catch (e) {
    return [`${field}: ${(e as Error).message}`];
  }
}

function contextProblem(field: string, value: string | undefined, needsLevel = false): string[] {
  if (value === undefined) return [];
  const problem = staticLabelProblem(field, value, { needsLevel });
  return problem === undefined ? [] : [problem];
}

/** Checks that JSON Schema cannot express: path syntax, SELinux contexts, and consistency between fields. */
function semanticProblems(def: VmDefinition): string[] {
  const problems: string[] = [];
  const { boot, seclabel } = def;
  if (boot.kind === 'kernel') {
    problems.push(...pathProblem('boot.kernel', boot.kernel), ...pathProblem('boot.initrd', boot.initrd), ...pathProblem('boot.dtb', boot.dtb));
  }
  if (boot.kind === 'iso') problems.push(...pathProblem('boot.iso', boot.iso));
  if (boot.kind === 'disk' && def.disks.length === 0) problems.push('boot.kind is "disk" but disks is empty: there is nothing to boot from');
  problems.push(...pathProblem('serialLog', def.serialLog));

  if (seclabel.mode === 'dynamic') problems.push(...contextProblem('seclabel.baseLabel', seclabel.baseLabel));
  if (seclabel.mode === 'static') {
    problems.push(...contextProblem('seclabel.label', seclabel.label, true), ...contextProblem('seclabel.imageLabel', seclabel.imageLabel));
    if (seclabel.imageLabel !== undefined && !seclabel.relabel) {
      problems.push('seclabel.imageLabel is set but seclabel.relabel is false: nothing would be labeled with it');
    }
  }

  const seen = new Map<string, number>();
  def.disks.forEach((disk, i) => {
    const field = `disks[${i}]`;
    problems.push(...pathProblem(`${field}.path`, disk.path), ...contextProblem(`${field}.label`, disk.label));
    // libvirt refuses the same combination ("Cannot specify a label if relabelling is turned off").
    if (disk.label !== undefined && !disk.relabel) problems.push(`${field}.label is set but ${field}.relabel is false`);
    const first = seen.get(disk.path);
    if (first !== undefined) problems.push(`${field}.path is the same file as disks[${first}].path (${disk.path})`);
    else seen.set(disk.path, i);
  });
  if (boot.kind === 'iso' && seen.has(boot.iso)) problems.push(`boot.iso (${boot.iso}) is also listed as a disk: one file cannot be both`);

  const { firmware, network } = def;
  if (firmware?.kind === 'uefi') {
    problems.push(...pathProblem('firmware.nvram', firmware.nvram));
    if (seen.has(firmware.nvram) || (boot.kind === 'iso' && boot.iso === firmware.nvram)) {
      problems.push(`firmware.nvram (${firmware.nvram}) is also a disk or the ISO: the variable store needs its own file`);
    }
  }
  if (network?.mode === 'user') {
    const hostPorts = new Map<number, number>();
    network.portForwards?.forEach((f, i) => {
      const first = hostPorts.get(f.hostPort);
      if (first !== undefined) problems.push(`network.portForwards[${i}].hostPort ${f.hostPort} is already forwarded by network.portForwards[${first}]`);
      else hostPorts.set(f.hostPort, i);
    });
  }
  return problems;
}

/** Validates a parsed JSON value as a VM definition; every problem is reported, each naming its field. */
export function parseVmDefinition(value: unknown, source?: string): VmDefinition {
  if (!validateShape(value)) throw new VmDefinitionError((validateShape.errors ?? []).map(describeSchemaError), source);
  const problems = semanticProblems(value);
  if (problems.length > 0) throw new VmDefinitionError(problems, source);
  return value;
}

/** libvirt's guest device names: vda…vdz, then vdaa…, so messages name disks as libvirt users know them. */
function diskTarget(prefix: string, index: number): string {
  let suffix = '';
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) suffix = String.fromCharCode(97 + ((n - 1) % 26)) + suffix;
  return prefix + suffix;
}

/**
 * The label-relevant VmSpec of a definition, for the label planner and the launcher. `backingChains[i]`
 * is disk i's backing chain as read from its header (not stored: the image is the truth, and it changes
 * with snapshots and rebases).
 */
export function toVmSpec(def: VmDefinition, accel: Accel, backingChains: readonly (readonly BackingStoreSpec[] | undefined)[] = []): VmSpec {
  const { boot } = def;
  const disks: DiskSpec[] = def.disks.map((d, i) => {
    const chain = backingChains[i];
    return {
      path: d.path,
      target: diskTarget('vd', i),
      class: d.class,
      relabel: d.relabel,
      format: d.format,
      device: 'disk',
      ...(d.label === undefined ? {} : { label: d.label }),
      ...(chain === undefined || chain.length === 0 ? {} : { backingStore: chain }),
    };
  });
  // A CD-ROM is read-only content whatever the user's other disks are (libvirt: every cdrom is readonly).
  if (boot.kind === 'iso') disks.push({ path: boot.iso, class: 'readonly', relabel: true, format: 'raw', device: 'cdrom', target: diskTarget('sd', 0) });
  const charDevices: CharDeviceSpec[] = def.serialLog === undefined ? [] : [{ kind: 'file', path: def.serialLog, role: 'serial' }];
  const kernelBoot =
    boot.kind === 'kernel'
      ? {
          kernel: boot.kernel,
          ...(boot.initrd === undefined ? {} : { initrd: boot.initrd }),
          ...(boot.dtb === undefined ? {} : { dtb: boot.dtb }),
          ...(boot.cmdline === undefined ? {} : { cmdline: boot.cmdline }),
        }
      : {};
  return {
    name: def.name,
    accel,
    seclabel: def.seclabel,
    disks,
    ...kernelBoot,
    charDevices,
    ...(def.firmware?.kind === 'uefi' ? { nvram: def.firmware.nvram } : {}),
    memoryMiB: def.memoryMiB,
    vcpus: def.vcpus,
  };
}
