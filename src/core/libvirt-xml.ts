/**
 * Reads a libvirt domain XML (inactive or live) into a VmSpec: the parts libvirt's SELinux driver labels
 * (disks, kernel/initrd/dtb, file-backed character devices, the seclabel) plus name, memory and vCPUs.
 * Anything that would make qemu open host files this project cannot plan labels for is refused with an
 * error naming the element, rather than ignored: a silent gap would start a VM that the policy then denies.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { labelSyntaxProblem } from './selinux/context';
import type { CharDeviceKind, CharDeviceRole, CharDeviceSpec, DiskSpec, LiveLabels, SeclabelSpec, VmSpec } from './vm-spec';

export class LibvirtXmlError extends Error {
  constructor(readonly element: string, reason: string) {
    super(`${element}: ${reason}`);
    this.name = 'LibvirtXmlError';
  }
}

/** A parsed element: attributes under `@name`, children as arrays by tag name, text under `#text`. */
interface XmlElement {
  readonly [key: string]: string | XmlElement[] | undefined;
}

// Far above any real domain XML; keeps a mistaken path (a disk image) from being parsed as XML.
const MAX_XML_BYTES = 4 * 1024 * 1024;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  alwaysCreateTextNode: true,
  // Every element is an array, so "more than one" is always visible; attributes stay strings.
  isArray: (_name, _path, _leaf, isAttribute) => !isAttribute,
  parseTagValue: false,
  parseAttributeValue: false,
  // Attribute values are paths: spaces are significant. Element text is trimmed where read.
  trimValues: false,
  // No entity expansion at all: the five XML entities and character references are decoded below, and a
  // DOCTYPE (the only way to declare entities, internal or external) is refused before parsing.
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

const PREDEFINED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(where: string, text: string): string {
  return text.replace(/&([^;&\s]*);?/g, (whole, name: string) => {
    if (!whole.endsWith(';')) throw new LibvirtXmlError(where, `bare "&" in "${text}" (write &amp;)`);
    const predefined = PREDEFINED_ENTITIES[name];
    if (predefined !== undefined) return predefined;
    const numeric = /^#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}))$/.exec(name);
    if (numeric) {
      const code = numeric[1] !== undefined ? parseInt(numeric[1], 16) : Number(numeric[2]);
      if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
        throw new LibvirtXmlError(where, `character reference &${name}; is not a valid character`);
      }
      return String.fromCodePoint(code);
    }
    throw new LibvirtXmlError(where, `undefined entity &${name};`);
  });
}

/** One element and where it sits, so every error can name it. */
class Node {
  constructor(readonly element: XmlElement, readonly where: string) {}

  attr(name: string): string | undefined {
    const value = this.element[`@${name}`];
    return typeof value === 'string' ? decodeEntities(`${this.where} @${name}`, value) : undefined;
  }

  /** The element's own text, entity-decoded and trimmed. */
  text(): string {
    const value = this.element['#text'];
    return typeof value === 'string' ? decodeEntities(this.where, value).trim() : '';
  }

  all(tag: string): Node[] {
    const value = this.element[tag];
    if (!Array.isArray(value)) return [];
    return value.map((child, i) => new Node(child, `${this.where}/${tag}${value.length > 1 ? `[${i + 1}]` : ''}`));
  }

  /** At most one `tag` child. */
  optional(tag: string): Node | undefined {
    const found = this.all(tag);
    if (found.length > 1) throw new LibvirtXmlError(`${this.where}/${tag}`, `appears ${found.length} times; libvirt allows one`);
    return found[0];
  }

  has(tag: string): boolean {
    return this.optional(tag) !== undefined;
  }

  childTags(): string[] {
    return Object.keys(this.element).filter((k) => !k.startsWith('@') && k !== '#text');
  }

  /** Whether the element carries anything: an attribute, a child or text. */
  isEmpty(): boolean {
    return Object.keys(this.element).every((k) => k === '#text') && this.text() === '';
  }
}

