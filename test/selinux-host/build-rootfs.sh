#!/usr/bin/env bash
# Builds the SELinux test host's root disk: Debian packages by mmdebstrap, labeled on this (SELinux-less)
# host by setfiles against the image's own policy, packed by mkfs.ext4 -d (which keeps the
# security.selinux xattrs). Writes into OUTDIR: rootfs.ext4, vmlinuz and initrd.img (Debian's, for qemu's
# -kernel/-initrd), and policy.33 + file_contexts (to label the product disk on this host the same way).
# The root disk holds nothing of the product: the product and the scenario come on a second disk each
# run, which /sbin/svirt-test-init mounts at /opt/svirt-test before it hands over to its init.sh.
# Usage: build-rootfs.sh OUTDIR
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${out}.work.XXXXXX")
# --one-file-system: an interrupted mmdebstrap may leave /proc mounted in the chroot.
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
pkgs=$(grep -v '^#' "$here/rootfs-packages.txt" | grep -v '^$' | paste -sd, -)
mmdebstrap --variant=minbase --include="$pkgs" \
  --customize-hook='printf "SELINUX=permissive\nSELINUXTYPE=default\n" > "$1/etc/selinux/config"' \
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
policy=$(ls "$root"/etc/selinux/default/policy/policy.* | sort -V | tail -1)
fc=$root/etc/selinux/default/contexts/files/file_contexts
setfiles -r "$root" -c "$policy" "$fc" "$root"
cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$work/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$work/initrd.img"
cp "$policy" "$work/policy.33"
cp "$fc" "$work/file_contexts"
# What the tree holds plus room for the scenario's images, logs and the module store's rebuilds.
size_mb=$(( $(du -sm "$root" | cut -f1) + 1024 ))
mkfs.ext4 -q -F -L svirt-root -d "$root" "$work/rootfs.ext4" "${size_mb}M"
mkdir -p "$out"
mv "$work/rootfs.ext4" "$work/vmlinuz" "$work/initrd.img" "$work/policy.33" "$work/file_contexts" "$out/"
