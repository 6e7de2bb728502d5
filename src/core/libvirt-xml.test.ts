import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LibvirtXmlError, parseLibvirtDomainXml } from './libvirt-xml';

const fixture = (name: string) => readFileSync(new URL(`../../test/fixtures/libvirt/${name}`, import.meta.url), 'utf8');

/** A minimal domain around the given devices and extra top-level elements. */
function domain(devices: string, extra = '', type = 'kvm'): string {
  return `<domain type='${type}'><name>t</name><memory>1024</memory>${extra}<devices>${devices}</devices></domain>`;
}

function xmlError(xml: string): LibvirtXmlError {
  try {
    parseLibvirtDomainXml(xml);
  } catch (e) {
    if (e instanceof LibvirtXmlError) return e;
    throw e;
  }
  throw new Error('expected a LibvirtXmlError');
}

describe('realistic domains', () => {
  it('reads a virt-install style inactive KVM domain', () => {
    const spec = parseLibvirtDomainXml(fixture('fedora-kvm-inactive.xml'));
    expect(spec).toEqual({
      name: 'fedora40',
      accel: 'kvm',
      seclabel: { mode: 'dynamic' },
      memoryMiB: 4096,
      currentMemoryMiB: 2048,
      vcpus: 4,
      disks: [
        { path: '/var/lib/libvirt/images/fedora40.qcow2', class: 'private', target: 'vda', device: 'disk', format: 'qcow2', source: 'file' },
        { path: '/srv/cluster/quorum.raw', class: 'shared', target: 'vdb', device: 'disk', format: 'raw', source: 'file' },
        {
          path: '/var/lib/libvirt/images/Fedora-Workstation-Live-x86_64-40.iso',
          class: 'readonly', target: 'sda', device: 'cdrom', format: 'raw', source: 'file',
        },
        // sdb: an empty CD-ROM tray opens nothing and is left out.
      ],
      // pty serial/console, the path-less guest agent channel and spicevmc open no host file.
      charDevices: [],
    });
  });

  it('reads a running domain: the live pair, block disks, per-source seclabels, dac ignored', () => {
    const spec = parseLibvirtDomainXml(fixture('running-dynamic-live.xml'));
    expect(spec.seclabel).toEqual({ mode: 'dynamic' });
    expect(spec.live).toEqual({
      label: 'system_u:system_r:svirt_t:s0:c392,c662',
      imageLabel: 'system_u:object_r:svirt_image_t:s0:c392,c662',
    });
    expect(spec.disks).toEqual([
      { path: '/var/lib/libvirt/images/web01.qcow2', class: 'private', target: 'vda', device: 'disk', format: 'qcow2', source: 'file' },
      { path: '/dev/vg0/web01-data', class: 'private', relabel: false, target: 'vdb', device: 'disk', format: 'raw', source: 'block' },
    ]);
    expect(spec.charDevices).toEqual([
      { kind: 'file', path: '/var/log/libvirt/qemu/web01-serial0.log', role: 'serial' },
      { kind: 'file', path: '/var/log/libvirt/qemu/web01-serial0.log', role: 'console' },
      { kind: 'unix', path: '/var/lib/libvirt/qemu/channel/target/domain-7-web01/org.qemu.guest_agent.0', role: 'channel' },
    ]);
    expect(spec).toMatchObject({ memoryMiB: 1024, currentMemoryMiB: 1024, vcpus: 2 });
  });

  it('reads a TCG guest with a direct kernel boot, every file-backed serial kind and a baselabel', () => {
    const spec = parseLibvirtDomainXml(fixture('tcg-direct-kernel.xml'));
    expect(spec).toMatchObject({
      name: 'tiny-tcg',
      accel: 'tcg',
      memoryMiB: 256,
      vcpus: 1,
      seclabel: { mode: 'dynamic', baseLabel: 'system_u:system_r:svirt_tcg_t:s0' },
      kernel: '/srv/guests/tiny/vmlinuz',
      initrd: '/srv/guests/tiny/initrd.gz',
      dtb: '/srv/guests/tiny/board.dtb',
      cmdline: 'console=ttyS0 root=/dev/vda rw quiet && panic=1',
    });
    expect(spec.live).toBeUndefined();
    expect(spec.charDevices).toEqual([
      { kind: 'file', path: '/srv/guests/tiny/serial0.log', role: 'serial' },
      { kind: 'pipe', path: '/srv/guests/tiny/pipe1', role: 'serial' },
      { kind: 'dev', path: '/dev/ttyS3', role: 'serial', label: 'system_u:object_r:tty_device_t:s0' },
      { kind: 'unix', path: '/srv/guests/tiny/console.sock', role: 'console' },
    ]);
  });

  it('reads a static seclabel with relabel and per-disk choices', () => {
    const spec = parseLibvirtDomainXml(fixture('static-relabel.xml'));
    expect(spec.seclabel).toEqual({ mode: 'static', label: 'system_u:system_r:svirt_t:s0:c700,c900', relabel: true });
    expect(spec).toMatchObject({ memoryMiB: 2048, currentMemoryMiB: 1536, vcpus: 2 });
    expect(spec.disks.map((d) => [d.target, d.class, d.relabel, d.label])).toEqual([
      ['vda', 'private', undefined, undefined],
      ['vdb', 'private', false, undefined],
      ['vdc', 'readonly', undefined, 'system_u:object_r:svirt_image_t:s0:c700,c900'],
    ]);
  });
});

