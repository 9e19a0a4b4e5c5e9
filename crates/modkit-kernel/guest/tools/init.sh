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
# opt-in measurement knobs (toolcheck.rs ToolCheckOptions): mt_storm_only skips the
# sequence, mt_rounds=N repeats the storm rounds, mt_trace dumps each storm's process and
# syscall trace (CLOCK_MONOTONIC), mt_phases adds storms of cheaper commands (busybox
# true, modprobe -V, modprobe -n) and modkit's own phase times (MODKIT_TRACE_TIMES)
CMD=$(/bin/cat /proc/cmdline)
ROUNDS=1
TRACE=
for w in $CMD; do
  case $w in
    mt_rounds=*) ROUNDS=${w#mt_rounds=} ;;
    mt_trace) TRACE=1 ;;
    mt_phases) PHASES=1 ;;
  esac
done
{
  case " $CMD " in *" mt_storm_only "*) SETS= ;; *) SETS="kmod modkit" ;; esac
  for set in $SETS; do
    cleanup
    case $set in kmod) T=/kb ;; *) T=/mb ;; esac
    export T
    /bin/sh /seq.sh $set
  done
  cleanup
  TR=/sys/kernel/tracing
  if [ -n "$PHASES" ]; then
    phase() { # label command...
      l=$1; shift
      echo "@@phase $l"; /storm 100 "$@" 2>&1; echo "@@phaseend"
    }
    phase true /bin/busybox true
    for set in kmod modkit modkit kmod; do
      case $set in kmod) T=/kb ;; *) T=/mb ;; esac
      phase "$set -V" $T/modprobe -V
      cleanup
      phase "$set -n" $T/modprobe -n mt_slowok
      phase "$set -n -q nothere" $T/modprobe -n -q mt_nothere
    done
    # the same start-ups without address-space randomisation: shows how much of a run's
    # cost under TCG is translating code (translations are found again only at the same
    # virtual address)
    echo 0 > /proc/sys/kernel/randomize_va_space
    for set in kmod modkit modkit kmod; do
      case $set in kmod) T=/kb ;; *) T=/mb ;; esac
      phase "$set -V norandmaps" $T/modprobe -V
      phase "$set -n norandmaps" $T/modprobe -n mt_slowok
    done
    echo 2 > /proc/sys/kernel/randomize_va_space
    export MODKIT_TRACE_TIMES=/tmp/times
  fi
  # each storm twice (per round), in the order kmod, modkit, modkit, kmod (the host's
  # load drifts)
  ORDER=
  r=0
  while [ $r -lt $ROUNDS ]; do ORDER="$ORDER kmod modkit modkit kmod"; r=$((r + 1)); done
  if [ -n "$TRACE" ]; then
    echo mono > $TR/trace_clock
    echo 16384 > $TR/buffer_size_kb
  fi
  for mod in mt_slowfail mt_slowok; do
    for set in $ORDER; do
      case $set in kmod) T=/kb ;; *) T=/mb ;; esac
      cleanup
      # each storm is a new event: no outcome record of the previous storm's modprobes
      # (modkit keeps a failure for 5 s, ops/lock.rs)
      /bin/rm -rf /run/modkit
      echo 0 > $TR/tracing_on
      echo > $TR/trace
      echo 1 > $TR/events/syscalls/sys_enter_finit_module/enable
      echo 1 > $TR/events/syscalls/sys_enter_init_module/enable
      if [ -n "$TRACE" ]; then
        for e in sched/sched_process_exec sched/sched_process_exit sched/sched_switch raw_syscalls/sys_enter raw_syscalls/sys_exit; do
          echo 1 > $TR/events/$e/enable
        done
      fi
      /bin/dmesg -c > /dev/null
      echo 1 > $TR/tracing_on
      /storm 100 $T/modprobe $mod > /tmp/storm.out 2>&1
      echo 0 > $TR/tracing_on
      inits=$(/bin/dmesg | /bin/grep -c "$mod: init")
      calls=$(/bin/grep -c "init_module(" $TR/trace)
      loaded=$(/bin/grep -c "^$mod " /proc/modules)
      echo "@@storm $set $mod inits=$inits calls=$calls loaded=$loaded"
      /bin/cat /tmp/storm.out
      if [ -n "$TRACE" ]; then
        echo "@@trace"
        /bin/cat $TR/trace
        echo "@@traceend"
        for e in sched/sched_process_exec sched/sched_process_exit sched/sched_switch raw_syscalls/sys_enter raw_syscalls/sys_exit; do
          echo 0 > $TR/events/$e/enable
        done
      fi
      if [ -n "$PHASES" ] && [ -f /tmp/times ]; then
        echo "@@times"; /bin/cat /tmp/times; echo "@@timesend"; /bin/rm -f /tmp/times
      fi
      echo "@@stormend"
    done
  done
  echo "@@done"
} > /dev/ttyS1 2>&1
/bin/sync
/bin/poweroff -f
