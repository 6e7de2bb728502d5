#!/bin/sh
# PID 1 of the SELinux test host (run by /sbin/svirt-test-init from the per-run disk at /opt/svirt-test).
# Loads the policy, enters the desktop user's context, runs the scenario, powers off. Lines starting
# with SVIRT-HOST are read by run.mjs on the serial console.
. /opt/svirt-test/host-init.sh
say "booted uptime=$(cut -d' ' -f1 /proc/uptime)"
# Every AVC line must reach the kernel log: without auditd the kernel prints them rate-limited.
echo 0 >/proc/sys/kernel/printk_ratelimit
# -i: load the policy (SELinux is on from the kernel command line); the mode is the command line's.
if ! load_policy -i; then say "load_policy failed"; echo o >/proc/sysrq-trigger; fi
mount -o remount,rw / 
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
# What was mounted before the policy, and the tmpfs roots, get the labels a booted system gives them.
restorecon -R /dev /run /tmp 2>/dev/null
say "policy loaded uptime=$(cut -d' ' -f1 /proc/uptime) mode=$(getenforce) context=$(cat /proc/self/attr/current | tr -d '\0')"
# The desktop user's context (what pkexec's caller has). kernel_t -> unconfined_t is allowed while the
# kernel is permissive only: the scenario switches to enforcing itself, from inside this context.
runcon unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023 \
  /opt/svirt-test/node/node --jitless /opt/svirt-test/scenario.mjs
say "scenario exited $? uptime=$(cut -d' ' -f1 /proc/uptime)"
power_off
