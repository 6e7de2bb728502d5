# The start every LSM test host's init.sh shares (sourced first; /sbin/svirt-test-init runs init.sh from the
# per-run disk at /opt/svirt-test as PID 1): a PATH, the kernel's file systems, `say` for the progress
# lines the runner reads on the serial console, and `power_off` for the end.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
say() { echo "SVIRT-HOST: $*"; }
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
power_off() {
  sync
  echo 1 >/proc/sys/kernel/sysrq
  echo o >/proc/sysrq-trigger
  sleep 30
}
