#!/usr/bin/env bash
# Does the product's SELinux policy module (assets/selinux/svirt_manager.{te,if,fc}) build with Fedora's
# policy development files, and link into Fedora's policy? Fedora's selinux-policy-devel cannot be installed
# on this Debian host and its source is not in the repository, so this runs by hand, not in npm test
# (which builds the module with Debian's selinux-policy-dev: test/packaging/selinux-module.test.ts).
#
# Usage:
#   test/packaging/fedora-module-check.sh SELINUX_POLICY_GIT_DIR
#     SELINUX_POLICY_GIT_DIR  a git directory (a clone, or a bare mirror) of
#                             github.com/fedora-selinux/selinux-policy
#   FEDORA_COMMIT   the commit to build (default fd1d99621, the one the fixture policy was built from)
#   FEDORA_POLICY   Fedora's binary policy to link against
#                   (default /work/shared/fixtures/fedora-targeted/policy.33, built from that commit)
#   WORKDIR         where to build (default a new temporary directory, removed at the end); the
#                   generated headers are kept there and reused on the next run with the same commit
# Needs: git, make, m4, gawk, python3, checkpolicy, semodule-utils (/usr/libexec/selinux/hll/pp), secilc,
# setools. Takes about as long as the policy's `make conf` (segenxml over every module: minutes).
#
# What it proves:
#   1. Fedora's /usr/share/selinux/devel is made the way selinux-policy.spec makes it: `make bare`, `make
#      conf` with the spec's parameters for the targeted policy, `make install-headers` into a DESTDIR,
#      the headers moved to devel/include, and a devel Makefile that, like the spec's Makefile.devel,
#      points HEADERDIR there and includes the headers' Makefile.
#   2. svirt_manager.pp compiles with that Makefile and those headers, with nothing on stderr, and the
#      Fedora side of the module's ifdefs is what got compiled (virt_transition_svirt's rules).
#   3. The module links into Fedora's binary policy (decompiled to CIL by checkpolicy, the module converted
#      to CIL by semodule's pp converter, both compiled together by secilc): every type, attribute, role and
#      permission it requires exists in Fedora's policy. Optional blocks whose requirements are missing
#      would be dropped silently, so sesearch then checks the result: the desktop user's transition into the
#      helper, the helper's into svirt_t and svirt_tcg_t, and, exactly, every rule the module adds for the
#      VM domains (nothing on devices, nothing on anyone else's files).
set -euo pipefail
# sort and comm in byte order: the expected rule list below is in it.
export LC_ALL=C

repo=$(cd "$(dirname "$0")/../.." && pwd)
src_git=${1:?usage: $0 SELINUX_POLICY_GIT_DIR (a git directory of fedora-selinux/selinux-policy)}
commit=${FEDORA_COMMIT:-fd1d99621}
fedora_policy=${FEDORA_POLICY:-/work/shared/fixtures/fedora-targeted/policy.33}
if [ -n "${WORKDIR:-}" ]; then
  work=$WORKDIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
full_commit=$(git --git-dir="$src_git" rev-parse --verify "$commit^{commit}" 2>/dev/null || git -C "$src_git" rev-parse --verify "$commit^{commit}")
git_dir=$(git -C "$src_git" rev-parse --absolute-git-dir 2>/dev/null || echo "$src_git")
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# 1. The devel headers, as the spec's %install makes them (its common_params for the targeted policy).
params=(DISTRO=redhat UBAC=n DIRECT_INITRC=n MONOLITHIC=n MLS_CATS=1024 MCS_CATS=1024 UNK_PERMS=allow NAME=targeted TYPE=mcs)
devel=$work/destdir/usr/share/selinux/devel
if [ "$(cat "$work/headers.commit" 2>/dev/null)" != "$full_commit" ]; then
  step "Fedora's devel headers from selinux-policy $full_commit"
  rm -rf "$work/src" "$work/destdir" "$work/headers.commit"
  mkdir -p "$work/src"
  git --git-dir="$git_dir" archive "$full_commit" | tar -x -C "$work/src"
  (
    cd "$work/src"
    # %make_build in the spec: make -j.
    make -j"$(nproc)" "${params[@]}" bare > "$work/make-bare.log" 2>&1
    make -j"$(nproc)" "${params[@]}" conf > "$work/make-conf.log" 2>&1
    install -m0644 dist/targeted/booleans.conf dist/targeted/users dist/targeted/modules.conf policy/
    make "${params[@]}" DESTDIR="$work/destdir" PKGNAME=selinux-policy install-headers > "$work/make-install-headers.log" 2>&1
  ) || fail "building the headers (logs in $work)"
  mkdir -p "$devel"
  mv "$work/destdir/usr/share/selinux/targeted/include" "$devel/include"
  # The spec's Makefile.devel: the headers' own Makefile, with HEADERDIR at devel/include.
  cat > "$devel/Makefile" <<EOF
SHAREDIR := $work/destdir/usr/share/selinux
NAME ?= targeted
TYPE ?= mcs
HEADERDIR := \$(SHAREDIR)/devel/include
include \$(HEADERDIR)/Makefile
EOF
  echo "$full_commit" > "$work/headers.commit"
fi

