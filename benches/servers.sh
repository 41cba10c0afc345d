# Sourced by benches/redis.sh and benches/sqlite.sh: processes pinned to a
# core, sacred-server started on a free port, everything killed at exit.
# Needs `bin` (the release directory) and `work` (a scratch directory) set.

# Every process started, killed at exit (pids are written from subshells too).
cleanup() { [ -f "$work/pids" ] && xargs -r kill 2>/dev/null <"$work/pids" || true; rm -rf "$work"; }
trap cleanup EXIT
# Called in the background or in a subshell only: exec keeps the pid the program's.
core0() { if [ "$(nproc)" -ge 2 ]; then exec taskset -c 0 "$@"; else exec "$@"; fi; }
core1() { if [ "$(nproc)" -ge 2 ]; then exec taskset -c 1 "$@"; else exec "$@"; fi; }

# The load comes from one address and publishes in bulk: the per-address,
# per-connection, per-user and per-server limits are off (SACRED_UNLIMITED=''
# for a build from before these flags).
read -r -a unlimited <<<"${SACRED_UNLIMITED---connections-per-minute 0 --messages-per-minute 0 --max-connections 0 --max-connections-per-user 0}"

# Starts sacred-server on core 0 with extra args; prints "PID URL".
server() {
  local log="$work/server-$RANDOM.log"
  core0 "$bin/sacred-server" --bind 127.0.0.1:0 --log-format json "${unlimited[@]}" "$@" >"$log" 2>&1 &
  local pid=$!
  echo "$pid" >>"$work/pids"
  for _ in $(seq 200); do
    local address
    address=$(grep -o '"address":"[^"]*"' "$log" | head -1 | cut -d'"' -f4 || true)
    if [ -n "$address" ]; then echo "$pid ws://$address/ws"; return; fi
    sleep 0.05
  done
  echo "sacred-server did not start: $(cat "$log")" >&2; exit 1
}

# Kills and waits until each is gone (they need not be this shell's children).
stop() {
  kill "$@" 2>/dev/null || true
  for pid in "$@"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; done
}