/** libvirt's scaled integers: no suffix is KiB; `k`/`KiB` are 1024-based, `KB` 1000-based (case-insensitive). */
function scaleFactor(where: string, unit: string | undefined): bigint {
  if (unit === undefined || unit === '') return 1024n;
  const u = unit.toLowerCase();
  if (u === 'b' || u === 'bytes') return 1n;
  const power = 'kmgtpe'.indexOf(u[0] ?? '') + 1;
  if (power === 0) throw new LibvirtXmlError(where, `unknown unit "${unit}"`);
  const rest = u.slice(1);
  if (rest === '' || rest === 'ib') return 1024n ** BigInt(power);
  if (rest === 'b') return 1000n ** BigInt(power);
  throw new LibvirtXmlError(where, `unknown unit "${unit}"`);
}

function parseCount(where: string, text: string): bigint {
  if (!/^[0-9]+$/.test(text)) throw new LibvirtXmlError(where, `"${text}" is not a non-negative integer`);
  return BigInt(text);
}

/** A memory size in MiB, rounded up: qemu must get at least what the XML asks for. */
function memoryMiB(node: Node): number {
  const bytes = parseCount(node.where, node.text()) * scaleFactor(node.where, node.attr('unit'));
  const mib = (bytes + 1048575n) / 1048576n;
  if (mib > BigInt(Number.MAX_SAFE_INTEGER)) throw new LibvirtXmlError(node.where, 'is too large');
  return Number(mib);
}

function checkedLabel(where: string, text: string): string {
  if (text === '') throw new LibvirtXmlError(where, 'is empty');
  const problem = labelSyntaxProblem(text);
  if (problem !== undefined) throw new LibvirtXmlError(where, problem);
  return text;
}

function yesNo(node: Node, name: string): boolean | undefined {
  const value = node.attr(name);
  if (value === undefined) return undefined;
  if (value === 'yes') return true;
  if (value === 'no') return false;
  throw new LibvirtXmlError(`${node.where} @${name}`, `"${value}" is neither yes nor no`);
}

/** Only SELinux seclabels matter here; a missing model means the host's default driver, SELinux on these hosts. */
function selinuxSeclabel(parent: Node): Node | undefined {
  const relevant = parent.all('seclabel').filter((s) => {
    const model = s.attr('model');
    return model === undefined || model === 'selinux';
  });
  if (relevant.length > 1) {
    throw new LibvirtXmlError(`${parent.where}/seclabel`, 'more than one seclabel for the selinux model');
  }
  return relevant[0];
}

/** A device's own `<seclabel>`: relabel defaults to yes; a label with relabel='no' is contradictory (libvirt refuses it too). */
function deviceSeclabel(source: Node | undefined): { relabel?: boolean; label?: string } {
  const seclabel = source === undefined ? undefined : selinuxSeclabel(source);
  if (!seclabel) return {};
  const relabel = yesNo(seclabel, 'relabel') ?? true;
  const labelNode = seclabel.optional('label');
  if (labelNode && !relabel) throw new LibvirtXmlError(labelNode.where, "a label cannot be given with relabel='no'");
  return {
    ...(relabel ? {} : { relabel: false }),
    ...(labelNode ? { label: checkedLabel(labelNode.where, labelNode.text()) } : {}),
  };
}

