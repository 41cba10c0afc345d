#!/usr/bin/env bash
# Instructions per call of each codec benchmark, counted by callgrind: unlike
# wall-clock time, the count repeats exactly whatever else the machine does.
# Usage: benches/callgrind.sh   (needs valgrind; run from the repository root)
set -euo pipefail
cargo bench -p sacred-benches --bench codec --no-run --quiet 2>/dev/null
bin=$(ls -t target/release/deps/codec-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
printf '%-36s %12s\n' benchmark instructions/call
for group in json/publication json/batch16 msgpack/publication msgpack/batch16; do
  for op in encode decode; do
    for side in sacred baseline; do
      id="$group/$op/$side"
      case "$side/$op" in
        sacred/encode) fn='codec::sacred_encode' ;;
        sacred/decode) fn='codec::sacred_decode' ;;
        baseline/encode) fn='codec::plain_encode' ;;
        baseline/decode) fn='codec::plain_decode' ;;
      esac
      valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" --bench --profile-time 1 "^$id\$" >/dev/null 2>&1
      # "> fn (Nx)" lines of the calling tree hold inclusive cost and call
      # count per caller; the busiest caller is the measured loop (setup code
      # calls the same functions once).
      read -r cost calls < <(callgrind_annotate --tree=calling --inclusive=yes "$out/cg" 2>/dev/null |
        grep -E "> .*:$fn \([0-9,]+x\)" |
        sed -E 's/^ *([0-9,]+).*\(([0-9,]+)x\).*/\1 \2/; s/,//g' | sort -k2 -n | tail -1)
      printf '%-36s %12d\n' "$id" $((cost / calls))
    done
  done
done
rm -rf "$out"
