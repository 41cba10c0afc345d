#!/usr/bin/env bash
# The cost of observing (docs/benchmarks.md): the same server binary, the
# same payload and scenarios, in the same run, with
#   bare     --metrics false and no exporter: nothing counted, no span made;
#   metrics  the default: every counter and histogram, /metrics scraped once
#            a second (a Prometheus would every 15 s);
#   traced   metrics as above and every span exported over OTLP/HTTP
#            (sample ratio 1) to a local receiver that reads and drops them.
# Scenarios: a 1 -> 1,000 fan-out flat out (throughput and server CPU per
# delivery), 10,000 idle connections (server memory per connection), and
# 5,000 clients connecting and subscribing (the connect rate).
# With PROFILE=1 it then samples the server's stacks with perf during a
# traced fan-out and prints the share of the metrics and tracing code.
#
#   benches/operations.sh        # 2 rounds; JSON lines on stdout, a table on stderr
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
cargo build --release --locked -q -p sacred-server --bin sacred-server
cargo build --release --locked -q -p sacred-benches --bin sacred-load
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
. benches/servers.sh

# The OTLP/HTTP receiver: answers every POST 200 after reading the body,
# counting requests and bytes (printed at exit).
cat >"$work/sink.py" <<'PY'
import http.server, signal, sys
stats = {"requests": 0, "bytes": 0}
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        stats["bytes"] += len(self.rfile.read(int(self.headers.get("content-length", 0))))
        stats["requests"] += 1
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
signal.signal(signal.SIGTERM, lambda *_: (print(stats, file=sys.stderr, flush=True), sys.exit(0)))
server.serve_forever()
PY
(core1 python3 "$work/sink.py" >"$work/sink.port" 2>"$work/sink.log") &
sink=$!
echo "$sink" >>"$work/pids"
for _ in $(seq 100); do [ -s "$work/sink.port" ] && break; sleep 0.05; done
otlp="http://127.0.0.1:$(cat "$work/sink.port")"

# Scrapes /metrics once a second while the scenario runs.
scrape() { while :; do curl -s -o /dev/null "$1/metrics" || true; sleep 1; done; }

run() { # setup scenario args...
  local setup=$1 pid url scraper=
  shift
  case $setup in
    bare) read -r pid url < <(server --metrics false) ;;
    metrics) read -r pid url < <(server) ;;
    traced) read -r pid url < <(server --otlp-endpoint "$otlp") ;;
  esac
  if [ "$setup" != bare ]; then
    local http=${url#ws://}
    scrape "http://${http%/ws}" & scraper=$!
  fi
  local line
  line=$(core1 "$bin/sacred-load" --url "$url" --server-pid "$pid" "$@" 2>/dev/null | tail -1)
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
  stop "$pid"
  printf '%s\n' "$line" | python3 -c 'import json, sys; l = json.loads(sys.stdin.read()); l["setup"] = sys.argv[1]; print(json.dumps(l))' "$setup"
}

out="$work/runs.jsonl"
for round in $(seq "$ROUNDS"); do
  for setup in bare metrics traced; do
    run "$setup" fanout --subscribers 1000 --payload 200 --duration 10 --warmup 2 | tee -a "$out"
    run "$setup" idle --connections 10000 | tee -a "$out"
    run "$setup" connect --clients 5000 | tee -a "$out"
  done
  echo "round $round done" >&2
done
python3 - "$out" >&2 <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def median(setup, scenario, key):
    return statistics.median(key(r) for r in runs if r["setup"] == setup and r["scenario"] == scenario)
print("| setup | fan-out 1 -> 1,000: deliveries/s | server CPU per delivery | idle: server memory per connection | connects/s |")
print("|---|--:|--:|--:|--:|")
for setup, name in (("bare", "metrics off, no spans"), ("metrics", "metrics on, scraped every second"), ("traced", "metrics on, every span exported (OTLP)")):
    print(f"| {name} | {median(setup, 'fanout', lambda r: r['delivered_per_s']) / 1e3:,.0f} k "
          f"| {median(setup, 'fanout', lambda r: r['server_cpu_ns_per_delivery']):.0f} ns "
          f"| {median(setup, 'idle', lambda r: r['server_bytes_per_connection']) / 1024:.1f} KiB "
          f"| {median(setup, 'connect', lambda r: r['connects_per_s']):,.0f} |")
PY

if [ "${PROFILE:-0}" = 1 ]; then
  # perf samples the server's stacks for 8 s of a traced fan-out; the share
  # of samples with a metrics or tracing frame is the cost of observing.
  read -r pid url < <(server --otlp-endpoint "$otlp")
  (core1 "$bin/sacred-load" --url "$url" --server-pid "$pid" fanout --subscribers 1000 --payload 200 --duration 12 --warmup 2 >/dev/null 2>&1) &
  load=$!
  sleep 3
  perf record -q -F 999 -g -p "$pid" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1
  wait "$load" || true
  stop "$pid"
  perf script -i "$work/perf.data" 2>/dev/null | python3 -c '
import re, sys
samples, hits = 0, {"metrics": 0, "tracing": 0, "opentelemetry": 0}
stack = []
def flush():
    global samples
    if not stack: return
    samples += 1
    text = "\n".join(stack)
    if re.search(r"\bmetrics(_exporter_prometheus|_util)?::|sacred_server::telemetry", text): hits["metrics"] += 1
    if re.search(r"\btracing(_core|_subscriber)?::|sacred_server::trace::", text): hits["tracing"] += 1
    if re.search(r"opentelemetry", text): hits["opentelemetry"] += 1
for line in sys.stdin:
    if not line.strip(): flush(); stack = []
    elif line.startswith((" ", "\t")): stack.append(line)
flush()
print(f"perf: {samples} samples of the server in a traced fan-out; with a frame of " +
      ", ".join(f"{k} {100 * v / max(samples, 1):.1f}%" for k, v in hits.items()))
' >&2
fi
kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true
cat "$work/sink.log" | sed 's/^/otlp receiver: /' >&2