# 2. The module, built with Fedora's devel Makefile.
step "svirt_manager.pp with $devel/Makefile"
rm -rf "$work/module"
cp -r "$repo/assets/selinux" "$work/module"
(cd "$work/module" && make -f "$devel/Makefile" svirt_manager.pp > "$work/module.log" 2> "$work/module.err") \
  || { cat "$work/module.log" "$work/module.err" >&2; fail "svirt_manager.pp does not compile with Fedora's headers"; }
[ ! -s "$work/module.err" ] || { cat "$work/module.err" >&2; fail "the Fedora build printed warnings"; }
# virt_transition_svirt is the interface only Fedora has: its rules name svirt_socket_t.
grep -q 'svirt_socket_t' "$work/module/tmp/svirt_manager.tmp" || fail "the module did not take Fedora's virt_transition_svirt branch"
grep -q 'virt_domain_roles' "$work/module/tmp/svirt_manager.tmp" && fail "the module took refpolicy's virt_run_virt_domain branch"

# 3. Linked into Fedora's binary policy.
step "link with $fedora_policy"
checkpolicy -M -C -b -o "$work/fedora.cil" "$fedora_policy" > /dev/null
/usr/libexec/selinux/hll/pp "$work/module/svirt_manager.pp" "$work/svirt_manager.cil"
# The pp converter's requires name the attributes cil_gen_require, which a store's base declares.
printf '(typeattribute cil_gen_require)\n(roleattribute cil_gen_require)\n' > "$work/gen-require.cil"
secilc -M true -c 33 -f /dev/null -o "$work/linked.33" "$work/fedora.cil" "$work/gen-require.cil" "$work/svirt_manager.cil" \
  || fail "the module does not link into Fedora's policy"

linked=$work/linked.33
has_rule() { # the exact rule line, then sesearch's query
  local rule=$1; shift
  sesearch "$@" "$linked" | grep -qxF "$rule" || fail "not in the linked policy: $rule"
}
has_rule 'type_transition unconfined_t svirt_manager_exec_t:process svirt_manager_t;' -T -s unconfined_t -t svirt_manager_exec_t -c process
# virt_transition_svirt's grant (all virt domains), and the optional block for Fedora's TCG domain.
has_rule 'allow svirt_manager_t virt_domain:process { sigkill signal signull sigstop transition };' -A -s svirt_manager_t -t svirt_t -c process -p transition
has_rule 'allow svirt_manager_t svirt_tcg_t:process { getattr sigkill signal signull transition };' -A -s svirt_manager_t -t svirt_tcg_t -c process -p transition
# The module's other optional blocks, enabled too: unconfined_t's and useradd's.
has_rule 'allow svirt_manager_t unconfined_t:unix_stream_socket { getattr getopt ioctl read write };' -A -s svirt_manager_t -t unconfined_t -c unix_stream_socket
has_rule 'dontaudit useradd_t svirt_manager_t:unix_stream_socket { getattr ioctl };' --dontaudit -s useradd_t -t svirt_manager_t -ds -dt
[ -z "$(sesearch -A -s svirt_manager_t -c process -p execmem "$linked")" ] || fail "svirt_manager_t got execmem"

# Every rule the module adds for the VM domains, exactly (as the Debian test checks for svirt_t): what they
# inherit from the helper, mapping the kernel and reading vm.overcommit_memory (both of which Fedora's own
# rules already allow, to virt_domain and to every domain). No
# execmem: Fedora's svirt_tcg_t has its own.
added=$(for vm in svirt_t svirt_tcg_t; do
  comm -13 <(sesearch -A -s "$vm" "$fedora_policy" | sort) <(sesearch -A -s "$vm" "$linked" | sort)
done | sort -u)
expected='allow svirt_t svirt_image_t:file map;
allow svirt_t svirt_manager_log_t:file { append getattr };
allow svirt_t svirt_manager_t:fd use;
allow svirt_t svirt_manager_t:process sigchld;
allow svirt_t svirt_manager_var_lib_t:dir search;
allow svirt_t sysctl_vm_overcommit_t:dir { getattr open search };
allow svirt_t sysctl_vm_overcommit_t:file { getattr ioctl lock open read };
allow svirt_t virt_content_t:file map;
allow svirt_tcg_t svirt_manager_log_t:file { append getattr };
allow svirt_tcg_t svirt_manager_t:fd use;
allow svirt_tcg_t svirt_manager_t:process sigchld;
allow svirt_tcg_t svirt_manager_var_lib_t:dir search;'
if [ "$added" != "$expected" ]; then
  diff <(echo "$expected") <(echo "$added") >&2 || true
  fail "the module adds other rules for the VM domains than expected (diff above: < expected, > linked)"
fi
for vm in svirt_t svirt_tcg_t; do
  for device in fixed_disk_device_t removable_device_t device_t memory_device_t; do
    [ "$(sesearch -A -s "$vm" -t "$device" "$fedora_policy" | sort)" = "$(sesearch -A -s "$vm" -t "$device" "$linked" | sort)" ] \
      || fail "$vm gained access to $device"
  done
done

echo "OK: svirt_manager builds with Fedora's devel headers (selinux-policy $full_commit) and links into $fedora_policy"
