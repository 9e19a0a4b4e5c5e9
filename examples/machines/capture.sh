#!/bin/sh
# Prints this machine's devices as `modkit simulate --tree TREE --devices FILE` reads them:
# one `BUS NAME MODALIAS` line per device whose uevent carries a MODALIAS (what udevd's
# kmod builtin loads modules for at coldplug), the bus from the device's `subsystem` link
# (else the modalias's prefix). Usage: sh capture.sh > my-machine.devices
set -eu
echo "# $(uname -n) $(uname -r), $(nproc) CPUs, captured $(date -u +%Y-%m-%d) by examples/machines/capture.sh"
find /sys/devices -name uevent 2>/dev/null | LC_ALL=C sort | while read -r f; do
  m=$(sed -n 's/^MODALIAS=//p' "$f" 2>/dev/null | head -1) || continue
  [ -n "$m" ] || continue
  d=${f%/uevent}
  b=$(basename "$(readlink "$d/subsystem" 2>/dev/null)" 2>/dev/null || true)
  [ -n "$b" ] || b=${m%%:*}
  echo "$b $(basename "$d") $m"
done
