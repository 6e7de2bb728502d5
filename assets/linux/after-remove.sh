#!/bin/sh
# deb postrm / rpm %postun, as an electron-builder template (see after-install.sh for the rule on
# dollar-brace words). It undoes after-install.sh: the /usr/bin link, the AppArmor profile (as
# electron-builder's default after-remove does), then the root helper and its polkit action.
# DESTDIR (environment, default empty) is a scratch root for packaging tests.
set -u
root=${DESTDIR:-}
app='/opt/${sanitizedProductName}'
exe='${executable}'

# An upgrade is no removal: deb passes "upgrade" (the new version's postinst follows), rpm passes the
# number of versions left, 1, after the new version's %post has already installed its helper.
case ${1:-remove} in
  upgrade | failed-upgrade | abort-upgrade | [1-9]*) exit 0 ;;
esac

if [ -z "$root" ] && command -v update-alternatives >/dev/null 2>&1; then
  update-alternatives --remove "$exe" "$app/$exe" || true
fi
# A plain link (no update-alternatives, or its fallback in after-install.sh).
if [ -L "$root/usr/bin/$exe" ] && [ "$(readlink "$root/usr/bin/$exe")" = "$app/$exe" ]; then
  rm -f "$root/usr/bin/$exe"
fi

if [ -z "$root" ] && [ -f "/etc/apparmor.d/$exe" ]; then
  # Unload before deleting, so the profile is not enforced until the next reboot; not in a chroot.
  if apparmor_status --enabled >/dev/null 2>&1; then
    if ! { [ -x /usr/bin/ischroot ] && /usr/bin/ischroot; } && command -v apparmor_parser >/dev/null 2>&1; then
      apparmor_parser --remove "/etc/apparmor.d/$exe" || true
    fi
  fi
  rm -f "/etc/apparmor.d/$exe"
fi

# The package's files are gone by now: install-helper.sh left a copy of itself next to the helper.
if [ -f "$root/usr/libexec/svirt-manager/install-helper.sh" ]; then
  DESTDIR=$root /bin/sh "$root/usr/libexec/svirt-manager/install-helper.sh" remove
fi
