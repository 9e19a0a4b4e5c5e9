#!/bin/sh
# modkit kmod-tools guest /init (crates/modkit-kernel/src/toolcheck.rs): the same command
# sequence with kmod 30's tools (/kb) and modkit's (/mb), then the storms, reported on
# ttyS1.
/bin/mount -t proc proc /proc
/bin/mount -t sysfs sysfs /sys
/bin/mount -t devtmpfs devtmpfs /dev
/bin/mount -t tmpfs tmpfs /run
/bin/mount -t tmpfs tmpfs /tmp
/bin/mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
cleanup() {
  # unload every test module, holders first (kmod's rmmod)
  for i in 1 2 3 4; do
    for m in $(/bin/cat /proc/modules | /bin/grep -o '^mt_[a-z_]*'); do
      /kb/rmmod "$m" > /dev/null 2>&1
    done
  done
  /bin/rm -rf /run/modkit
}
{
  for set in kmod modkit; do
    cleanup
    case $set in kmod) T=/kb ;; *) T=/mb ;; esac
    export T
    /bin/sh /seq.sh $set
  done
  cleanup
  TR=/sys/kernel/tracing
  # each storm twice, in the order kmod, modkit, modkit, kmod (the host's load drifts)
  for mod in mt_slowfail mt_slowok; do
    for set in kmod modkit modkit kmod; do
      case $set in kmod) T=/kb ;; *) T=/mb ;; esac
      cleanup
      # each storm is a new event: no outcome record of the previous storm's modprobes
      # (modkit keeps a failure for 5 s, ops/lock.rs)
      /bin/rm -rf /run/modkit
      echo 0 > $TR/tracing_on
      echo > $TR/trace
      echo 1 > $TR/events/syscalls/sys_enter_finit_module/enable
      echo 1 > $TR/events/syscalls/sys_enter_init_module/enable
      /bin/dmesg -c > /dev/null
      echo 1 > $TR/tracing_on
      /storm 100 $T/modprobe $mod > /tmp/storm.out 2>&1
      echo 0 > $TR/tracing_on
      inits=$(/bin/dmesg | /bin/grep -c "$mod: init")
      calls=$(/bin/grep -c "init_module(" $TR/trace)
      loaded=$(/bin/grep -c "^$mod " /proc/modules)
      echo "@@storm $set $mod inits=$inits calls=$calls loaded=$loaded"
      /bin/cat /tmp/storm.out
      echo "@@stormend"
    done
  done
  echo "@@done"
} > /dev/ttyS1 2>&1
/bin/sync
/bin/poweroff -f
