#!/usr/bin/env bash
# Builds a test host's root disk (test/lsm-host/boot-host.mjs): Debian packages by mmdebstrap, then the
# host's own step (an LSM's labels or nothing), packed by mkfs.ext4 -d (which keeps xattrs). Writes into
# OUTDIR: rootfs.ext4, and vmlinuz and initrd.img (Debian's, for qemu's -kernel/-initrd), plus whatever the
# host's step leaves in its work directory. The root disk holds nothing of the product: the product and
# the scenario come on a second disk each run, which /sbin/svirt-test-init mounts at /opt/svirt-test
# before it hands over to the init.sh it carries.
# Usage: build-rootfs.sh OUTDIR PACKAGES-FILE [HOST-STEP]   (HOST-STEP is run as: HOST-STEP ROOT WORKDIR)
set -euo pipefail
out=$1
packages=$2
step=${3:-}
work=$(mktemp -d "${out}.work.XXXXXX")
# --one-file-system: an interrupted mmdebstrap may leave /proc mounted in the chroot.
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
pkgs=$(grep -v '^#' "$packages" | grep -v '^$' | paste -sd, -)
mmdebstrap --variant=minbase --include="$pkgs" \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  bookworm "$root"
# The kernel's init: mounts the per-run disk (virtio, second drive) and runs the init it carries.
cat >"$root/sbin/svirt-test-init" <<'INIT'
#!/bin/sh
mkdir -p /opt/svirt-test
mount -t ext4 -o ro /dev/vdb /opt/svirt-test || { echo "svirt-test-init: no /dev/vdb"; exec /bin/sh; }
exec /bin/sh /opt/svirt-test/init.sh
INIT
chmod 0755 "$root/sbin/svirt-test-init"
mkdir -p "$root/opt/svirt-test"
if [ -n "$step" ]; then "$step" "$root" "$work"; fi
cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$work/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$work/initrd.img"
# What the tree holds plus room for the scenario's images and logs.
size_mb=$(( $(du -sm "$root" | cut -f1) + 1024 ))
mkfs.ext4 -q -F -L svirt-root -d "$root" "$work/rootfs.ext4" "${size_mb}M"
rm -rf --one-file-system "$root"
mkdir -p "$out"
mv "$work"/* "$out/"
