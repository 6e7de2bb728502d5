#!/bin/sh
# deb postinst / rpm %post, as an electron-builder template: it fills in the two names in the lines below
# and fails on any other dollar-brace word made only of letters, so shell variables are written $name
# or with an operator inside the braces.
# A custom after-install replaces electron-builder's default one, so this repeats what that one does
# (templates/linux/after-install.tpl: the /usr/bin link, chrome-sandbox's mode, the mime and desktop
# databases, the AppArmor profile), then installs the root helper and its polkit action with
# install-helper.sh, the script an AppImage's first run uses too.
# DESTDIR (environment, default empty) is a scratch root for packaging tests: with it, nothing on the
# running system is touched (no update-alternatives, databases or AppArmor).
set -u
root=${DESTDIR:-}
app='/opt/${sanitizedProductName}'
exe='${executable}'

# The command on PATH.
if [ -z "$root" ] && command -v update-alternatives >/dev/null 2>&1; then
  # A plain link left by an older install would make update-alternatives refuse.
  if [ -L "/usr/bin/$exe" ] && [ -e "/usr/bin/$exe" ] && [ "$(readlink "/usr/bin/$exe")" != "/etc/alternatives/$exe" ]; then
    rm -f "/usr/bin/$exe"
  fi
  update-alternatives --install "/usr/bin/$exe" "$exe" "$app/$exe" 100 || ln -sf "$app/$exe" "/usr/bin/$exe"
else
  install -d -o root -g root -m 0755 "$root/usr/bin"
  ln -sf "$app/$exe" "$root/usr/bin/$exe"
fi

# Chromium's sandbox needs chrome-sandbox setuid root only where unprivileged user namespaces do not work.
if [ -e "$root$app/chrome-sandbox" ]; then
  chown root:root "$root$app/chrome-sandbox"
  if [ -L /proc/self/ns/user ] && unshare --user true >/dev/null 2>&1; then
    chmod 0755 "$root$app/chrome-sandbox"
  else
    chmod 4755 "$root$app/chrome-sandbox"
  fi
fi

if [ -z "$root" ]; then
  if command -v update-mime-database >/dev/null 2>&1; then
    update-mime-database /usr/share/mime || true
  fi
  if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database /usr/share/applications || true
  fi
  # Ubuntu 24.04+ restricts unprivileged user namespaces to AppArmor-profiled programs. The dry run
  # skips AppArmor versions that cannot parse the profile electron-builder ships (abi/4.0).
  if apparmor_status --enabled >/dev/null 2>&1; then
    profile_source="$app/resources/apparmor-profile"
    profile_target="/etc/apparmor.d/$exe"
    if apparmor_parser --skip-kernel-load --debug "$profile_source" >/dev/null 2>&1; then
      cp -f "$profile_source" "$profile_target"
      # Loading a profile means nothing inside a chroot (image builds).
      if ! { [ -x /usr/bin/ischroot ] && /usr/bin/ischroot; } && command -v apparmor_parser >/dev/null 2>&1; then
        apparmor_parser --replace --write-cache --skip-read-cache "$profile_target"
      fi
    else
      echo "Skipping the AppArmor profile: this AppArmor cannot parse it"
    fi
  fi
fi

# The root helper, its polkit action and, where SELinux is on, its policy module (where AppArmor is, its qemu abstraction) (a failure fails the package's configuration: without the
# helper the app cannot start a VM, and a half-installed helper must not stay unnoticed).
DESTDIR=$root /bin/sh "$root$app/resources/install-helper.sh" install \
  --runtime "$app/$exe" \
  --helper-script "$root$app/resources/svirt-helper.js" \
  --policy "$root$app/resources/org.svirtmanager.helper.policy" \
  --selinux-dir "$root$app/resources/selinux" \
  --apparmor-dir "$root$app/resources/apparmor"
