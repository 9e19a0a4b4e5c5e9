#!/usr/bin/env bash
# Builds the plugin example (host + plugins as shared objects, and two rebuilt mathcores)
# and runs the host against a plugin directory. CI runs this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")"
out=${PLUGIN_OUT:-target/plugin-demo}
rm -rf "$out" && mkdir -p "$out/plugins"
cargo build --release --quiet
for p in mathcore stats ticker; do
  cp "target/release/lib$p.so" "$out/plugins/$p.so"
done
cp "$out/plugins/mathcore.so" "$out/mathcore-v1.so"  # signed below (the main run replaces it)
# modkit's depmod indexes plugins with the same code and files as a kernel tree.
modkit=../../target/release/modkit
if [ -x "$modkit" ]; then
  tree="$out/tree/lib/modules/0.0"
  mkdir -p "$tree/plugins" && cp "$out"/plugins/*.so "$tree/plugins/"
  for f in modules.order modules.builtin modules.builtin.modinfo; do : > "$tree/$f"; done
  "$modkit" depmod -b "$out/tree" 0.0
  echo "modules.dep:" && cat "$tree/modules.dep"
  # stats declares no depends=: its dependency comes from its import= entries.
  grep -q "plugins/stats.so: plugins/mathcore.so" "$tree/modules.dep"
  grep -q "plugins/ticker.so: plugins/mathcore.so" "$tree/modules.dep"
  grep -q "alias calc:\* stats" "$tree/modules.alias"
  "$modkit" modinfo "$PWD/$out/plugins/stats.so"
fi
cargo build --release --quiet -p mathcore --features v2
cp target/release/libmathcore.so "$out/mathcore-v2.so"
cargo build --release --quiet -p mathcore --features changed-type
cp target/release/libmathcore.so "$out/mathcore-changed-type.so"
target/release/plugin-host "$out/plugins" "$out/mathcore-v2.so" "$out/mathcore-changed-type.so"
# Signatures: mathcore signed by `modkit sign` with a key made for this run (never kept),
# stats left unsigned, and a signed mathcore changed after signing.
[ -x "$modkit" ] || (cd ../.. && cargo build --release --quiet --bin modkit)
keys="$out/keys" && mkdir -p "$keys" "$out/signed" "$out/tampered"
openssl req -new -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=modkit plugin example (throwaway, this run only)" \
  -keyout "$keys/key.pem" -out "$keys/cert.pem" 2>/dev/null
"$modkit" sign "$keys/key.pem" "$keys/cert.pem" "$out/mathcore-v1.so" "$out/signed/mathcore.so"
cp "$out/plugins/stats.so" "$out/signed/stats.so"
"$modkit" verify-sig --cert "$keys/cert.pem" "$out/signed/mathcore.so"
cp "$out/signed/mathcore.so" "$out/tampered/mathcore.so"
b=$(od -An -tu1 -j4096 -N1 "$out/tampered/mathcore.so" | tr -d ' ')
printf "\\$(printf %o $((b ^ 1)))" | dd of="$out/tampered/mathcore.so" bs=1 seek=4096 conv=notrunc status=none
if "$modkit" verify-sig --cert "$keys/cert.pem" "$out/tampered/mathcore.so"; then
  echo "the tampered copy still verifies" >&2; exit 1
fi
target/release/plugin-host signed "$out/signed" "$out/tampered" "$keys/cert.pem"
rm -rf "$keys"
# Many threads load, call, reload (v1 <-> v2) and unload at once for a bounded time.
mkdir -p "$out/stress" && cp "$out"/mathcore-v1.so "$out/stress/mathcore.so"
cp "$out/plugins/stats.so" "$out/plugins/ticker.so" "$out/stress/"
target/release/plugin-host stress "$out/stress" "$out/mathcore-v1.so" "$out/mathcore-v2.so" "${PLUGIN_STRESS_SECS:-3}"
if [ "${1:-}" = bench ]; then
  # modkit against libloading and a bare dlopen/dlsym on the same .so (criterion).
  cargo build --release --quiet -p mathcore --features c-abi
  mkdir -p "$out/bench" && cp target/release/libmathcore.so "$out/bench/mathcore.so"
  MODKIT_BENCH_DIR="$PWD/$out/bench" cargo bench --quiet -p plugin-host --bench plugins
fi