describe('domain seclabel', () => {
  const withSeclabel = (seclabel: string) => domain('', seclabel);

  it('defaults to dynamic when absent or when only other models are given', () => {
    expect(parseLibvirtDomainXml(domain('')).seclabel).toEqual({ mode: 'dynamic' });
    expect(parseLibvirtDomainXml(withSeclabel("<seclabel type='static' model='dac'><label>+0:+0</label></seclabel>")).seclabel)
      .toEqual({ mode: 'dynamic' });
  });

  it('treats a seclabel without a model as the SELinux one', () => {
    expect(parseLibvirtDomainXml(withSeclabel("<seclabel type='none'/>")).seclabel).toEqual({ mode: 'none' });
  });

  it('defaults static to relabel=no, as libvirt', () => {
    const spec = parseLibvirtDomainXml(withSeclabel("<seclabel type='static' model='selinux'><label>system_u:system_r:svirt_t:s0:c1,c2</label></seclabel>"));
    expect(spec.seclabel).toEqual({ mode: 'static', label: 'system_u:system_r:svirt_t:s0:c1,c2', relabel: false });
  });

  it('keeps a static imagelabel only when relabeling', () => {
    const xml = (relabel: string) => withSeclabel(
      `<seclabel type='static' model='selinux' relabel='${relabel}'><label>u:r:t:s0:c1,c2</label><imagelabel>u:object_r:i_t:s0:c1,c2</imagelabel></seclabel>`,
    );
    expect(parseLibvirtDomainXml(xml('yes')).seclabel).toEqual({ mode: 'static', label: 'u:r:t:s0:c1,c2', relabel: true, imageLabel: 'u:object_r:i_t:s0:c1,c2' });
    expect(parseLibvirtDomainXml(xml('no')).seclabel).toEqual({ mode: 'static', label: 'u:r:t:s0:c1,c2', relabel: false });
  });

  it('reads a live dynamic label without an imagelabel', () => {
    const spec = parseLibvirtDomainXml(withSeclabel("<seclabel type='dynamic' model='selinux'><label>system_u:system_r:svirt_t:s0:c1,c9</label></seclabel>"));
    expect(spec.live).toEqual({ label: 'system_u:system_r:svirt_t:s0:c1,c9' });
  });

  it.each([
    ["<seclabel type='dynamic' relabel='no'/>", 'domain/seclabel', /must relabel/],
    ["<seclabel type='none' relabel='yes'/>", 'domain/seclabel', /not compatible/],
    ["<seclabel type='static' model='selinux'/>", 'domain/seclabel', /needs a <label>/],
    ["<seclabel type='sometimes'/>", 'domain/seclabel @type', /not dynamic, static or none/],
    ["<seclabel type='static' relabel='maybe'><label>u:r:t:s0</label></seclabel>", 'domain/seclabel @relabel', /neither yes nor no/],
    ["<seclabel type='static'><label>system_u:system_r</label></seclabel>", 'domain/seclabel/label', /invalid context/],
    ["<seclabel type='static'><label>u:r:t:s0</label><label>u:r:t:s0</label></seclabel>", 'domain/seclabel/label', /appears 2 times/],
    ["<seclabel type='dynamic'><baselabel>u:r:1t:s0</baselabel></seclabel>", 'domain/seclabel/baselabel', /invalid type/],
    ["<seclabel type='dynamic'><label>u:r:t:s0:c9.c1</label></seclabel>", 'domain/seclabel/label', /backwards/],
    ["<seclabel model='selinux'/><seclabel/>", 'domain/seclabel', /more than one/],
  ])('refuses %s', (seclabel, element, reason) => {
    const error = xmlError(withSeclabel(seclabel));
    expect(error.element).toBe(element);
    expect(error.message).toMatch(reason);
  });
});

