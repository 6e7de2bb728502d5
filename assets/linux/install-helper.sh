#!/bin/sh
# Installs or removes sVirt Manager's root helper and its polkit action. Runs as root, from the deb/rpm
# after-install script or once through sudo-prompt (an AppImage or a checkout started without it).
#
#   install-helper.sh install --runtime EXE --helper-script FILE --policy FILE [--copy-runtime] [--selinux-dir DIR]
#                             [--apparmor-dir DIR]
#   install-helper.sh remove
#
# The helper's tree relabeler, the compiled program svirt-label-tree, must lie beside FILE: it is
# installed beside the helper program, where the helper runs it from (and from nowhere else).
#
# EXE runs a Node script when ELECTRON_RUN_AS_NODE=1: the app's Electron binary (or node itself).
# Without --copy-runtime EXE must already lie in a tree only root can change (a package's /opt); with it,
# the directory holding EXE is copied to /usr/lib/svirt-manager/runtime: an AppImage's mount goes away
# when the app quits, and root must never run a file that a user can still change.
# DIR holds the SELinux policy module's sources (svirt_manager.te/.if/.fc, assets/selinux): where SELinux
# is enabled, the module is compiled with the distribution's policy development Makefile and installed
# with semodule, so the helper runs in svirt_manager_t and may start VMs in svirt_t. With DESTDIR, SELinux
# counts as enabled when the scratch root has a policy store, and the module goes into that store.
# --apparmor-dir DIR holds the AppArmor abstraction every VM's profile includes (abstractions/svirt-qemu,
# assets/apparmor): where AppArmor's userspace is installed (/etc/apparmor.d), it goes to
# /etc/apparmor.d/abstractions/svirt-qemu. The VMs' own profiles are the helper's, written at each start.
# FILE arguments are read where they are; DESTDIR (environment, default empty) is put in front of every
# path this script writes or checks, so packaging tests can install into a scratch root.
set -eu
umask 022

DESTDIR=${DESTDIR:-}
LIBEXEC=/usr/libexec/svirt-manager
WRAPPER=$LIBEXEC/svirt-helper
HELPER_SCRIPT=$LIBEXEC/svirt-helper.mjs
LABEL_TOOL=$LIBEXEC/svirt-label-tree
SELF_COPY=$LIBEXEC/install-helper.sh
RUNTIME_PARENT=/usr/lib/svirt-manager
RUNTIME_DIR=$RUNTIME_PARENT/runtime
ACTIONS=/usr/share/polkit-1/actions
ACTION_ID=org.svirtmanager.helper
POLICY=$ACTIONS/$ACTION_ID.policy
STATE_DIR=/var/lib/svirt-manager
SELINUX_MODULE=svirt_manager
SELINUX_DEVEL_MAKEFILE=/usr/share/selinux/devel/Makefile
APPARMOR_DIR=/etc/apparmor.d
APPARMOR_BASE=$APPARMOR_DIR/abstractions/svirt-qemu
NL='
'

die() {
  echo "install-helper.sh: $*" >&2
  exit 1
}

# Absolute, no control characters (a newline would end a line of the wrapper), no . or .. segments.
check_path() {
  case $1 in
    /*) ;;
    *) die "not an absolute path: $1" ;;
  esac
  case $1 in
    *"$NL"* | *[[:cntrl:]]*) die "path contains control characters: $1" ;;
    */./* | */../* | */. | */..) die "path has . or .. segments: $1" ;;
  esac
}

# A file root may trust: no symbolic link, owned by root, writable by nobody else.
assert_root_only() {
  [ ! -L "$1" ] || die "$1 is a symbolic link"
  [ -e "$1" ] || die "$1 does not exist"
  owner_mode=$(stat -c '%u %a' -- "$1")
  [ "${owner_mode% *}" = 0 ] || die "$1 is not owned by root"
  case ${owner_mode#* } in
    *[2367]? | *[2367]) die "$1 is writable by its group or by others" ;;
  esac
}

