#!/usr/bin/env bash
# Runs the README's Python example with the given interpreter (a venv that has
# only the wheel) against target/debug/sacred-server with its defaults. The
# server takes a free port, so the example's URL is pointed at it; the rest
# runs as written.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$1
example=$(mktemp --suffix=.py)
out=$(mktemp)
server=
trap 'kill "$server" 2>/dev/null || true; rm -f "$example" "$out"' EXIT
target/debug/sacred-server --bind 127.0.0.1:0 --log-format json >"$out" 2>&1 &
server=$!
addr=
for _ in $(seq 100); do
  addr=$(grep -o '"address":"[^"]*"' "$out" | head -1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "sacred-server did not start: $(cat "$out")" >&2; exit 1; }
# The first python block after the "### Python" heading.
awk '/^### Python/ { seen = 1 } seen && /^```python/ { on = 1; next } on && /^```/ { exit } on { print }' README.md |
  sed "s|ws://127.0.0.1:8000/ws|ws://$addr/ws|g" >"$example"
grep -q "ws://$addr/ws" "$example" || { echo "README.md has no Python example naming ws://127.0.0.1:8000/ws" >&2; exit 1; }
timeout 30 "$python" "$example"
