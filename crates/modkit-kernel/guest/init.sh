#!/bin/sh
# modkit guest /init: mount the pseudo filesystems, load the runtime module, play the
# plan, report on ttyS1, power off. Only busybox applets named here are installed; the
# module tools are kmod's, by full path.
/bin/mount -t proc proc /proc
/bin/mount -t sysfs sysfs /sys
/bin/mount -t devtmpfs devtmpfs /dev
/bin/mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
/bin/mount -t tmpfs tmpfs /run
/bin/mount -t tmpfs tmpfs /tmp
KVER=$(/bin/uname -r)
if ! /bin/busybox insmod /lib/modules/$KVER/extra/modkit_rt.ko; then
  echo "@@ fatal modkit_rt did not load" > /dev/ttyS1
fi
# Boot settings the image carries as empty files (docs/kernel-driver.md, "Taints"):
# forget the once-per-boot messages modkit_rt's own load used up (the unsigned-module
# notice), then enforce signatures (only now: modkit_rt itself is unsigned).
if /bin/cat /modkit/clear_warn_once > /dev/null 2>&1; then
  echo 1 > /sys/kernel/debug/clear_warn_once
fi
if /bin/cat /modkit/sig_enforce > /dev/null 2>&1; then
  echo 1 > /sys/module/module/parameters/sig_enforce
fi
/modkit/runner /modkit/plan > /dev/ttyS1 2>/dev/ttyS0
echo "@@ runner-exit $?" > /dev/ttyS1
/bin/sync
/bin/poweroff -f