# The same for a path in the installed system and every directory above it (below DESTDIR).
assert_root_chain() {
  assert_root_only "$DESTDIR/"
  sofar=
  rest=${1#/}
  while [ -n "$rest" ]; do
    part=${rest%%/*}
    if [ "$part" = "$rest" ]; then rest=; else rest=${rest#*/}; fi
    [ -n "$part" ] || continue
    sofar=$sofar/$part
    assert_root_only "$DESTDIR$sofar"
  done
}

# One word in single quotes, for the wrapper script.
sh_quote() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# Copies FILE to DEST with owner and mode, replacing DEST in one rename (a running helper keeps its file).
install_file() {
  install -o root -g root -m "$1" -- "$2" "$3.new"
  mv -f -- "$3.new" "$3"
}

write_wrapper() {
  tmp=$DESTDIR$WRAPPER.new
  rm -f -- "$tmp"
  cat >"$tmp" <<EOF
#!/bin/sh
# sVirt Manager's root helper, started by pkexec (polkit action $ACTION_ID).
# Written by install-helper.sh: root-owned, 0755. The helper is a Node program run by the app's Electron.
# A fresh environment: pkexec cleared most of it already, and nothing like NODE_OPTIONS may ever reach a
# Node runtime that runs as root. Only the requesting uid crosses over (digits only).
# --jitless (a Node flag, honoured by Electron in node mode): no JIT, so no execmem, which SELinux policies
# deny to the helper's domain (Debian's unconfined_t by default, and the product's own module).
set -eu
# The app starts the helper without arguments; pkexec passes any a user adds, so none are accepted.
if [ "\$#" -ne 0 ]; then
  echo "svirt-helper: takes no arguments" >&2
  exit 2
fi
# A requester variable that is set but is not a uid fails closed (the helper would otherwise act for root).
requester=
if [ -n "\${PKEXEC_UID+set}" ]; then
  case \$PKEXEC_UID in '' | *[!0-9]*) echo "svirt-helper: PKEXEC_UID is not a uid; refusing to run" >&2; exit 2 ;; esac
  requester="PKEXEC_UID=\$PKEXEC_UID"
fi
sudoer=
if [ -n "\${SUDO_UID+set}" ]; then
  case \$SUDO_UID in '' | *[!0-9]*) echo "svirt-helper: SUDO_UID is not a uid; refusing to run" >&2; exit 2 ;; esac
  sudoer="SUDO_UID=\$SUDO_UID"
fi
cd /
exec /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 ELECTRON_RUN_AS_NODE=1 \$requester \$sudoer \\
  $(sh_quote "$1") --jitless $(sh_quote "$HELPER_SCRIPT")
EOF
  chown root:root -- "$tmp"
  chmod 0755 -- "$tmp"
  mv -f -- "$tmp" "$DESTDIR$WRAPPER"
}

# Whether to manage the SELinux module: on the running system when the kernel has SELinux on, in a
# scratch root when it has a policy store to install into.
selinux_wanted() {
  if [ -n "$DESTDIR" ]; then
    [ -d "$DESTDIR/var/lib/selinux" ] && [ -f "$DESTDIR/etc/selinux/config" ]
  else
    command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled
  fi
}

# semodule on the running system, or on the scratch root's store without loading into any kernel.
run_semodule() {
  if [ -n "$DESTDIR" ]; then semodule -p "$DESTDIR" -n "$@"; else semodule "$@"; fi
}

# semodule -i/-r end in load_policy, whose domain may write only to terminals and /dev/null. Given a pipe or
# a socket for its stdio (the app's first-run install, a package manager), each logs an AVC denial and
# the kernel hands it a null file anyway. So it keeps a terminal, and otherwise gets /dev/null outright.
run_semodule_loading() {
  if [ -t 2 ]; then run_semodule "$@"; else run_semodule "$@" </dev/null >/dev/null 2>&1; fi
}

