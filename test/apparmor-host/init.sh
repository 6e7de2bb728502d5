#!/bin/sh
# PID 1 of the AppArmor test host (run by /sbin/svirt-test-init from the per-run disk at /opt/svirt-test).
# Mounts securityfs (AppArmor's interface), runs the scenario as root (unconfined, as pkexec's caller
# and the helper are on a desktop), powers off. Lines starting with SVIRT-HOST are read by run.mjs.
. /opt/svirt-test/host-init.sh
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
say "booted uptime=$(cut -d' ' -f1 /proc/uptime)"
# Every AppArmor audit line must reach the kernel log: without auditd the kernel prints them rate-limited.
echo 0 >/proc/sys/kernel/printk_ratelimit
mount -o remount,rw /
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
say "apparmor ready uptime=$(cut -d' ' -f1 /proc/uptime) enabled=$(cat /sys/module/apparmor/parameters/enabled) lsm=$(cat /sys/kernel/security/lsm) profiles=$(wc -l </sys/kernel/security/apparmor/profiles)"
/opt/svirt-test/node/node /opt/svirt-test/scenario.mjs
say "scenario exited $? uptime=$(cut -d' ' -f1 /proc/uptime)"
power_off
