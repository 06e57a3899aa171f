#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the standalone
# edge (wired to gatewayd --demo, as in the production layout of edge.sh)
# and the bare hyper proxy, each at the same low open-loop rate. Unlike
# req/s on this shared machine, an instruction count repeats from run to
# run, so it shows what a change to the request path saved. The count
# includes each process's background work over the window (the usage
# stream, lease refreshes), which a low rate spreads over fewer requests.
#
#   deploy/bench/instructions.sh
#   INSTR_RATE=100 INSTR_SECONDS=20 deploy/bench/instructions.sh
#
# Leaves the profiles in $INSTR_OUT (default /tmp/gateway-instructions):
#   callgrind_annotate --inclusive=yes "$INSTR_OUT"/edge.out
#
# Needs nginx and valgrind (Debian: apt-get install nginx-light valgrind).
set -euo pipefail

SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18082}
RATE=${INSTR_RATE:-200}
SECONDS_PER_RUN=${INSTR_SECONDS:-10}
OUT=${INSTR_OUT:-/tmp/gateway-instructions}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

for tool in nginx valgrind callgrind_control taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
(cd "$REPO" && cargo build --release -p gatewayd -p gateway-edge -p gateway-bench >&2)
mkdir -p "$OUT"
rm -f "$OUT"/*.out*

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

start_reference "$UPSTREAM_PORT" "$NGINX_PROXY_PORT"
start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT"
wait_served "http://127.0.0.1:8080/demo/echo/"
taskset -a -p -c "$LOAD_CPU" "$gatewayd_pid" > /dev/null

# under_callgrind NAME BINARY [ARGS...]: execs BINARY under callgrind on the
# server CPU, its profile in $OUT/NAME.out.PID; call it in the background.
# (valgrind must start the binary itself: one started by env would run
# uninstrumented.)
under_callgrind() {
  local name=$1; shift
  exec taskset -c "$SERVER_CPU" valgrind --tool=callgrind \
    --callgrind-out-file="$OUT/$name.out.%p" "$@" > "$OUT/$name.log" 2>&1
}

# count NAME URL HEADER PID: warms up, zeroes the counters of PID, runs
# the load, dumps, and prints the instructions per request.
count() {
  local name=$1 url=$2 header=$3 pid=$4
  local args=(--url "$url" --rate "$RATE" --connections 4)
  [ -n "$header" ] && args+=(--header "$header")
  wait_served "$url" 60   # valgrind starts slowly
  taskset -c "$LOAD_CPU" "$TARGET/release/loadgen" "${args[@]}" --seconds 5 > /dev/null
  callgrind_control -z "$pid" > /dev/null
  read -r rps _ _ _ _ _ errors < <(taskset -c "$LOAD_CPU" "$TARGET/release/loadgen" "${args[@]}" --warmup 0 --seconds "$SECONDS_PER_RUN")
  callgrind_control -d "$pid" > /dev/null
  sleep 1
  [ "$errors" = 0 ] || echo "warning: $errors failed requests to $url" >&2
  local total
  total=$(callgrind_annotate "$OUT/$name.out.$pid.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  cp "$OUT/$name.out.$pid.1" "$OUT/$name.out"
  awk -v total="$total" -v rps="$rps" -v secs="$SECONDS_PER_RUN" 'BEGIN { printf "%d\n", total / (rps * secs) }'
}

under_callgrind bare "$TARGET/release/bare-proxy" 127.0.0.1:18083 "http://127.0.0.1:$UPSTREAM_PORT" &
pids+=($!)
bare=$(count bare http://127.0.0.1:18083/ "" "$!")
(
  edge_env 18090 18091
  under_callgrind edge "$TARGET/release/gateway-edge"
) &
pids+=($!)
edge=$(count edge http://127.0.0.1:18090/demo/echo/ "X-API-Key: $key" "$!")

echo "instructions per request at $RATE req/s, $SECONDS_PER_RUN s (callgrind):"
printf '| %-36s | %12s |\n' path instructions
printf '|%s|%s|\n' "--------------------------------------" "--------------"
printf '| %-36s | %12s |\n' "bare hyper proxy (the edge's stack)" "$bare"
printf '| %-36s | %12s |\n' "edge (auth + limits + usage)" "$edge"
awk -v e="$edge" -v b="$bare" 'BEGIN { printf "edge / bare proxy: %.2fx; the edge'"'"'s own work: %d instructions per request\n", e / b, e - b }'
echo "profiles: $OUT/edge.out, $OUT/bare.out (callgrind_annotate --inclusive=yes FILE)"