# Compiles the module from DIR in a private directory and installs it. A failure fails the install:
# without the module an enforcing host starts no VM, and that must not pass unnoticed.
install_selinux_module() {
  [ -f "$1/$SELINUX_MODULE.te" ] && [ -f "$1/$SELINUX_MODULE.if" ] && [ -f "$1/$SELINUX_MODULE.fc" ] ||
    die "no $SELINUX_MODULE.te/.if/.fc in $1"
  [ -f "$SELINUX_DEVEL_MAKEFILE" ] ||
    die "SELinux is enabled but $SELINUX_DEVEL_MAKEFILE is missing: install selinux-policy-dev (Debian) or selinux-policy-devel (Fedora)"
  build=$(mktemp -d)
  for ext in te if fc; do cp -- "$1/$SELINUX_MODULE.$ext" "$build/"; done
  if ! (cd "$build" && make -f "$SELINUX_DEVEL_MAKEFILE" "$SELINUX_MODULE.pp" >"$build/build.log" 2>&1); then
    cat "$build/build.log" >&2
    rm -rf -- "$build"
    die "compiling the SELinux module $SELINUX_MODULE failed"
  fi
  run_semodule_loading -i "$build/$SELINUX_MODULE.pp" ||
    { rm -rf -- "$build"; die "semodule could not install $SELINUX_MODULE (run this script from a terminal to see semodule's own message)"; }
  rm -rf -- "$build"
  echo "installed the SELinux module $SELINUX_MODULE"
}

remove_selinux_module() {
  if run_semodule -l 2>/dev/null | grep -q "^$SELINUX_MODULE\([[:space:]]\|\$\)"; then
    run_semodule_loading -r "$SELINUX_MODULE" ||
      die "semodule could not remove $SELINUX_MODULE (run this script from a terminal to see semodule's own message)"
    echo "removed the SELinux module $SELINUX_MODULE"
  fi
}

