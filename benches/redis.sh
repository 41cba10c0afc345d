#!/usr/bin/env bash
# Fan-out through Redis with two nodes against one node in memory, the same
# payload, in the same run (docs/benchmarks.md):
#
#   benches/redis.sh            # 3 rounds; JSON lines on stdout, a table on stderr
#
# Every server-side process (sacred-server nodes, redis-server) runs on core 0,
# the generator (sacred-load) on core 1, so both setups get the same hardware.
# Scenarios: 1000 subscribers flat out (deliveries/s and latency), and one
# subscriber flat out (publications/s through the publish path: Lua on Redis).
# With Redis, the subscribers are on node A and the publisher on node B, so
# every publication crosses Redis; Redis's CPU per 1,000 publications comes
# from /proc/PID/stat over the run. Needs redis-server (scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
cargo build --release --locked -q -p sacred-server --features redis --bin sacred-server
cargo build --release --locked -q -p sacred-benches --bin sacred-load
bin=target/release
work=$(mktemp -d)
. benches/servers.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # setup scenario-args...
  local setup=$1; shift
  local redis_pid="" a b a_pid b_pid sub_url pub_url
  if [ "$setup" = redis ]; then
    rm -f "$work/redis.sock"
    core0 redis-server --port 0 --unixsocket "$work/redis.sock" --save "" --appendonly no --dir "$work" >/dev/null 2>&1 &
    redis_pid=$!; echo "$redis_pid" >>"$work/pids"
    for _ in $(seq 200); do [ -S "$work/redis.sock" ] && break; sleep 0.05; done
    read -r a_pid sub_url < <(server --broker "redis+unix://$work/redis.sock")
    read -r b_pid pub_url < <(server --broker "redis+unix://$work/redis.sock")
  else
    read -r a_pid sub_url < <(server)
    b_pid=""; pub_url=$sub_url
  fi
  local before=0
  [ -n "$redis_pid" ] && before=$(cpu_ticks "$redis_pid")
  local line
  line=$(core1 "$bin/sacred-load" --url "$sub_url" --server-pid "$a_pid" fanout --publish-url "$pub_url" "$@" 2>/dev/null | tail -1)
  local redis_cpu_s=null
  if [ -n "$redis_pid" ]; then
    redis_cpu_s=$(awk -v a="$before" -v b="$(cpu_ticks "$redis_pid")" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz }')
  fi
  printf '%s\n' "$line" | python3 -c '
import json, sys
line = json.loads(sys.stdin.read())
line["setup"] = sys.argv[1]
line["redis_cpu_s"] = None if sys.argv[2] == "null" else float(sys.argv[2])
print(json.dumps(line))' "$setup" "$redis_cpu_s"
  stop $a_pid $b_pid $redis_pid
}

out="$work/runs.jsonl"
for round in $(seq "$ROUNDS"); do
  for setup in memory redis; do
    run "$setup" --subscribers 1000 | tee -a "$out"
    run "$setup" --subscribers 1 | tee -a "$out"
    run "$setup" --subscribers 1 --publishers 8 | tee -a "$out"
  done
  echo "round $round done" >&2
done
python3 - "$out" >&2 <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def median(setup, subscribers, key, publishers=1):
    values = [key(r) for r in runs
              if r["setup"] == setup and r["subscribers"] == subscribers and r["publishers"] == publishers]
    return statistics.median(values)
print("| setup | 1000 subscribers: deliveries/s | p50 | p99 | 1 subscriber, 1 publisher: publications/s | 8 publishers | Redis CPU per 1,000 publications |")
print("|---|--:|--:|--:|--:|--:|--:|")
for setup, name in (("memory", "one node, in memory"), ("redis", "two nodes on Redis (publish on B, subscribe on A)")):
    d = median(setup, 1000, lambda r: r["delivered_per_s"])
    p50 = median(setup, 1000, lambda r: r["latency_us"]["p50"])
    p99 = median(setup, 1000, lambda r: r["latency_us"]["p99"])
    p = median(setup, 1, lambda r: r["published_per_s"])
    p8 = median(setup, 1, lambda r: r["published_per_s"], publishers=8)
    if setup == "redis":
        # Over the whole run (2 s warm-up included): an upper bound.
        cpu = median(setup, 1, lambda r: r["redis_cpu_s"] / (r["published_per_s"] * r["seconds"]) * 1000 * 1000,
                     publishers=8)
        cpu_text = f"{cpu:.1f} ms"
    else:
        cpu_text = "-"
    print(f"| {name} | {d / 1e6:.2f} M | {p50 / 1000:.1f} ms | {p99 / 1000:.1f} ms | {p / 1e3:.1f} k | {p8 / 1e3:.1f} k | {cpu_text} |")
PY