describe('disks', () => {
  const disk = (body: string, attrs = "type='file' device='disk'") => domain(`<disk ${attrs}>${body}<target dev='vdz'/></disk>`);

  it('makes shareable win over readonly, as libvirt', () => {
    const spec = parseLibvirtDomainXml(disk("<source file='/a'/><readonly/><shareable/>"));
    expect(spec.disks[0]?.class).toBe('shared');
  });

  it('treats a cdrom as read-only even without <readonly/>', () => {
    expect(parseLibvirtDomainXml(disk("<source file='/a.iso'/>", "type='file' device='cdrom'")).disks[0]?.class).toBe('readonly');
  });

  it('defaults the disk type to file and keeps paths exactly, entities decoded', () => {
    const spec = parseLibvirtDomainXml(disk("<source file='/images/a &amp; b &#x41;&#66;.img '/>", "device='disk'"));
    expect(spec.disks[0]).toMatchObject({ path: '/images/a & b AB.img ', source: 'file' });
  });

  it('takes the selinux per-source seclabel, not the dac one', () => {
    const spec = parseLibvirtDomainXml(disk("<source file='/a'><seclabel model='dac' relabel='no'/><seclabel relabel='yes'><label>u:r:t:s0</label></seclabel></source>"));
    expect(spec.disks[0]).toMatchObject({ label: 'u:r:t:s0' });
    expect(spec.disks[0]?.relabel).toBeUndefined();
  });

  it.each([
    ["<source protocol='nbd' name='x'/>", "type='network' device='disk'", /type='network'> is not supported/],
    ["<source file='/a'/>", "type='file' device='floppy'", /device='floppy'> is not supported/],
    ["<source dir='/a'/>", "type='dir' device='disk'", /type='dir'/],
    ['', "type='file' device='disk'", /has no <source file=/],
    ["<source file='/a'/>", "type='block' device='disk'", /has no <source dev=/],
    ["<source file='/a'/><driver name='qemu' type='vmdk'/>", "type='file' device='disk'", /format "vmdk" is not supported/],
    ["<source file='/a'><seclabel model='selinux' relabel='no'><label>u:r:t:s0</label></seclabel></source>", "type='file'", /cannot be given with relabel='no'/],
    ["<source file='/a'><seclabel relabel='no'/><seclabel model='selinux'/></source>", "type='file'", /more than one seclabel/],
    ["<source file='/a'><seclabel><label>bad label</label></seclabel></source>", "type='file'", /invalid context/],
    ["<source file='/a'/><seclabel relabel='no'/>", "type='file'", /belongs inside <source>/],
    ["<source file='/a'/><backingStore type='file'><format type='qcow2'/><source file='/base.qcow2'/></backingStore>", "type='file'", /backing chains/],
    ["<source file='/a'/><mirror type='file' file='/copy'/>", "type='file'", /mirror: is not supported/],
    ["<source file='/a'/><source file='/b'/>", "type='file'", /appears 2 times/],
  ])('refuses %s in <disk %s>', (body, attrs, reason) => {
    const error = xmlError(disk(body, attrs));
    expect(error.element).toMatch(/^domain\/devices\/disk/);
    expect(error.message).toMatch(reason);
  });

  it('names the disk by its target in errors', () => {
    expect(xmlError(disk('', "type='file'")).message).toMatch(/\(target vdz\)/);
  });
});

