#!/usr/bin/env bash
# Open-loop latency, measured in one run: the edge's maximum rate (wrk, 64
# connections), then a fixed rate of half that maximum from loadgen
# (deploy/bench/tools, loadgen: latency from each request's scheduled start, so
# queueing counts) against the upstream directly, nginx as a reverse proxy
# and the edge with authentication, limits and usage on. Servers run on
# core 0, the load on core 1. A last row runs the same rate in the
# production layout: the standalone edge alone on core 0, the rest of the
# suite (and its stores) moved to core 1.
#
#   deploy/bench/openloop.sh              # 20 s per rate
#   SECONDS_PER_RUN=60 deploy/bench/openloop.sh
#   RATE=5000 deploy/bench/openloop.sh    # skip the maximum, use this rate
#
# Needs nginx and wrk (Debian: apt-get install nginx-light wrk).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18082}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

(cd "$REPO" && cargo build --release -p gatewayd -p gateway-edge -p gateway-bench >&2)

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

start_reference "$UPSTREAM_PORT" "$NGINX_PROXY_PORT"
start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT"
edge_url="http://127.0.0.1:8080/demo/echo/"
wait_served "$edge_url"

if [ -z "${RATE:-}" ]; then
  read -r max_rps _ <<< "$(measure "$edge_url" -H "X-API-Key: $key")"
  RATE=$(awk -v max="$max_rps" 'BEGIN { printf "%d", max / 2 }')
  # The maximum left a usage backlog that the suite stores on the server
  # CPU: wait until its sender has every event acked, or the next rows
  # measure the catch-up.
  for _ in $(seq 1 120); do
    curl -s http://127.0.0.1:9090/metrics | awk '
      $1 == "usage_sender_spooled_total" { s = $2 } $1 == "usage_sender_acked_total" { a = $2 }
      END { exit (s > 0 && a >= s) ? 0 : 1 }' && break
    sleep 0.5
  done
fi

# open_loop URL [HEADER]: "rps p50 p90 p99 p999 max errors" at $RATE.
open_loop() {
  local args=(--url "$1" --rate "$RATE" --seconds "$SECONDS_PER_RUN" --connections "$CONNECTIONS")
  [ -n "${2:-}" ] && args+=(--header "$2")
  taskset -c "$LOAD_CPU" "$TARGET/release/loadgen" "${args[@]}"
}

# A throwaway run first: whatever ran first showed a tail the others did
# not (the machine settling after the maximum), so none of the rows is it.
open_loop "http://127.0.0.1:$UPSTREAM_PORT/" > /dev/null
read -r d_rps d_p50 d_p90 d_p99 d_p999 d_max d_err <<< "$(open_loop "http://127.0.0.1:$UPSTREAM_PORT/")"
read -r n_rps n_p50 n_p90 n_p99 n_p999 n_max n_err <<< "$(open_loop "http://127.0.0.1:$NGINX_PROXY_PORT/")"
read -r e_rps e_p50 e_p90 e_p99 e_p999 e_max e_err <<< "$(open_loop "$edge_url" "X-API-Key: $key")"
taskset -a -p -c "$LOAD_CPU" "$gatewayd_pid" > /dev/null
standalone_edge 18090 18091 "$TARGET/release/gateway-edge" > "$work/edge.log" 2>&1 &
pids+=($!)
alone_url="http://127.0.0.1:18090/demo/echo/"
wait_served "$alone_url"
read -r a_rps a_p50 a_p90 a_p99 a_p999 a_max a_err <<< "$(open_loop "$alone_url" "X-API-Key: $key")"

echo "open loop at $RATE req/s${max_rps:+ (half of the edge maximum, $max_rps req/s)}, $SECONDS_PER_RUN s each, $CONNECTIONS connections; servers on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
printf '| %-30s | %8s | %8s | %8s | %8s | %8s | %8s | %6s |\n' path req/s "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "max ms" errors
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------------------------------" "----------" "----------" "----------" "----------" "----------" "----------" "--------"
row() { printf '| %-30s | %8s | %8s | %8s | %8s | %8s | %8s | %6s |\n' "$@"; }
row "upstream, direct" "$d_rps" "$d_p50" "$d_p90" "$d_p99" "$d_p999" "$d_max" "$d_err"
row "nginx reverse proxy" "$n_rps" "$n_p50" "$n_p90" "$n_p99" "$n_p999" "$n_max" "$n_err"
row "edge (auth + limits + usage)" "$e_rps" "$e_p50" "$e_p90" "$e_p99" "$e_p999" "$e_max" "$e_err"
row "edge alone on CPU $SERVER_CPU (rest on $LOAD_CPU)" "$a_rps" "$a_p50" "$a_p90" "$a_p99" "$a_p999" "$a_max" "$a_err"
awk -v d="$d_p99" -v n="$n_p99" -v e="$e_p99" -v a="$a_p99" -v d5="$d_p50" -v n5="$n_p50" -v e5="$e_p50" 'BEGIN {
  printf "added p99 over the direct call: edge %.3f ms, nginx %.3f ms, edge alone %.3f ms (p50: edge %.3f ms, nginx %.3f ms)\n", e - d, n - d, a - d, e5 - d5, n5 - d5
}'
