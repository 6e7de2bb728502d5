/**
 * The label-relevant description of one VM: what the label planner needs to know to confine it, and
 * what the VM store and the UI show. Mirrors the parts of a libvirt domain that its SELinux driver reads.
 */

/** KVM runs the guest on the CPU; TCG emulates it (and may need its own process type: execmem). */
export type Accel = 'kvm' | 'tcg';

/**
 * The VM-wide SELinux label, as libvirt's `<seclabel>`:
 * - `dynamic`: a fresh MCS pair per start; resources are always relabeled (libvirt refuses relabel=no).
 *   `baseLabel` overrides the process type (e.g. svirt_tcg_t); its user, role and range are not used.
 * - `static`: the process runs with `label` as given. `relabel` defaults to false in libvirt; when true,
 *   resources get `imageLabel`, or an image label carrying the static label's range.
 * - `none`: qemu runs unconfined and nothing is relabeled.
 */
export type SeclabelSpec =
  | { readonly mode: 'dynamic'; readonly baseLabel?: string }
  | { readonly mode: 'static'; readonly label: string; readonly relabel: boolean; readonly imageLabel?: string }
  | { readonly mode: 'none' };

/**
 * How a disk is shared, which decides its label:
 * - `private`: this VM alone; gets the VM's image label and is restored at stop.
 * - `shared` (`<shareable/>`): several VMs write it; gets the image type at s0, never restored.
 * - `readonly` (`<readonly/>`, every cdrom): gets the read-only content label, never restored.
 */
export type DiskClass = 'private' | 'shared' | 'readonly';

export interface DiskSpec {
  /** Absolute host path of the image file or block device. */
  readonly path: string;
  readonly class: DiskClass;
  /** False leaves the file's label alone (libvirt's per-source `<seclabel relabel='no'/>`). Absent means true. */
  readonly relabel?: boolean;
  /** A label to use as given instead of the computed one (libvirt's per-source `<seclabel><label>`). */
  readonly label?: string;
  /** Guest device name (`vda`), for messages and the UI. */
  readonly target?: string;
  readonly device?: 'disk' | 'cdrom';
  readonly format?: 'raw' | 'qcow2';
  /** A regular file or a host block device. */
  readonly source?: 'file' | 'block';
  /**
   * The layers below a qcow2 image, top-most first (libvirt's `<backingStore>` chain): read-only content
   * for this VM, whatever the disk's own class.
   */
  readonly backingStore?: readonly BackingStoreSpec[];
}

export interface BackingStoreSpec {
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
}

/** Host-side backends of a character device that are files and so carry a label. */
export type CharDeviceKind = 'file' | 'pipe' | 'dev' | 'unix';

/** Which guest-facing device a character backend serves; all are labeled alike. */
export type CharDeviceRole = 'serial' | 'console' | 'channel' | 'parallel';

export interface CharDeviceSpec {
  readonly kind: CharDeviceKind;
  /** The file, pipe base name (qemu also opens `path.in`/`path.out`), device node or socket. */
  readonly path: string;
  readonly role?: CharDeviceRole;
  /** False leaves the path's label alone. Absent means true. */
  readonly relabel?: boolean;
  /** A label to use as given instead of the VM's image label. */
  readonly label?: string;
}

/** The labels of a running VM as libvirt's live XML reports them; a restart of the manager re-adopts them. */
export interface LiveLabels {
  /** The qemu process context, whose range is the VM's MCS pair. */
  readonly label: string;
  readonly imageLabel?: string;
}

export interface VmSpec {
  readonly name: string;
  readonly accel: Accel;
  readonly seclabel: SeclabelSpec;
  readonly disks: readonly DiskSpec[];
  readonly kernel?: string;
  readonly initrd?: string;
  readonly dtb?: string;
  /** UEFI variable store qemu writes: private to the VM, like libvirt's `<nvram>`. */
  readonly nvram?: string;
  readonly charDevices: readonly CharDeviceSpec[];
  /** Present while the VM runs (or when read from a running domain's XML). */
  readonly live?: LiveLabels;
  // Not label-relevant: carried for the VM store and the UI.
  readonly cmdline?: string;
  readonly memoryMiB?: number;
  readonly currentMemoryMiB?: number;
  readonly vcpus?: number;
}

/** The default seclabel when a VM names none, as libvirt. */
export const DEFAULT_SECLABEL: SeclabelSpec = { mode: 'dynamic' };

/** Per-resource `relabel` defaults to true. */
export function isRelabeled(resource: { readonly relabel?: boolean }): boolean {
  return resource.relabel !== false;
}
