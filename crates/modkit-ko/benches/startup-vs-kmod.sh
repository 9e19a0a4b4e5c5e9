#!/usr/bin/env bash
# Start-up benchmark: `modinfo xfs` and `modprobe -D <modalias>` with kmod 30 (Debian 12),
# kmod 34 (Debian sid, via .ci/kmod34) and modkit, on Debian's full 6.1 amd64 tree (plain
# .ko) indexed by kmod 34's depmod. Two measures side by side:
#   - wall time, hyperfine -N (mean of RUNS runs after warm-up; noisy on a shared machine);
#   - instructions executed, counted by valgrind's callgrind (the whole process: dynamic
#     loading, libc start-up and the tool), which does not depend on the machine's load.
# Each tool's output is also compared (they must agree byte for byte).
#
#   bash crates/modkit-ko/benches/startup-vs-kmod.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
CACHE=${MODKIT_CI_CACHE:-/var/cache/modkit-ci}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
MODKIT=${MODKIT:-$TARGET/release/modkit}
RUNS=${RUNS:-50}
for t in hyperfine valgrind; do
  command -v $t >/dev/null || { echo "needs $t (apt-get install $t)" >&2; exit 1; }
done
[ -x "$MODKIT" ] || cargo build --release --quiet --bin modkit
newest() { apt-cache search --names-only "$1" | awk '{print $1}' | sort -V | tail -1; }
IMG=$(newest '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$')
[ -n "$IMG" ] || { apt-get update -qq; IMG=$(newest '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$'); }
V=${IMG#linux-image-}; V=${V%-unsigned}
fetch() {
  ls "$CACHE/${1}_"*.deb >/dev/null 2>&1 || (cd "$CACHE" && apt-get download -q "$1" >/dev/null 2>&1)
  local deb; deb=$(ls "$CACHE/${1}_"*.deb | sort -V | tail -1)
  local dir="$CACHE/x/$(basename "$deb" .deb)"
  [ -d "$dir" ] || { mkdir -p "$dir.tmp" && dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir"; }
  echo "$dir"
}
K30=$(fetch kmod)/bin/kmod
K34=$(bash .ci/kmod34)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/k30" && for t in modinfo modprobe; do ln -s "$K30" "$W/k30/$t"; done
T=$W/tree; mkdir -p "$T" && cp -a "$(fetch "linux-image-$V-unsigned")/lib" "$T/"
"$K34/depmod" -b "$T" "$V"
# A modalias of a real device that matches a wildcard alias (Intel X710 on i40e).
ALIAS=pci:v00008086d00001572sv00008086sd00000000bc02sc00i00
echo "tree: $V ($(find "$T/lib/modules/$V" -name '*.ko*' | wc -l) modules), indexes by kmod 34"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A CMD=(
  [modinfo]="modinfo -b $T -k $V xfs"
  [modprobe]="modprobe -C /nonexistent -d $T -S $V -D $ALIAS"
)
printf '| command | tool | instructions | wall (hyperfine) |\n|---|---|---:|---:|\n' > "$W/table.md"
for c in modinfo modprobe; do
  args=${CMD[$c]}; args=${args#* }
  "$W/k30/$c" $args > "$W/k30.out"; "$K34/$c" $args > "$W/k34.out"; "$MODKIT" $c $args > "$W/mk.out"
  cmp "$W/k30.out" "$W/mk.out" && cmp "$W/k34.out" "$W/mk.out" || { echo "outputs differ for $c" >&2; exit 1; }
  hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$W/$c.json" \
    -n "kmod 30" "$W/k30/$c $args" -n "kmod 34" "$K34/$c $args" -n "modkit" "$MODKIT $c $args" >/dev/null
  for tool in "kmod 30" "kmod 34" "modkit"; do
    case $tool in "kmod 30") bin="$W/k30/$c" ;; "kmod 34") bin="$K34/$c" ;; *) bin="$MODKIT $c" ;; esac
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --trace-children=yes $bin $args \
      > /dev/null 2> "$W/vg.txt"
    ins=$(grep -o 'Collected : [0-9]*' "$W/vg.txt" | awk '{s += $3} END {print s}')
    wall=$(python3 -c "import json,sys; d=json.load(open('$W/$c.json')); r=[x for x in d['results'] if x['command']=='$tool'][0]; print('%.2f ± %.2f ms' % (r['mean']*1e3, r['stddev']*1e3))")
    printf '| `%s` | %s | %s | %s |\n' "${CMD[$c]%% *} …" "$tool" "$(echo "$ins" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta')" "$wall" >> "$W/table.md"
  done
done
cat "$W/table.md"