function domainSeclabel(domain: Node): { seclabel: SeclabelSpec; live?: LiveLabels } {
  const node = selinuxSeclabel(domain);
  if (!node) return { seclabel: { mode: 'dynamic' } };
  const type = node.attr('type') ?? 'dynamic';
  if (type !== 'dynamic' && type !== 'static' && type !== 'none') {
    throw new LibvirtXmlError(`${node.where} @type`, `"${type}" is not dynamic, static or none`);
  }
  const relabel = yesNo(node, 'relabel') ?? type === 'dynamic';
  if (type === 'dynamic' && !relabel) throw new LibvirtXmlError(node.where, "a dynamic seclabel must relabel resources (relabel='no' is refused)");
  if (type === 'none') {
    if (relabel) throw new LibvirtXmlError(node.where, "relabel='yes' is not compatible with type='none'");
    return { seclabel: { mode: 'none' } };
  }
  const readLabel = (tag: string): string | undefined => {
    const child = node.optional(tag);
    return child === undefined ? undefined : checkedLabel(child.where, child.text());
  };
  const label = readLabel('label');
  const imageLabel = readLabel('imagelabel');
  if (type === 'static') {
    if (label === undefined) throw new LibvirtXmlError(node.where, "a static seclabel needs a <label>");
    return { seclabel: { mode: 'static', label, relabel, ...(relabel && imageLabel !== undefined ? { imageLabel } : {}) } };
  }
  const baseLabel = readLabel('baselabel');
  const seclabel: SeclabelSpec = { mode: 'dynamic', ...(baseLabel === undefined ? {} : { baseLabel }) };
  // A running domain's XML carries the label it was given: that pair stays with it.
  if (label === undefined) return { seclabel };
  return { seclabel, live: { label, ...(imageLabel === undefined ? {} : { imageLabel }) } };
}

const DISK_FORMATS = new Set(['raw', 'qcow2']);

function parseDisk(disk: Node): DiskSpec | undefined {
  const target = disk.optional('target')?.attr('dev');
  const where = target === undefined ? disk.where : `${disk.where} (target ${target})`;
  const type = disk.attr('type') ?? 'file';
  if (type !== 'file' && type !== 'block') {
    throw new LibvirtXmlError(where, `<disk type='${type}'> is not supported: only file and block disks are labeled`);
  }
  const device = disk.attr('device') ?? 'disk';
  if (device !== 'disk' && device !== 'cdrom') {
    throw new LibvirtXmlError(where, `<disk device='${device}'> is not supported: only disk and cdrom`);
  }
  if (disk.has('seclabel')) {
    throw new LibvirtXmlError(`${where}/seclabel`, 'a disk seclabel belongs inside <source>');
  }
  for (const tag of ['mirror', 'blockio_file']) {
    if (disk.has(tag)) throw new LibvirtXmlError(`${where}/${tag}`, 'is not supported: it opens files outside the plan');
  }
  const backing = disk.optional('backingStore');
  if (backing && !backing.isEmpty()) {
    throw new LibvirtXmlError(backing.where, 'backing chains are not supported: give each layer as its own disk or flatten the image');
  }
  const source = disk.optional('source');
  const path = source?.attr(type === 'file' ? 'file' : 'dev');
  if (path === undefined || path === '') {
    // An empty CD-ROM tray opens nothing.
    if (device === 'cdrom') return undefined;
    throw new LibvirtXmlError(where, `has no <source ${type === 'file' ? 'file' : 'dev'}=…>`);
  }
  const format = disk.optional('driver')?.attr('type');
  if (format !== undefined && !DISK_FORMATS.has(format)) {
    throw new LibvirtXmlError(`${where}/driver`, `format "${format}" is not supported: raw or qcow2`);
  }
  // libvirt: shareable wins over readonly (shared label), and every CD-ROM is read-only.
  const diskClass = disk.has('shareable') ? 'shared' : disk.has('readonly') || device === 'cdrom' ? 'readonly' : 'private';
  return {
    path,
    class: diskClass,
    ...deviceSeclabel(source),
    ...(target === undefined ? {} : { target }),
    device,
    ...(format === undefined ? {} : { format: format as 'raw' | 'qcow2' }),
    source: type,
  };
}

const FILE_CHARDEVS = new Set<CharDeviceKind>(['file', 'pipe', 'dev', 'unix']);
// Backends that open no host path: nothing to label.
const PATHLESS_CHARDEVS = new Set(['pty', 'null', 'vc', 'stdio', 'tcp', 'udp', 'spicevmc', 'spiceport', 'nmdm', 'qemu-vdagent', 'dbus']);

