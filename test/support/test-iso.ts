// A bootable installer-like ISO made from the test guest: GRUB (BIOS and UEFI, hybrid, from grub-mkrescue
// with grub-pc-bin and grub-efi-amd64-bin) boots the guest's kernel and initramfs at once, with the kernel
// console on both the VGA screen (tty0) and the serial port (ttyS0, the last one, so /dev/console).
import { execFile } from 'node:child_process';
import { access, chmod, mkdir, mkdtemp, rename, rm, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { testGuest } from './guest';

const execFileP = promisify(execFile);

/** Kernel command line of the ISO's only GRUB entry. */
export const ISO_APPEND = 'console=tty0 console=ttyS0 panic=-1';

const GRUB_CFG = `set timeout=0
set default=0
insmod all_video
# Keep GRUB's video mode for the kernel, so a UEFI guest's framebuffer console shows the boot text.
set gfxpayload=keep
menuentry "svirt test guest" {
  linux /vmlinuz ${ISO_APPEND}
  initrd /initrd.gz
}
`;

let pending: Promise<string> | undefined;

/** Builds (once per guest build; cached beside it) the test ISO; resolves with its world-readable path. */
export function testIso(): Promise<string> {
  pending ??= (async () => {
    const guest = await testGuest();
    const iso = path.join(path.dirname(guest.kernel), 'test-boot-v1.iso');
    if (await access(iso).then(() => true, () => false)) return iso;
    const work = await mkdtemp(path.join(path.dirname(guest.kernel), 'iso-'));
    try {
      const tree = path.join(work, 'tree');
      await mkdir(path.join(tree, 'boot/grub'), { recursive: true });
      await copyFile(guest.kernel, path.join(tree, 'vmlinuz'));
      await copyFile(guest.initrd, path.join(tree, 'initrd.gz'));
      await writeFile(path.join(tree, 'boot/grub/grub.cfg'), GRUB_CFG);
      const out = path.join(work, 'out.iso');
      await execFileP('grub-mkrescue', ['-o', out, tree], { timeout: 300_000 });
      await chmod(out, 0o644);
      // Another test file may have built it meanwhile: rename replaces it with identical content.
      await rename(out, iso);
      return iso;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  })();
  pending.catch(() => {
    pending = undefined;
  });
  return pending;
}
