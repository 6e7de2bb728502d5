/**
 * The test hosts' VM kernel: a multiboot (v1, a.out-kludge) image that writes a line to COM1 and halts
 * with interrupts off. A Linux kernel booting under TCG inside TCG keeps both guest CPUs busy for the
 * whole scenario; what the hosts test (confinement, the console relay, QMP, the kernel's denials) needs
 * qemu running, not a booted guest. qemu loads it with -kernel (its multiboot loader) and the initrd as
 * a module, through the same private copies as a Linux kernel.
 */
export function tinyKernel(text) {
  const base = 0x100000;
  const magic = 0x1badb002;
  const flags = 0x00010000; // the load addresses below are valid
  const header = Buffer.alloc(32);
  header.writeUInt32LE(magic, 0);
  header.writeUInt32LE(flags, 4);
  header.writeUInt32LE((2 ** 32 - ((magic + flags) % 2 ** 32)) % 2 ** 32, 8);
  header.writeUInt32LE(base, 12); // header_addr
  header.writeUInt32LE(base, 16); // load_addr
  header.writeUInt32LE(0, 20); // load_end_addr: the whole file
  header.writeUInt32LE(0, 24); // bss_end_addr: none
  header.writeUInt32LE(base + 32, 28); // entry_addr: right after the header
  const code = [0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8 (COM1)
  for (const c of Buffer.from(text, 'latin1')) code.push(0xb0, c, 0xee); // mov al, c; out dx, al
  code.push(0xfa, 0xf4, 0xeb, 0xfd); // cli; hlt; jmp back to the hlt
  return Buffer.concat([header, Buffer.from(code)]);
}