function parseCharDevice(node: Node, role: CharDeviceRole): CharDeviceSpec | undefined {
  const type = node.attr('type') ?? 'pty';
  if (node.has('log')) throw new LibvirtXmlError(`${node.where}/log`, 'is not supported: qemu would open the log file outside the plan');
  if (PATHLESS_CHARDEVS.has(type)) return undefined;
  if (!FILE_CHARDEVS.has(type as CharDeviceKind)) {
    throw new LibvirtXmlError(node.where, `<${role} type='${type}'> is not supported`);
  }
  const kind = type as CharDeviceKind;
  const source = node.optional('source');
  const path = source?.attr('path');
  if (path === undefined || path === '') {
    // libvirt invents the path of a unix channel without one; it is not known here and nothing is labeled.
    if (kind === 'unix') return undefined;
    throw new LibvirtXmlError(node.where, `<${role} type='${type}'> has no <source path=…>`);
  }
  return { kind, path, role, ...deviceSeclabel(source) };
}

// Top-level elements that carry no host file to label.
const IGNORED_DOMAIN_ELEMENTS = new Set([
  'uuid', 'genid', 'title', 'description', 'metadata', 'maxMemory', 'vcpus', 'iothreads', 'iothreadids',
  'defaultiothread', 'cputune', 'memtune', 'memoryBacking', 'numatune', 'blkiotune', 'resource', 'features',
  'cpu', 'clock', 'on_poweroff', 'on_reboot', 'on_crash', 'on_lockfailure', 'pm', 'perf', 'keywrap',
  'launchSecurity', 'throttlegroups', 'qemu:capabilities', 'qemu:deprecation',
]);
const HANDLED_DOMAIN_ELEMENTS = new Set(['name', 'memory', 'currentMemory', 'vcpu', 'os', 'devices', 'seclabel', 'sysinfo']);

const IGNORED_OS_ELEMENTS = new Set(['type', 'boot', 'bootmenu', 'smbios', 'bios', 'firmware', 'loader']);

// Devices that open no host file this plan would label (the loader and emulator binaries keep their own labels).
const IGNORED_DEVICES = new Set([
  'emulator', 'controller', 'interface', 'graphics', 'video', 'sound', 'audio', 'memballoon', 'rng', 'watchdog',
  'panic', 'hub', 'iommu', 'vsock', 'redirfilter', 'lease', 'crypto',
]);
const UNSUPPORTED_DEVICES: Record<string, string> = {
  hostdev: 'host device passthrough needs device labels this plan does not make',
  filesystem: 'shared directories need a tree relabel this plan does not make',
  tpm: 'a TPM needs its own device or socket labels',
  smartcard: 'a smartcard opens host files this plan does not label',
  shmem: 'shared memory opens host files this plan does not label',
  pstore: 'a pstore opens a host file this plan does not label',
  vhostuser: 'a vhost-user device opens a socket this plan does not label',
};
const CHAR_ROLES: readonly CharDeviceRole[] = ['serial', 'console', 'channel', 'parallel'];

function checkDevice(node: Node, tag: string): void {
  if (tag === 'input') {
    const type = node.attr('type');
    if (type === 'passthrough' || type === 'evdev') {
      throw new LibvirtXmlError(node.where, `<input type='${type}'> is not supported: it opens a host event device`);
    }
  } else if (tag === 'memory') {
    const model = node.attr('model');
    if (model !== 'dimm' && model !== 'virtio-mem') {
      throw new LibvirtXmlError(node.where, `<memory model='${model ?? ''}'> is not supported: it may open a host file`);
    }
  } else if (tag === 'redirdev') {
    const type = node.attr('type');
    if (type !== 'spicevmc' && type !== 'tcp') throw new LibvirtXmlError(node.where, `<redirdev type='${type ?? ''}'> is not supported`);
  }
}

