#!/usr/bin/env bash
# The publish path with the SQLite store in each durability mode against the
# in-memory store, the same payload, in the same run (docs/benchmarks.md):
#
#   benches/sqlite.sh            # 2 rounds; JSON lines on stdout, a table on stderr
#
# sacred-server runs on core 0, the generator (sacred-load) on core 1. Each
# run: one subscriber on one channel; publishers 1 or 100 (on the same
# channel: the hot-channel case, where appends must share commits), flat out
# (256 publications in flight: throughput; latency there is mostly the
# window's queueing), then at 1,000 publications/s in all (latency of the
# publish path: publish to delivery, which follows the commit).
# Every setup keeps 100,000 publications of the channel (history_size), so
# the SQLite runs trim as they go; after each SQLite run the database's bytes
# per stored publication are read with Python's sqlite3. Then, per setup and
# round, `sacred-load recover`: 30 times, a subscriber leaves a fresh channel,
# misses 1,000 publications and subscribes again recovering them; the time
# from its subscribe to the decoded reply carrying all 1,000.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
cargo build --release --locked -q -p sacred-server --bin sacred-server
cargo build --release --locked -q -p sacred-benches --bin sacred-load
bin=target/release
work=$(mktemp -d)
. benches/servers.sh
printf '[hub.namespaces.""]\nhistory_size = 100000\n' >"$work/sacred.toml"

run() { # setup publishers rate
  local setup=$1 publishers=$2 rate=$3 pid url db="" args=()
  case $setup in
    memory) ;;
    sqlite-always|sqlite-periodic)
      db="$work/$setup.db"; rm -f "$db" "$db-wal" "$db-shm"
      args=(--store "sqlite:$db" --store-sync "${setup#sqlite-}") ;;
  esac
  read -r pid url < <(server --config "$work/sacred.toml" "${args[@]}")
  local line
  line=$(core1 "$bin/sacred-load" --url "$url" --server-pid "$pid" fanout \
    --subscribers 1 --publishers "$publishers" --window 256 --rate "$rate" 2>/dev/null | tail -1)
  stop "$pid"
  local bytes=null
  if [ -n "$db" ]; then
    bytes=$(python3 - "$db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
rows = db.execute("SELECT COUNT(*) FROM publications").fetchone()[0]
pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
size = db.execute("PRAGMA page_size").fetchone()[0]
print(pages * size / rows if rows else "null")
PY
)
  fi
  printf '%s\n' "$line" | python3 -c '
import json, sys
line = json.loads(sys.stdin.read())
line["setup"] = sys.argv[1]
line["bytes_per_publication"] = None if sys.argv[2] == "null" else float(sys.argv[2])
print(json.dumps(line))' "$setup" "$bytes"
}

recover() { # setup
  local setup=$1 pid url args=()
  case $setup in
    memory) ;;
    sqlite-always|sqlite-periodic)
      local db="$work/$setup-recover.db"; rm -f "$db" "$db-wal" "$db-shm"
      args=(--store "sqlite:$db" --store-sync "${setup#sqlite-}") ;;
  esac
  read -r pid url < <(server --config "$work/sacred.toml" "${args[@]}")
  local line
  line=$(core1 "$bin/sacred-load" --url "$url" --codec msgpack recover --missed 1000 --rounds 30 2>/dev/null | tail -1)
  stop "$pid"
  printf '%s\n' "$line" | python3 -c '
import json, sys
line = json.loads(sys.stdin.read())
line["setup"] = sys.argv[1]
print(json.dumps(line))' "$setup"
}

out="$work/runs.jsonl"
for round in $(seq "$ROUNDS"); do
  for setup in memory sqlite-always sqlite-periodic; do
    for publishers in 1 100; do
      run "$setup" "$publishers" 0 | tee -a "$out"
      run "$setup" "$publishers" 1000 | tee -a "$out"
    done
    recover "$setup" | tee -a "$out"
  done
  echo "round $round done" >&2
done
python3 - "$out" >&2 <<'PY'
import json, statistics, sys
everything = [json.loads(line) for line in open(sys.argv[1])]
runs = [r for r in everything if r["scenario"] == "fanout"]
recoveries = [r for r in everything if r["scenario"] == "recover"]
def median(setup, publishers, key, flat=True):
    return statistics.median(key(r) for r in runs if r["setup"] == setup and r["publishers"] == publishers
                             and (r["rate"] == 1000) != flat)
print("| store | 1 publisher: publications/s | at 1,000/s: p50 | p99 | 100 publishers: publications/s | at 1,000/s: p50 | p99 | bytes per stored publication |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
for setup, name in (("memory", "in memory"), ("sqlite-always", "SQLite, sync always"), ("sqlite-periodic", "SQLite, sync periodic (1 s)")):
    cells = []
    for publishers in (1, 100):
        cells.append(f"{median(setup, publishers, lambda r: r['published_per_s']) / 1e3:.1f} k")
        for q in ("p50", "p99"):
            cells.append(f"{median(setup, publishers, lambda r: r['latency_us'][q], flat=False) / 1000:.2f} ms")
    size = "-" if setup == "memory" else f"{median(setup, 100, lambda r: r['bytes_per_publication']):.0f}"
    print(f"| {name} | " + " | ".join(cells) + f" | {size} |")
print()
print("| store | recovering 1,000 missed publications: p50 | p99 |")
print("|---|--:|--:|")
for setup, name in (("memory", "in memory"), ("sqlite-always", "SQLite, sync always"), ("sqlite-periodic", "SQLite, sync periodic (1 s)")):
    mine = [r for r in recoveries if r["setup"] == setup]
    cells = [f"{statistics.median(r['recovery_us'][q] for r in mine) / 1000:.2f} ms" for q in ("p50", "p99")]
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
