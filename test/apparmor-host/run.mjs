#!/usr/bin/env node
// `npm run test:apparmor`: the product on an AppArmor-enforcing kernel (issue 14 §3). This host's kernel
// has no AppArmor, so a qemu guest boots Debian's kernel with `security=apparmor apparmor=1` and the
// `apparmor` package, and runs scenario.mjs there (test/lsm-host/boot-host.mjs boots it).
// The last line is the JSON result; exit 1 unless AppArmor enforced, both VMs ran in their own profiles,
// VM A's qemu was denied VM B's image and a file in a home directory, the product's own operation caused
// no AppArmor complaint, the product's audit (from the loaded profiles) agreed with the kernel on each VM's
// own image and the other's, and no VM profile was left after stop or after a crash.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bootTestHost } from '../lsm-host/boot-host.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

process.exitCode = await bootTestHost({
  tag: 'test:apparmor',
  packages: path.join(HERE, 'rootfs-packages.txt'),
  guestFiles: [path.join(HERE, 'init.sh'), path.join(HERE, 'scenario.mjs')],
  assets: ['assets/linux', 'assets/polkit', 'assets/apparmor'],
  // no_timer_check: on a busy host the kernel's IO-APIC timer check can fail under TCG.
  append: ['root=/dev/vda', 'rw', 'console=ttyS0', 'loglevel=4', 'no_timer_check', 'security=apparmor', 'apparmor=1',
    'init=/sbin/svirt-test-init', 'panic=-1'],
  readyLine: 'apparmor ready',
  priority: -10,
  want: { enforcing: true, confinedVms: 2, crossVmDenied: true, hostFileDenied: true, ownDenials: 0, auditDisagreements: 0, profilesLeft: 0, crashProfileRemoved: true },
});