function parseOs(os: Node | undefined): Pick<VmSpec, 'kernel' | 'initrd' | 'dtb' | 'cmdline'> {
  if (!os) return {};
  for (const tag of os.childTags()) {
    if (tag === 'nvram') throw new LibvirtXmlError(`${os.where}/nvram`, 'UEFI variable stores are not supported yet: qemu writes them and they need the image label');
    if (!IGNORED_OS_ELEMENTS.has(tag) && !['kernel', 'initrd', 'dtb', 'cmdline'].includes(tag)) {
      throw new LibvirtXmlError(`${os.where}/${tag}`, 'is not supported');
    }
  }
  const out: { kernel?: string; initrd?: string; dtb?: string; cmdline?: string } = {};
  for (const tag of ['kernel', 'initrd', 'dtb', 'cmdline'] as const) {
    const node = os.optional(tag);
    if (node === undefined) continue;
    const value = node.text();
    if (value === '' && tag !== 'cmdline') throw new LibvirtXmlError(node.where, 'is empty');
    out[tag] = value;
  }
  return out;
}

function checkSysinfo(domain: Node): void {
  for (const sysinfo of domain.all('sysinfo')) {
    for (const entry of sysinfo.all('entry')) {
      if (entry.attr('file') !== undefined) {
        throw new LibvirtXmlError(entry.where, 'fw_cfg entries from files are not supported: qemu would open the file outside the plan');
      }
    }
  }
}

function parseDevices(devices: Node | undefined): { disks: DiskSpec[]; charDevices: CharDeviceSpec[] } {
  const disks: DiskSpec[] = [];
  const charDevices: CharDeviceSpec[] = [];
  if (!devices) return { disks, charDevices };
  for (const tag of devices.childTags()) {
    const reason = UNSUPPORTED_DEVICES[tag];
    if (reason !== undefined) throw new LibvirtXmlError(`${devices.where}/${tag}`, `is not supported: ${reason}`);
    if (tag === 'disk' || IGNORED_DEVICES.has(tag) || (CHAR_ROLES as readonly string[]).includes(tag)) continue;
    if (tag === 'input' || tag === 'memory' || tag === 'redirdev') {
      for (const node of devices.all(tag)) checkDevice(node, tag);
      continue;
    }
    throw new LibvirtXmlError(`${devices.where}/${tag}`, 'is not a supported device');
  }
  for (const disk of devices.all('disk')) {
    const spec = parseDisk(disk);
    if (spec) disks.push(spec);
  }
  for (const role of CHAR_ROLES) {
    for (const node of devices.all(role)) {
      const spec = parseCharDevice(node, role);
      if (spec) charDevices.push(spec);
    }
  }
  return { disks, charDevices };
}

function parseRoot(xml: string): Node {
  if (Buffer.byteLength(xml, 'utf8') > MAX_XML_BYTES) throw new LibvirtXmlError('document', `is larger than ${MAX_XML_BYTES} bytes`);
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) {
    throw new LibvirtXmlError('<!DOCTYPE>', 'document type declarations are refused (they can declare entities); libvirt never writes one');
  }
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const { line, col, msg } = valid.err;
    throw new LibvirtXmlError(col === undefined ? `line ${line}` : `line ${line}, column ${col}`, `malformed XML: ${msg}`);
  }
  const parsed = parser.parse(xml) as XmlElement;
  const roots = Object.keys(parsed).filter((k) => k !== '#text');
  if (roots.length !== 1 || roots[0] !== 'domain') {
    throw new LibvirtXmlError('document', `the root element must be one <domain>, found ${roots.map((r) => `<${r}>`).join(', ') || 'none'}`);
  }
  const domains = parsed['domain'] as XmlElement[];
  if (domains.length !== 1 || domains[0] === undefined) throw new LibvirtXmlError('document', 'more than one <domain> root');
  return new Node(domains[0], 'domain');
}