describe('character devices', () => {
  it.each([
    ['serial', 'file'], ['serial', 'pipe'], ['serial', 'dev'], ['console', 'unix'], ['parallel', 'file'], ['channel', 'unix'],
  ] as const)('reads <%s type=%s> with its path', (role, kind) => {
    const spec = parseLibvirtDomainXml(domain(`<${role} type='${kind}'><source path='/run/x'/></${role}>`));
    expect(spec.charDevices).toEqual([{ kind, path: '/run/x', role }]);
  });

  it('skips backends that open no host path', () => {
    const devices = ['pty', 'null', 'vc', 'stdio', 'tcp', 'udp', 'spicevmc'].map((t) => `<serial type='${t}'/>`).join('') + '<console/>';
    expect(parseLibvirtDomainXml(domain(devices)).charDevices).toEqual([]);
  });

  it('reads relabel=no on a device source', () => {
    const spec = parseLibvirtDomainXml(domain("<serial type='file'><source path='/l'><seclabel model='selinux' relabel='no'/></source></serial>"));
    expect(spec.charDevices[0]).toEqual({ kind: 'file', path: '/l', role: 'serial', relabel: false });
  });

  it.each([
    ["<serial type='file'/>", /has no <source path=/],
    ["<serial type='telepathy'><source path='/x'/></serial>", /type='telepathy'> is not supported/],
    ["<serial type='file'><source path='/x'/><log file='/var/log/x'/></serial>", /log: is not supported/],
  ])('refuses %s', (devices, reason) => {
    expect(xmlError(domain(devices)).message).toMatch(reason);
  });
});

