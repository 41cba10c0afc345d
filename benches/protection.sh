#!/usr/bin/env bash
# The cost of protection (docs/benchmarks.md): the same server binary, the
# same payload and scenarios, in the same run, with
#   off     every limit off, anonymous clients (what benches/load.sh runs);
#   key     every limit off, each client with an API key (identified clients
#           are counted per user and their sessions recorded: the cost of
#           an identity, apart from the limits);
#   limits  every limit on but set above the load (per-address connection
#           rate, per-connection command rate, per-user and per-server
#           connection counts, the lockout table), each client with an API key;
#   jwt     the same limits, each client with an HS256 JWT checked at connect.
# Scenarios: `connect` (5,000 clients connect and subscribe, 128 at a time:
# the connect rate) and a 1 -> 1,000 fan-out flat out (throughput).
#
#   benches/protection.sh        # 2 rounds; JSON lines on stdout, a table on stderr
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
cargo build --release --locked -q -p sacred-server --bin sacred-server
cargo build --release --locked -q -p sacred-benches --bin sacred-load
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
. benches/servers.sh

secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
printf '%s' "$secret" >"$work/jwt-secret"
api_key=sk_bench_0123456789
api_hash=$(printf '%s' "$api_key" | sha256sum | cut -d' ' -f1)
jwt=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
high=(--connections-per-minute 100000000 --connection-burst 100000000 --messages-per-minute 1000000000
      --max-connections-per-user 1000000 --max-connections 1000000)

run() { # setup scenario args...
  local setup=$1 pid url token=() saved=("${unlimited[@]}")
  shift
  case $setup in
    off) read -r pid url < <(server) ;;
    key) read -r pid url < <(server --api-key "bench:$api_hash"); token=(--token "$api_key") ;;
    limits) unlimited=(); read -r pid url < <(server "${high[@]}" --api-key "bench:$api_hash"); token=(--token "$api_key") ;;
    jwt) unlimited=(); read -r pid url < <(server "${high[@]}" --jwt-hs256-secret-file "$work/jwt-secret"); token=(--token "$jwt") ;;
  esac
  unlimited=("${saved[@]}")
  local line
  line=$(core1 "$bin/sacred-load" --url "$url" --server-pid "$pid" "${token[@]}" "$@" 2>/dev/null | tail -1)
  stop "$pid"
  printf '%s\n' "$line" | python3 -c 'import json, sys; l = json.loads(sys.stdin.read()); l["setup"] = sys.argv[1]; print(json.dumps(l))' "$setup"
}

out="$work/runs.jsonl"
for round in $(seq "$ROUNDS"); do
  for setup in off key limits jwt; do
    run "$setup" connect --clients 5000 | tee -a "$out"
    run "$setup" fanout --subscribers 1000 --payload 200 --duration 10 --warmup 2 | tee -a "$out"
  done
  echo "round $round done" >&2
done
python3 - "$out" >&2 <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def median(setup, scenario, key):
    return statistics.median(key(r) for r in runs if r["setup"] == setup and r["scenario"] == scenario)
print("| setup | connects/s | connect+subscribe p50 | p99 | fan-out 1 -> 1,000: deliveries/s | server CPU per delivery |")
print("|---|--:|--:|--:|--:|--:|")
for setup, name in (("off", "limits off, anonymous"), ("key", "limits off, API key"), ("limits", "limits on, API key"), ("jwt", "limits on, HS256 JWT")):
    print(f"| {name} | {median(setup, 'connect', lambda r: r['connects_per_s']):,.0f} "
          f"| {median(setup, 'connect', lambda r: r['connect_and_subscribe_us']['p50']) / 1000:.2f} ms "
          f"| {median(setup, 'connect', lambda r: r['connect_and_subscribe_us']['p99']) / 1000:.2f} ms "
          f"| {median(setup, 'fanout', lambda r: r['delivered_per_s']) / 1e3:,.0f} k "
          f"| {median(setup, 'fanout', lambda r: r['server_cpu_ns_per_delivery']):.0f} ns |")
PY
