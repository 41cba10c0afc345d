#!/usr/bin/env bash
# Every load scenario of docs/benchmarks.md, for both codecs, each against a
# freshly started server (release builds): Sacred (`sacred-server`, defaults)
# and, where it applies, the raw baseline (`raw-broadcast`). One JSON line per
# scenario goes to stdout; progress lines to stderr.
#
#   benches/load.sh                 # everything (about 6 minutes on 2 cores)
#   SUBSCRIBERS=200 benches/load.sh # smaller
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS=${SUBSCRIBERS:-1000}
CLIENTS=${CLIENTS:-2000}
IDLE=${IDLE:-10000}
CONNECTS=${CONNECTS:-5000}
DURATION=${DURATION:-10}
CHURN=${CHURN:-1000000}

cargo build --release --locked -q -p sacred-server -p sacred-benches --bins
bin=target/release
work=$(mktemp -d)
server_pid=
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT

# Starts a server ("sacred" or "raw") on a free port; sets $server_pid and $url.
start() {
  : >"$work/out"
  if [ "$1" = sacred ]; then
    "$bin/sacred-server" --bind 127.0.0.1:0 --log-format json >"$work/out" 2>&1 &
  else
    "$bin/raw-broadcast" 127.0.0.1:0 >"$work/out" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 100); do
    if [ "$1" = sacred ]; then
      addr=$(grep -o '"address":"[^"]*"' "$work/out" | head -1 | cut -d'"' -f4 || true)
      [ -n "$addr" ] && url="ws://$addr/ws" && return
    else
      url=$(head -1 "$work/out")
      [ -n "$url" ] && return
    fi
    sleep 0.1
  done
  echo "the $1 server did not start" >&2
  exit 1
}

stop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# load SERVER CODEC SCENARIO ARGS...: one scenario against a fresh server.
load() {
  local server=$1 codec=$2
  shift 2
  start "$server"
  "$bin/sacred-load" --url "$url" --codec "$codec" --protocol "$server" --server-pid "$server_pid" "$@"
  stop
}

for codec in json msgpack; do
  for server in sacred raw; do
    line=$(load $server $codec fanout --subscribers "$SUBSCRIBERS" --duration "$DURATION")
    echo "$line"
    max=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["published_per_s"]))' "$line")
    # The latency target is read at half of the maximum rate.
    load $server $codec fanout --subscribers "$SUBSCRIBERS" --duration "$DURATION" --rate $((max / 2))
  done
  load sacred $codec channels --clients "$CLIENTS" --duration "$DURATION"
  load sacred $codec idle --connections "$IDLE"
  load raw $codec idle --connections "$IDLE"
  load sacred $codec connect --clients "$CONNECTS"
  load sacred $codec churn --channels "$CHURN"
done
