#!/usr/bin/env bash
# The load comparison of docs/benchmarks.md: every scenario against a freshly
# started server, Sacred (`sacred-server`, its defaults) beside the raw
# tokio-tungstenite baseline (`raw-broadcast`) and socketioxide
# (`socketioxide-server`), all given the same application payload. On a
# machine with two cores or more the server runs on core 0 and the generator
# on core 1 (taskset), so each has a core of its own. Rounds alternate the
# servers, so that a drift of the machine touches them all alike; the table
# script takes the median of the rounds.
#
#   benches/load.sh > load.jsonl && python3 benches/table.py load.jsonl
#
# Settings (environment): ROUNDS (3), DURATION seconds per scenario (10),
# PAYLOAD bytes (200), SUBSCRIBERS for the large fan-out (1000), SMALL=1 for a
# quick run of every scenario at toy sizes (scripts/test), SACRED_SERVER to
# compare another build of sacred-server (before/after a change), SERVERS to
# run some of "sacred raw socketio" only, EXTRAS=0 to skip the scenarios
# only Sacred runs.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-sacred raw socketio}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PAYLOAD=${PAYLOAD:-200}
if [ "${SMALL:-0}" = 1 ]; then
  ROUNDS=1 DURATION=1 WARMUP=1
  FEW=20 MANY=40 IDLE=200 HOLD=1 CLIENTS=20 CONNECTS=200 CHURN=2000
else
  FEW=100 MANY=${SUBSCRIBERS:-1000} IDLE=${IDLE:-5000} HOLD=12 CLIENTS=2000 CONNECTS=5000 CHURN=1000000
fi

cargo build --release --locked -q -p sacred-server -p sacred-benches --bins
bin=target/release
sacred=${SACRED_SERVER:-$bin/sacred-server}
# The load comes from one address and publishes in bulk: the per-address,
# per-connection, per-user and per-server limits are off (SACRED_UNLIMITED=''
# for a build from before these flags).
read -r -a unlimited <<<"${SACRED_UNLIMITED---connections-per-minute 0 --messages-per-minute 0 --max-connections 0 --max-connections-per-user 0}"
work=$(mktemp -d)
server_pid=
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  on_server_core=(taskset -c 0)
  on_generator_core=(taskset -c 1)
else
  on_server_core=()
  on_generator_core=()
fi

# Starts a server (sacred, raw or socketio) on a free port; sets $server_pid and $url.
start() {
  : >"$work/out"
  case $1 in
    sacred) "${on_server_core[@]}" "$sacred" --bind 127.0.0.1:0 --log-format json "${unlimited[@]}" >"$work/out" 2>&1 & ;;
    raw) "${on_server_core[@]}" "$bin/raw-broadcast" 127.0.0.1:0 >"$work/out" 2>&1 & ;;
    socketio) "${on_server_core[@]}" "$bin/socketioxide-server" 127.0.0.1:0 >"$work/out" 2>&1 & ;;
  esac
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

# load ROW ROUND SERVER CODEC SCENARIO ARGS...: one scenario against a fresh
# server, its JSON line tagged with the table row and the round.
load() {
  local row=$1 round=$2 server=$3 codec=$4
  shift 4
  start "$server"
  "${on_generator_core[@]}" "$bin/sacred-load" --url "$url" --codec "$codec" --protocol "$server" \
    --server-pid "$server_pid" "$@" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(row=sys.argv[1], round=int(sys.argv[2])); print(json.dumps(d))' "$row" "$round"
  stop
}

traffic=(--payload "$PAYLOAD" --duration "$DURATION" --warmup "$WARMUP")
for round in $(seq "$ROUNDS"); do
  for server in $SERVERS; do
    load "1 -> $FEW" "$round" $server json fanout --subscribers $FEW "${traffic[@]}"
    load "1 -> $MANY" "$round" $server json fanout --subscribers $MANY "${traffic[@]}"
    load "10 -> $FEW" "$round" $server json fanout --publishers 10 --subscribers $FEW "${traffic[@]}"
    load "1 -> $FEW open loop" "$round" $server json fanout --subscribers $FEW --open-loop "${traffic[@]}"
    load "1 -> $MANY at 200/s" "$round" $server json fanout --subscribers $MANY --rate 200 "${traffic[@]}"
    load "idle $IDLE" "$round" $server json idle --connections $IDLE --hold $HOLD
  done
done
# Sacred alone: the other codec, and the scenarios only a hub has.
case " $SERVERS " in *" sacred "*) ;; *) exit 0 ;; esac
[ "${EXTRAS:-1}" = 1 ] || exit 0
load "1 -> $FEW msgpack" 1 sacred msgpack fanout --subscribers $FEW "${traffic[@]}"
load "1 -> $MANY msgpack" 1 sacred msgpack fanout --subscribers $MANY "${traffic[@]}"
for codec in json msgpack; do
  load "channels" 1 sacred $codec channels --clients $CLIENTS "${traffic[@]}"
  load "connect" 1 sacred $codec connect --clients $CONNECTS
  load "churn" 1 sacred $codec churn --channels $CHURN
done