do_install() {
  runtime= helper= policy= copy_runtime=no selinux_dir= apparmor_dir=
  while [ "$#" -gt 0 ]; do
    case $1 in
      --runtime) [ "$#" -ge 2 ] || die "--runtime needs a value"; runtime=$2; shift 2 ;;
      --helper-script) [ "$#" -ge 2 ] || die "--helper-script needs a value"; helper=$2; shift 2 ;;
      --policy) [ "$#" -ge 2 ] || die "--policy needs a value"; policy=$2; shift 2 ;;
      --copy-runtime) copy_runtime=yes; shift ;;
      --selinux-dir) [ "$#" -ge 2 ] || die "--selinux-dir needs a value"; selinux_dir=$2; shift 2 ;;
      --apparmor-dir) [ "$#" -ge 2 ] || die "--apparmor-dir needs a value"; apparmor_dir=$2; shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [ -n "$runtime" ] && [ -n "$helper" ] && [ -n "$policy" ] || die "install needs --runtime, --helper-script and --policy"
  for p in "$runtime" "$helper" "$policy"; do check_path "$p"; done
  [ -z "$selinux_dir" ] || check_path "$selinux_dir"
  [ -z "$apparmor_dir" ] || check_path "$apparmor_dir"
  [ -f "$helper" ] || die "no helper script at $helper"
  label_tool=$(dirname -- "$helper")/svirt-label-tree
  [ -f "$label_tool" ] || die "no svirt-label-tree beside $helper"
  [ -f "$policy" ] || die "no polkit policy at $policy"
  # The policy must be ours: pkexec applies its defaults to exactly the wrapper written below.
  grep -q "<action id=\"$ACTION_ID\">" "$policy" || die "$policy does not define the action $ACTION_ID"
  grep -q "<annotate key=\"org.freedesktop.policykit.exec.path\">$WRAPPER</annotate>" "$policy" ||
    die "$policy does not name $WRAPPER as the action's exec.path"

  if [ "$copy_runtime" = yes ]; then
    source_dir=$(dirname -- "$runtime")
    [ -f "$runtime" ] && [ -x "$runtime" ] || die "no runtime executable at $runtime"
    install -d -o root -g root -m 0755 -- "$DESTDIR$RUNTIME_PARENT"
    staging=$DESTDIR$RUNTIME_PARENT/.runtime.new
    rm -rf -- "$staging"
    mkdir -m 0755 -- "$staging"
    # -P: links are copied as links, never followed; one that resolves outside this root-owned copy (or
    # nowhere) would have root run whatever a user puts there later, so it is refused.
    cp -R -P -- "$source_dir/." "$staging"
    staged_top=$(readlink -e -- "$staging")
    outside=$(find "$staging" -type l -exec sh -c '
      top=$1; shift
      for link; do
        target=$(readlink -e -- "$link") || target=
        case $target in "$top" | "$top"/*) ;; *) printf "%s -> %s\n" "$link" "${target:-nothing}" ;; esac
      done' sh "$staged_top" {} +)
    if [ -n "$outside" ]; then
      rm -rf -- "$staging"
      die "the runtime in $source_dir has links pointing outside it, which root must not follow: ${outside%%$NL*}"
    fi
    chown -R root:root -- "$staging"
    chmod -R u-s,g-s,go-w -- "$staging"
    rm -rf -- "$DESTDIR$RUNTIME_DIR"
    mv -- "$staging" "$DESTDIR$RUNTIME_DIR"
    exec_runtime=$RUNTIME_DIR/$(basename -- "$runtime")
  else
    assert_root_chain "$runtime"
    [ -x "$DESTDIR$runtime" ] || die "$runtime is not executable"
    # A runtime copied by an earlier AppImage install is no longer used.
    rm -rf -- "$DESTDIR$RUNTIME_DIR"
    rmdir -- "$DESTDIR$RUNTIME_PARENT" 2>/dev/null || true
    exec_runtime=$runtime
  fi

  install -d -o root -g root -m 0755 -- "$DESTDIR$LIBEXEC" "$DESTDIR$ACTIONS"
  install_file 0644 "$helper" "$DESTDIR$HELPER_SCRIPT"
  install_file 0755 "$label_tool" "$DESTDIR$LABEL_TOOL"
  # after-remove runs when the package's own files are gone: it calls this copy.
  install_file 0755 "$0" "$DESTDIR$SELF_COPY"
  write_wrapper "$exec_runtime"
  install_file 0644 "$policy" "$DESTDIR$POLICY"

  # The module first: its file contexts give the wrapper the helper domain's entrypoint type.
  if [ -n "$selinux_dir" ] && selinux_wanted; then install_selinux_module "$selinux_dir"; fi
  if [ -n "$apparmor_dir" ] && [ -d "$DESTDIR$APPARMOR_DIR" ]; then
    [ -f "$apparmor_dir/abstractions/svirt-qemu" ] || die "no abstractions/svirt-qemu in $apparmor_dir"
    install -d -o root -g root -m 0755 -- "$DESTDIR$APPARMOR_DIR/abstractions"
    install_file 0644 "$apparmor_dir/abstractions/svirt-qemu" "$DESTDIR$APPARMOR_BASE"
    echo "installed the AppArmor abstraction $APPARMOR_BASE"
  fi
  if [ -z "$DESTDIR" ] && command -v restorecon >/dev/null 2>&1; then
    restorecon -R "$LIBEXEC" "$POLICY" >/dev/null 2>&1 || true
    [ ! -d "$RUNTIME_DIR" ] || restorecon -R "$RUNTIME_DIR" >/dev/null 2>&1 || true
    [ ! -d "$STATE_DIR" ] || restorecon -R "$STATE_DIR" >/dev/null 2>&1 || true
  fi
  echo "installed $WRAPPER (runs $exec_runtime) and $POLICY"
}

do_remove() {
  if selinux_wanted; then
    remove_selinux_module
    # The state directory's files carried the module's types: back to the policy's defaults.
    if [ -z "$DESTDIR" ] && [ -d "$STATE_DIR" ]; then restorecon -R "$STATE_DIR" >/dev/null 2>&1 || true; fi
  fi
  rm -f -- "$DESTDIR$WRAPPER" "$DESTDIR$HELPER_SCRIPT" "$DESTDIR$LABEL_TOOL" "$DESTDIR$POLICY" "$DESTDIR$SELF_COPY" "$DESTDIR$APPARMOR_BASE"
  rm -rf -- "$DESTDIR$RUNTIME_DIR" "$DESTDIR$RUNTIME_PARENT/.runtime.new"
  rmdir -- "$DESTDIR$RUNTIME_PARENT" "$DESTDIR$LIBEXEC" 2>/dev/null || true
  echo "removed $WRAPPER and $POLICY"
}

[ "$(id -u)" = 0 ] || die "must run as root"
[ -z "$DESTDIR" ] || check_path "$DESTDIR"
case ${1-} in
  install) shift; do_install "$@" ;;
  remove) do_remove ;;
  *) die "usage: install-helper.sh install --runtime EXE --helper-script FILE --policy FILE [--copy-runtime] [--selinux-dir DIR] [--apparmor-dir DIR] | remove" ;;
esac
