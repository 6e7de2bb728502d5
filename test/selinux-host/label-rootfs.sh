#!/usr/bin/env bash
# The SELinux test host's step in test/lsm-host/build-rootfs.sh: boots permissive (the scenario switches
# to enforcing itself), labels the tree on this (SELinux-less) host by setfiles against the image's own
# policy (mkfs.ext4 -d keeps the security.selinux xattrs), and leaves policy.33 + file_contexts beside the
# root disk to label the per-run product disk the same way.
# Usage: label-rootfs.sh ROOT WORKDIR
set -euo pipefail
root=$1
work=$2
printf "SELINUX=permissive\nSELINUXTYPE=default\n" >"$root/etc/selinux/config"
policy=$(ls "$root"/etc/selinux/default/policy/policy.* | sort -V | tail -1)
fc=$root/etc/selinux/default/contexts/files/file_contexts
setfiles -r "$root" -c "$policy" "$fc" "$root"
cp "$policy" "$work/policy.33"
cp "$fc" "$work/file_contexts"