/** Parses a libvirt domain XML into a VmSpec; throws LibvirtXmlError naming the offending element. */
export function parseLibvirtDomainXml(xml: string): VmSpec {
  const domain = parseRoot(xml);

  const type = domain.attr('type');
  if (type !== 'kvm' && type !== 'qemu') {
    throw new LibvirtXmlError('domain @type', type === undefined ? 'is missing (kvm or qemu)' : `"${type}" is not supported: kvm or qemu`);
  }
  for (const tag of domain.childTags()) {
    if (tag === 'qemu:commandline' || tag === 'qemu:override') {
      throw new LibvirtXmlError(`domain/${tag}`, 'is not supported: extra qemu arguments may open files the plan cannot see');
    }
    if (!HANDLED_DOMAIN_ELEMENTS.has(tag) && !IGNORED_DOMAIN_ELEMENTS.has(tag)) {
      throw new LibvirtXmlError(`domain/${tag}`, 'is not supported');
    }
  }

  const nameNode = domain.optional('name');
  const name = nameNode?.text() ?? '';
  if (name === '') throw new LibvirtXmlError('domain/name', 'is missing or empty');

  const memory = domain.optional('memory');
  const currentMemory = domain.optional('currentMemory');
  const vcpuNode = domain.optional('vcpu');
  let vcpus: number | undefined;
  if (vcpuNode) {
    vcpus = Number(parseCount(vcpuNode.where, vcpuNode.text()));
    if (vcpus < 1 || !Number.isSafeInteger(vcpus)) throw new LibvirtXmlError(vcpuNode.where, `${vcpuNode.text()} vCPUs is not a usable count`);
  }
  checkSysinfo(domain);

  const { seclabel, live } = domainSeclabel(domain);
  const { disks, charDevices } = parseDevices(domain.optional('devices'));
  return {
    name,
    accel: type === 'kvm' ? 'kvm' : 'tcg',
    seclabel,
    disks,
    ...parseOs(domain.optional('os')),
    charDevices,
    ...(live === undefined ? {} : { live }),
    ...(memory === undefined ? {} : { memoryMiB: memoryMiB(memory) }),
    ...(currentMemory === undefined ? {} : { currentMemoryMiB: memoryMiB(currentMemory) }),
    ...(vcpus === undefined ? {} : { vcpus }),
  };
}

/** A device the label plan ignores but an import has to carry over or report. */
export interface LibvirtDeviceNote {
  /** Where it sits, as errors name elements (`domain/devices/interface[2]`). */
  readonly where: string;
  readonly type: string;
  /** What it attaches to on the host (a libvirt network, a bridge, a device); null when nothing. */
  readonly source: string | null;
}

/** What an import needs beyond the VmSpec: network interfaces, graphical displays, sound, and the boot order. */
export interface LibvirtDomainDevices {
  readonly interfaces: readonly LibvirtDeviceNote[];
  readonly graphics: readonly LibvirtDeviceNote[];
  readonly sound: readonly LibvirtDeviceNote[];
  /** `<os><boot dev=…/>` in order; empty when the domain does not say (libvirt then boots hd). */
  readonly bootOrder: readonly string[];
}

/** Reads the devices an import carries over or reports (parseLibvirtDomainXml has checked the rest). */
export function readLibvirtDomainDevices(xml: string): LibvirtDomainDevices {
  const domain = parseRoot(xml);
  const devices = domain.optional('devices');
  const notes = (tag: string, source: (node: Node) => string | undefined): LibvirtDeviceNote[] =>
    (devices?.all(tag) ?? []).map((node) => ({ where: node.where, type: node.attr('type') ?? node.attr('model') ?? '', source: source(node) ?? null }));
  const interfaceSource = (node: Node) => {
    const source = node.optional('source');
    return source?.attr('network') ?? source?.attr('bridge') ?? source?.attr('dev') ?? source?.attr('path');
  };
  return {
    interfaces: notes('interface', interfaceSource),
    graphics: notes('graphics', () => undefined),
    sound: notes('sound', () => undefined),
    bootOrder: (domain.optional('os')?.all('boot') ?? []).flatMap((b) => b.attr('dev') ?? []),
  };
}
