#!/usr/bin/env bash
# Builds the browser package (@sacred/client) into target/wasm-package: the
# Rust client compiled to wasm32 (release), its wasm-bindgen glue made by the
# wasm-bindgen-cli Cargo.lock pins (scripts/test installs it), shrunk by
# binaryen's wasm-opt from npm (Debian's breaks modules), and the JavaScript
# layer, types and package.json of bindings/wasm. Prints the gzipped sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/wasm-package
tools=bindings/wasm/tools
[ -x "$tools/node_modules/.bin/wasm-opt" ] || (cd "$tools" && npm ci --no-audit --no-fund --silent)
cargo build --profile wasm-release --locked -q -p sacred-client-wasm --target wasm32-unknown-unknown
rm -rf "$out" && mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" --out-name sacred_client_wasm \
  target/wasm32-unknown-unknown/wasm-release/sacred_client_wasm.wasm
"$tools/node_modules/.bin/wasm-opt" -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals \
  -o "$out/sacred_client_wasm_bg.wasm" "$out/sacred_client_wasm_bg.wasm"
cp bindings/wasm/js/*.js bindings/wasm/js/*.d.ts bindings/wasm/package.json bindings/wasm/README.md "$out/"
rm -f "$out/sacred_client_wasm.d.ts" "$out/sacred_client_wasm_bg.wasm.d.ts" "$out/package.json.bak"
for file in sacred_client_wasm_bg.wasm sacred_client_wasm.js index.js; do
  printf '%s: %s bytes, %s gzipped\n' "$file" "$(wc -c <"$out/$file")" "$(gzip -9c "$out/$file" | wc -c)"
done
