// UEFI firmware for VMs: Debian's `ovmf` package (OVMF, 4 MiB flash layout, no Secure Boot enrolment).
// The code is the same read-only file for every VM and is never named by a request: the helper picks it, so
// no user can have root open an arbitrary file for qemu. Each VM gets its own variable store, copied from
// the template into the user's VM storage by the user's own process (so it is the user's file, checked by
// the helper's path rules like a disk, and deleted or cloned with the VM's other files).
import { constants as fsc } from 'node:fs';
import { chmod, copyFile, stat } from 'node:fs/promises';

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS_TEMPLATE = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** Copies the variable store template to `dest` (which must not exist yet), readable by its owner only. */
export async function createNvram(dest: string, template = OVMF_VARS_TEMPLATE): Promise<void> {
  await copyFile(template, dest, fsc.COPYFILE_EXCL);
  await chmod(dest, 0o600);
}

/** qemu maps the store into a flash device of the template's size: anything else fails late and obscurely. */
export async function checkNvramSize(size: number, template = OVMF_VARS_TEMPLATE): Promise<void> {
  const expected = (await stat(template)).size;
  if (size !== expected) throw new Error(`firmware.nvram is ${size} bytes, not the ${expected} bytes of the OVMF variable store template (${template})`);
}
