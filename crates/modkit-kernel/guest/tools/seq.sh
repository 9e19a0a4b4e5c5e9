#!/bin/sh
# The command sequence run once with kmod 30's tools and once with modkit's ($T holds
# insmod, rmmod, lsmod and modprobe); each step's exit status, stdout, stderr and
# /proc/modules are reported for toolcheck.rs to compare byte for byte.
S=$1
M=/lib/modules/$(/bin/uname -r)/extra
n=0
report() { # label...
  n=$((n + 1))
  echo "@@step $S $n $*"
  echo "@@rc $rc"
  echo "@@out"; /bin/cat /tmp/o; echo; echo "@@err"; /bin/cat /tmp/e; echo
  echo "@@mods"; /bin/cat /proc/modules; echo; echo "@@end"
}
t() { # a tool of the set under test: t TOOL ARGS...
  tool=$1; shift
  # run as ./TOOL from the set's directory: argv[0] (in getopt's messages) is the same
  # for both sets
  (cd "$T" && "./$tool" "$@") > /tmp/o 2> /tmp/e; rc=$?
  report "$tool" "$@"
}
c() { # any other command
  "$@" > /tmp/o 2> /tmp/e; rc=$?
  report "$@"
}
# load with dependencies, list, remove with unused dependencies
t modprobe mt_top
t lsmod
t modprobe -r mt_top
t modprobe -r mt_mid
t modprobe -r mt_base
t modprobe -v mt_top
t modprobe -r -v mt_top
t rmmod mt_mid mt_base
# softdeps
t modprobe -v mt_soft
t modprobe -r -v mt_soft
# options: modprobe.d, kernel command line, command line; an unknown parameter
t modprobe -v mt_param val=7
c /bin/cat /sys/module/mt_param/parameters/val /sys/module/mt_param/parameters/name
t rmmod mt_param
t modprobe mt_param
c /bin/cat /sys/module/mt_param/parameters/val /sys/module/mt_param/parameters/name
t rmmod mt_param
t modprobe mt_param bogus=1
t insmod $M/mt_param.ko val=9 name=direct
c /bin/cat /sys/module/mt_param/parameters/val /sys/module/mt_param/parameters/name
t rmmod $M/mt_param.ko
# blacklist (modprobe.d and modprobe.blacklist= on the kernel command line)
t modprobe mt-black-alias
t modprobe -b mt_black
t modprobe mt_black
t rmmod mt_black
t modprobe mt-cmdblack-alias
t modprobe -v mt-conf-alias
t modprobe -r mt-conf-alias
# failures
t modprobe mt_fail
t modprobe -q mt_fail
t insmod $M/mt_fail.ko
t modprobe nonexistent_mod
t modprobe -q nonexistent_mod
t modprobe -a mt_pre nonexistent_mod mt_post
t modprobe -r -a mt_pre mt_post
t insmod /nonexistent.ko
# kmod's texts for an unknown symbol, a file that is not ELF and a truncated one
t insmod $M/mt_mid.ko
c /bin/sh -c 'echo garbage > /tmp/bad.ko; /bin/cat $0 > /tmp/cut.ko' /bin/sh
t insmod /tmp/bad.ko
t modprobe --show-modversions /tmp/bad.ko
t modinfo /tmp/bad.ko
t modinfo -F vermagic /tmp/cut.ko
t rmmod nonexistent_mod
t modprobe
t modprobe --bogus-option
# in use, first-time, force
t insmod $M/mt_base.ko
t insmod $M/mt_base.ko
t modprobe mt_base
t modprobe --first-time mt_base
t insmod $M/mt_mid.ko
t rmmod mt_base
t modprobe -r mt_base
t rmmod -f mt_base
t modprobe -r --remove-holders mt_base
t modprobe -r --first-time mt_base
t modprobe -r mt_base
t modprobe -r -w 300 mt_top
# install and remove commands
t modprobe mt_inst
t modprobe -r mt_inst
t modprobe mt_inst x=1
t modprobe -i mt_inst
t modprobe -r -i mt_inst
# dry runs and queries
t modprobe -n -v mt_top
t modprobe -D mt_soft
t modprobe -R mt-conf-alias
t modprobe -c
# a compressed module (the kernel decompresses it itself when it can)
t modprobe -v mt_comp
t lsmod
t rmmod mt_comp
t insmod $M/mt_comp.ko.xz
t rmmod mt_comp
# forced load (vermagic and modversions ignored: taints the module F)
t modprobe -f mt_pre
t rmmod mt_pre
t lsmod