describe('domain, os and devices', () => {
  it.each([
    ['b', '1048576', 1], ['bytes', '1048577', 2], ['KB', '1048576', 1000], ['k', '1024', 1], ['KiB', '1536', 2],
    ['MB', '1000', 954], ['M', '512', 512], ['MiB', '512', 512], ['GB', '1', 954], ['G', '3', 3072], ['GiB', '1', 1024], ['TiB', '1', 1048576],
  ])('converts <memory unit=%s>%s</memory> to %d MiB (rounded up)', (unit, value, mib) => {
    const spec = parseLibvirtDomainXml(`<domain type='kvm'><name>t</name><memory unit='${unit}'>${value}</memory></domain>`);
    expect(spec.memoryMiB).toBe(mib);
  });

  it('reads KiB when no unit is given', () => {
    expect(parseLibvirtDomainXml("<domain type='kvm'><name>t</name><memory>2097152</memory></domain>").memoryMiB).toBe(2048);
  });

  it.each([
    ["<domain type='xen'><name>t</name></domain>", 'domain @type', /"xen" is not supported/],
    ['<domain><name>t</name></domain>', 'domain @type', /is missing/],
    ["<domain type='kvm'><name> </name></domain>", 'domain/name', /missing or empty/],
    ["<domain type='kvm'><name>a</name><name>b</name></domain>", 'domain/name', /appears 2 times/],
    ["<domain type='kvm'><name>t</name><memory unit='parsec'>1</memory></domain>", 'domain/memory', /unknown unit/],
    ["<domain type='kvm'><name>t</name><memory>-5</memory></domain>", 'domain/memory', /not a non-negative integer/],
    ["<domain type='kvm'><name>t</name><vcpu>0</vcpu></domain>", 'domain/vcpu', /not a usable count/],
    ["<domain type='kvm'><name>t</name><os><nvram>/var/lib/nvram/t.fd</nvram></os></domain>", 'domain/os/nvram', /not supported yet/],
    ["<domain type='kvm'><name>t</name><os><kernel></kernel></os></domain>", 'domain/os/kernel', /is empty/],
    ["<domain type='kvm'><name>t</name><os><acpi><table type='slic'>/x</table></acpi></os></domain>", 'domain/os/acpi', /not supported/],
    ["<domain type='kvm'><name>t</name><bootloader>/usr/bin/pygrub</bootloader></domain>", 'domain/bootloader', /not supported/],
    ["<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>t</name><qemu:commandline><qemu:arg value='-drive'/></qemu:commandline></domain>", 'domain/qemu:commandline', /extra qemu arguments/],
    ["<domain type='kvm'><name>t</name><sysinfo type='fwcfg'><entry name='opt/x' file='/etc/x'/></sysinfo></domain>", 'domain/sysinfo/entry', /fw_cfg/],
  ])('refuses %s naming %s', (xml, element, reason) => {
    const error = xmlError(xml);
    expect(error.element).toBe(element);
    expect(error.message).toMatch(reason);
  });

  it.each([
    ['<hostdev mode="subsystem" type="pci"/>', /host device passthrough/],
    ["<filesystem type='mount'><source dir='/srv'/><target dir='srv'/></filesystem>", /shared directories/],
    ["<tpm model='tpm-crb'><backend type='emulator'/></tpm>", /TPM/],
    ["<input type='evdev'><source dev='/dev/input/event1'/></input>", /host event device/],
    ["<memory model='nvdimm'><source><path>/pmem</path></source></memory>", /model='nvdimm'/],
    ["<redirdev bus='usb' type='unix'/>", /type='unix'/],
    ['<teleporter/>', /not a supported device/],
  ])('refuses the device %s', (devices, reason) => {
    const error = xmlError(domain(devices));
    expect(error.element).toMatch(/^domain\/devices/);
    expect(error.message).toMatch(reason);
  });
});

describe('malformed and hostile XML', () => {
  it('reports where the XML is broken', () => {
    const error = xmlError("<domain type='kvm'>\n  <name>t</name>\n  <devices><disk></devices>\n</domain>");
    expect(error.element).toMatch(/^line 3, column \d+$/);
    expect(error.message).toMatch(/malformed XML/);
  });

  it('refuses a DOCTYPE, so no entity is ever declared or expanded (no XXE, no billion laughs)', () => {
    const xxe = "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY xxe SYSTEM 'file:///etc/shadow'>]><domain type='kvm'><name>&xxe;</name></domain>";
    expect(xmlError(xxe).message).toMatch(/document type declarations are refused/);
    const laughs = "<!DOCTYPE d [<!ENTITY a 'lol'><!ENTITY b '&a;&a;&a;&a;'>]><domain type='kvm'><name>&b;</name></domain>";
    expect(xmlError(laughs).element).toBe('<!DOCTYPE>');
  });

  it('refuses undefined entities and bad character references, naming the element', () => {
    const undefinedEntity = xmlError("<domain type='kvm'><name>&nbsp;</name></domain>");
    expect(undefinedEntity.element).toBe('domain/name');
    expect(undefinedEntity.message).toMatch(/undefined entity &nbsp;/);
    expect(xmlError("<domain type='kvm'><name>&#0;</name></domain>").message).toMatch(/not a valid character/);
  });

  it.each([
    ["<vm type='kvm'><name>t</name></vm>", /found <vm>/],
    ['', /malformed XML: Start tag expected/],
    ["<domain type='kvm'><name>a</name></domain><domain type='kvm'><name>b</name></domain>", /malformed XML: Multiple possible root nodes/],
  ])('refuses a document whose root is not one <domain>: %j', (xml, reason) => {
    expect(xmlError(xml).message).toMatch(reason);
  });

  it('refuses something that is not XML at all', () => {
    expect(xmlError('QFI\xfb\x00\x00\x00\x03').message).toMatch(/malformed XML/);
  });
});
