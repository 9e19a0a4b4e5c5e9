#!/usr/bin/env bash
# Benchmark: modkit depmod against kmod 30's (Debian 12) and kmod 34's (Debian sid) depmod,
# side by side with hyperfine, on Debian's module trees; then checks that the tools wrote
# byte-identical files.
#
#   bash crates/modkit-ko/benches/depmod-vs-kmod.sh                 # all three trees
#   TREES=xz bash crates/modkit-ko/benches/depmod-vs-kmod.sh        # one tree
#
# Trees: `cloud` (6.1 cloud, 1,121 plain .ko), `full` (6.1 amd64, 4,023 plain .ko), `xz`
# (Debian 12's 6.12.117 amd64, 4,230 .ko.xz). Cases per tree:
#   cold:    every tool indexes the tree from scratch (modkit with --no-cache);
#   rerun:   the same tree again, nothing changed (modkit reuses modules.modkit-cache);
#   changed: one module file (isofs, or $CHANGED) replaced by a different build of itself
#            before every run
#            (what DKMS and kernel packages do before calling depmod).
#
# kmod 34 comes from Debian sid (`apt-get download` through a private apt configuration
# under the cache, checked with debian-archive-keyring) and runs with sid's own libraries
# and dynamic loader. Everything is cached in $MODKIT_CI_CACHE (default /var/cache/modkit-ci).
# Needs hyperfine (apt-get install hyperfine) and xz-utils.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CACHE=${MODKIT_CI_CACHE:-/var/cache/modkit-ci}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
MODKIT=${MODKIT:-$TARGET/release/modkit}
RUNS=${RUNS:-10}
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
command -v xz >/dev/null || { echo "needs xz (apt-get install xz-utils)" >&2; exit 1; }
[ -x "$MODKIT" ] || cargo build --release --quiet --bin modkit
mkdir -p "$CACHE"
newest() { apt-cache search --names-only "$1" | awk '{print $1}' | sort -V | tail -1; }
IMG=$(newest '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$')
[ -n "$IMG" ] || { apt-get update -qq; IMG=$(newest '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$'); }
CLOUD=${IMG#linux-image-}; CLOUD=${CLOUD%-unsigned}
FULL=${CLOUD%-cloud-amd64}-amd64
XZIMG=$(newest '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$')
XZ=${XZIMG#linux-image-}; XZ=${XZ%-unsigned}
unpack() { # $1 = .deb → extracted directory (cached)
  local dir="$CACHE/x/$(basename "$1" .deb)"
  [ -d "$dir" ] || { mkdir -p "$dir.tmp" && dpkg-deb -x "$1" "$dir.tmp" && mv "$dir.tmp" "$dir"; }
  echo "$dir"
}
fetch() { # $1 = package from the host's apt sources
  ls "$CACHE/${1}_"*.deb >/dev/null 2>&1 || (cd "$CACHE" && apt-get download -q "$1" >/dev/null 2>&1)
  unpack "$(ls "$CACHE/${1}_"*.deb | sort -V | tail -1)"
}
K34=$(bash .ci/kmod34)   # Debian sid's kmod 34, run with sid's own loader and libraries
KMOD30=$(fetch kmod)/bin/kmod
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
# kmod picks its tool by argv[0]: the link must be called depmod.
mkdir -p "$W/kmod30" && ln -s "$KMOD30" "$W/kmod30/depmod"
ln -s "$K34/depmod" "$W/depmod34"
echo "kmod 30: $("$KMOD30" --version | head -1); kmod 34: $("$W/depmod34" --version | head -1)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
# modkit writes kmod 30's .bin layout; kmod 34's .bin files hold the same entries with the
# root node placed elsewhere, so against kmod 34 the text files are compared.
TEXTFILES="modules.dep modules.alias modules.softdep modules.symbols modules.devname"
OUTFILES="$TEXTFILES modules.dep.bin modules.alias.bin modules.symbols.bin modules.builtin.bin modules.builtin.alias.bin"
same30() { for f in $OUTFILES; do cmp "$1/$f" "$2/$f"; done; }
same34() { for f in $TEXTFILES; do cmp "$1/$f" "$2/$f"; done; }
for t in ${TREES:-cloud full xz}; do
  case $t in
    cloud) v=$CLOUD; src=$(fetch "linux-image-$v-unsigned") ;;
    full) v=$FULL; src=$(fetch "linux-image-$v-unsigned") ;;
    xz) v=$XZ; src=$(fetch "linux-image-$v-unsigned") ;;
    *) echo "unknown tree $t (cloud, full, xz)" >&2; exit 2 ;;
  esac
  for side in k30 k34 mk; do mkdir -p "$W/$t-$side" && cp -a "$src/lib" "$W/$t-$side/"; done
  n=$(find "$W/$t-k30/lib/modules/$v" -name '*.ko*' | wc -l)
  echo "== $v: $n modules"
  # The cache trusts a file's stat only when its last change is 2 s older than the run.
  sleep 3
  hyperfine -N --warmup 2 --runs "$RUNS" --export-markdown "$W/$t-cold.md" \
    -n "kmod 30 depmod" "$W/kmod30/depmod -b $W/$t-k30 $v" \
    -n "kmod 34 depmod" "$W/depmod34 -b $W/$t-k34 $v" \
    -n "modkit depmod (cold, --no-cache)" "$MODKIT depmod --no-cache -b $W/$t-mk $v"
  same30 "$W/$t-k30/lib/modules/$v" "$W/$t-mk/lib/modules/$v"
  same34 "$W/$t-k34/lib/modules/$v" "$W/$t-mk/lib/modules/$v"
  echo "cold: outputs byte-identical to kmod 30's (all ten files) and kmod 34's (text files)"
  "$MODKIT" depmod -b "$W/$t-mk" "$v"   # writes the cache
  hyperfine -N --warmup 1 --runs "$RUNS" --export-markdown "$W/$t-rerun.md" \
    -n "kmod 34 depmod, rerun" "$W/depmod34 -b $W/$t-k34 $v" \
    -n "modkit depmod, rerun (cache)" "$MODKIT depmod -b $W/$t-mk $v"
  # One module alternates between two builds of itself (the same ELF, compressed at
  # another level, or a byte of padding appended to a plain .ko).
  rel=$(cd "$W/$t-k30/lib/modules/$v" && find kernel -name "${CHANGED:-isofs}.ko*" | head -1)
  [ -n "$rel" ] || { echo "no module ${CHANGED:-isofs} in $v (set CHANGED=name)" >&2; exit 1; }
  orig=$W/$t-k30/lib/modules/$v/$rel
  cp "$orig" "$W/alt-a"
  case $rel in
    *.xz) xz -dc "$orig" | xz -q -C crc32 --lzma2=dict=1MiB -0 > "$W/alt-b" ;;
    *) cp "$orig" "$W/alt-b" && printf '\0' >> "$W/alt-b" ;;
  esac
  cat > "$W/flip" <<EOF
#!/bin/sh
for s in k34 mk; do
  d=$W/$t-\$s/lib/modules/$v/$rel
  if cmp -s "\$d" "$W/alt-a"; then cp "$W/alt-b" "\$d"; else cp "$W/alt-a" "\$d"; fi
done
EOF
  chmod +x "$W/flip"
  hyperfine -N --warmup 1 --runs "$RUNS" --prepare "$W/flip" --export-markdown "$W/$t-changed.md" \
    -n "kmod 34 depmod, one module changed" "$W/depmod34 -b $W/$t-k34 $v" \
    -n "modkit depmod, one module changed (cache)" "$MODKIT depmod -b $W/$t-mk $v"
  same34 "$W/$t-k34/lib/modules/$v" "$W/$t-mk/lib/modules/$v"
  cp "$W/$t-mk/lib/modules/$v/$rel" "$orig" && "$W/kmod30/depmod" -b "$W/$t-k30" "$v"
  same30 "$W/$t-k30/lib/modules/$v" "$W/$t-mk/lib/modules/$v"
  echo "changed: outputs byte-identical to kmod 30's and kmod 34's"
  cat "$W/$t-cold.md" "$W/$t-rerun.md" "$W/$t-changed.md"
done
