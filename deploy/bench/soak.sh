#!/usr/bin/env bash
# Soak, in the production layout: the standalone edge alone on core 0,
# gatewayd --demo (the other services and their SQLite stores) and the load
# on core 1, a fixed open-loop rate for a bounded time. Every SAMPLE seconds
# both processes' resident memory, open file descriptors, OS threads and
# live tokio tasks (their /metrics) are sampled. Passes when, for each, RSS
# at the end is within 10% of RSS after the first minute and descriptors
# and tasks have not grown beyond the first minute's by more than 4 (the
# load keeps a fixed set of connections; in-flight requests move them by
# one or two).
#
#   deploy/bench/soak.sh                       # 10 minutes at 2,000 req/s
#   SOAK_SECONDS=120 RATE=5000 deploy/bench/soak.sh
#
# Needs nginx (Debian: apt-get install nginx-light).
set -euo pipefail

SOAK_SECONDS=${SOAK_SECONDS:-600}
RATE=${RATE:-2000}
SAMPLE=${SAMPLE:-10}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18082}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
[ "$SOAK_SECONDS" -ge 120 ] || { echo "SOAK_SECONDS must be at least 120" >&2; exit 2; }

for tool in nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

(cd "$REPO" && cargo build --release -p gatewayd -p gateway-edge -p gateway-bench >&2)

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

start_reference "$UPSTREAM_PORT" "$NGINX_PROXY_PORT"
start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT"
wait_served "http://127.0.0.1:8080/demo/echo/"
taskset -a -p -c "$LOAD_CPU" "$gatewayd_pid" > /dev/null
standalone_edge 18090 18091 "$TARGET/release/gateway-edge" > "$work/edge.log" 2>&1 &
edge_pid=$!
pids+=($edge_pid)
edge_url="http://127.0.0.1:18090/demo/echo/"
wait_served "$edge_url"

taskset -c "$LOAD_CPU" "$TARGET/release/loadgen" --url "$edge_url" --rate "$RATE" \
  --seconds "$SOAK_SECONDS" --warmup 0 --connections "$CONNECTIONS" \
  --header "X-API-Key: $key" > "$work/load.txt" &
load_pid=$!
pids+=($load_pid)

# sample PID OPS_PORT: "rss_kib fds threads tasks" of that process now.
sample() {
  local rss fds threads tasks
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$1/status")
  fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l)
  tasks=$(curl -s "http://127.0.0.1:$2/metrics" | awk '$1 == "tokio_alive_tasks" {print $2}')
  echo "$rss $fds $threads ${tasks:-?}"
}

echo "soak: $RATE req/s for $SOAK_SECONDS s, $CONNECTIONS connections; the edge alone on CPU $SERVER_CPU, gatewayd and the load on CPU $LOAD_CPU"
row() { printf '| %7s | %10s | %5s | %7s | %6s | %10s | %5s | %7s | %6s |\n' "$@"; }
row seconds "edge KiB" fds threads tasks "gatewayd KiB" fds threads tasks
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------  ------------ ------- --------- -------- ------------ ------- --------- --------
started=$(date +%s)
: > "$work/samples.txt"
while kill -0 "$load_pid" 2>/dev/null; do
  sleep "$SAMPLE"
  elapsed=$(( $(date +%s) - started ))
  [ "$elapsed" -le "$SOAK_SECONDS" ] || break
  line="$elapsed $(sample "$edge_pid" 18091) $(sample "$gatewayd_pid" 9090)"
  echo "$line" >> "$work/samples.txt"
  # shellcheck disable=SC2086
  row $line
done
wait "$load_pid" || { echo "loadgen failed" >&2; exit 1; }
read -r rps p50 _ p99 p999 max errors < "$work/load.txt"
echo "load: $rps req/s achieved, p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms, max $max ms, $errors errors"

# verdict NAME FIRST_COLUMN: the first sample at or after one minute is
# the baseline of the process whose four columns start at FIRST_COLUMN.
verdict() {
  awk -v name="$1" -v c="$2" -v errors="$errors" '
    $1 >= 60 && !base { base = 1; rss0 = $c; fds0 = $(c + 1); tasks0 = $(c + 3) }
    { rss = $c; fds = $(c + 1); tasks = $(c + 3) }
    END {
      growth = (rss - rss0) / rss0 * 100
      printf "%s, after the first minute -> end: RSS %d -> %d KiB (%+.1f%%), fds %d -> %d, tasks %s -> %s\n", name, rss0, rss, growth, fds0, fds, tasks0, tasks
      ok = growth <= 10 && growth >= -10 && fds <= fds0 + 4 && tasks <= tasks0 + 4 && errors == 0
      print name ": " (ok ? "PASS" : "FAIL")
      exit ok ? 0 : 1
    }' "$work/samples.txt"
}
status=0
verdict edge 2 || status=1
verdict gatewayd 6 || status=1
exit "$status"
