#!/usr/bin/env bash
# Benchmark: modkit depmod vs kmod 30's depmod on Debian's 6.1 cloud tree (1,121 modules)
# and full amd64 tree (4,023 modules), side by side with hyperfine, then check that the
# two tools wrote byte-identical files.
#
#   bash crates/modkit-ko/benches/depmod-vs-kmod.sh            # both trees
#   TREES=cloud bash crates/modkit-ko/benches/depmod-vs-kmod.sh
#
# Packages come from Debian's archive via `apt-get download`, cached in
# $MODKIT_CI_CACHE (default /var/cache/modkit-ci). Needs hyperfine (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/../../.."
CACHE=${MODKIT_CI_CACHE:-/var/cache/modkit-ci}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
MODKIT=${MODKIT:-$TARGET/release/modkit}
RUNS=${RUNS:-20}
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ -x "$MODKIT" ] || cargo build --release --quiet --bin modkit
mkdir -p "$CACHE"
newest() { apt-cache search --names-only "$1" | awk '{print $1}' | sort -V | tail -1; }
IMG=$(newest '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$')
[ -n "$IMG" ] || { apt-get update -qq; IMG=$(newest '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$'); }
CLOUD=${IMG#linux-image-}; CLOUD=${CLOUD%-unsigned}
FULL=${CLOUD%-cloud-amd64}-amd64
fetch() {
  ls "$CACHE/${1}_"*.deb >/dev/null 2>&1 || (cd "$CACHE" && apt-get download -q "$1" >/dev/null 2>&1)
  local deb; deb=$(ls "$CACHE/${1}_"*.deb | sort -V | tail -1)
  local dir="$CACHE/x/$(basename "$deb" .deb)"
  [ -d "$dir" ] || { mkdir -p "$dir.tmp" && dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir"; }
  echo "$dir"
}
KMOD=$(fetch kmod)/bin/kmod
"$KMOD" --version | head -1
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ln -s "$KMOD" "$W/depmod"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for t in ${TREES:-cloud full}; do
  case $t in cloud) v=$CLOUD ;; full) v=$FULL ;; esac
  src=$(fetch "linux-image-$v-unsigned")
  for side in kmod modkit; do mkdir -p "$W/$t-$side" && cp -a "$src/lib" "$W/$t-$side/"; done
  n=$(find "$W/$t-kmod/lib/modules/$v" -name '*.ko*' | wc -l)
  echo "== $v: $n modules"
  hyperfine -N --warmup 3 --runs "$RUNS" --export-markdown "$W/$t.md" \
    -n "kmod 30 depmod" "$W/depmod -b $W/$t-kmod $v" \
    -n "modkit depmod" "$MODKIT depmod -b $W/$t-modkit $v"
  cat "$W/$t.md"
  for f in modules.dep modules.dep.bin modules.alias modules.alias.bin modules.softdep \
           modules.symbols modules.symbols.bin modules.builtin.bin modules.builtin.alias.bin modules.devname; do
    cmp "$W/$t-kmod/lib/modules/$v/$f" "$W/$t-modkit/lib/modules/$v/$f"
  done
  echo "outputs byte-identical on $v"
done
