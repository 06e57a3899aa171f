#!/usr/bin/env bash
# Soak: gatewayd --demo under a fixed open-loop rate for a bounded time,
# sampling its resident memory, open file descriptors, OS threads and live
# tokio tasks (its /metrics) every SAMPLE seconds. Passes when, at the end,
# RSS is within 10% of RSS after the first minute and descriptors and tasks
# have not grown beyond the first minute's by more than 4 (the load keeps a
# fixed set of connections; in-flight requests move them by one or two). Servers on core 0, the load on core 1.
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
OPS_URL=http://127.0.0.1:9090/metrics
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
[ "$SOAK_SECONDS" -ge 120 ] || { echo "SOAK_SECONDS must be at least 120" >&2; exit 2; }

for tool in nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

(cd "$REPO" && cargo build --release -p gatewayd -p gateway-bench >&2)

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

start_reference "$UPSTREAM_PORT" "$NGINX_PROXY_PORT"
start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT"
edge_url="http://127.0.0.1:8080/demo/echo/"
wait_served "$edge_url"

taskset -c "$LOAD_CPU" "$TARGET/release/loadgen" --url "$edge_url" --rate "$RATE" \
  --seconds "$SOAK_SECONDS" --warmup 0 --connections "$CONNECTIONS" \
  --header "X-API-Key: $key" > "$work/load.txt" &
load_pid=$!
pids+=($load_pid)

# sample: "seconds rss_kib fds threads tasks" of gatewayd now.
sample() {
  local rss fds threads tasks
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$gatewayd_pid/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$gatewayd_pid/status")
  fds=$(find "/proc/$gatewayd_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  tasks=$(curl -s "$OPS_URL" | awk '$1 == "tokio_alive_tasks" {print $2}')
  echo "$1 $rss $fds $threads ${tasks:-?}"
}

echo "soak: $RATE req/s for $SOAK_SECONDS s, $CONNECTIONS connections; gatewayd on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
printf '| %7s | %10s | %5s | %7s | %6s |\n' seconds "RSS KiB" fds threads tasks
printf '|%s|%s|%s|%s|%s|\n' "---------" "------------" "-------" "---------" "--------"
started=$(date +%s)
: > "$work/samples.txt"
while kill -0 "$load_pid" 2>/dev/null; do
  sleep "$SAMPLE"
  elapsed=$(( $(date +%s) - started ))
  [ "$elapsed" -le "$SOAK_SECONDS" ] || break
  line=$(sample "$elapsed")
  echo "$line" >> "$work/samples.txt"
  # shellcheck disable=SC2086
  printf '| %7s | %10s | %5s | %7s | %6s |\n' $line
done
wait "$load_pid" || { echo "loadgen failed" >&2; exit 1; }
read -r rps p50 _ p99 p999 max errors < "$work/load.txt"
echo "load: $rps req/s achieved, p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms, max $max ms, $errors errors"

# The first sample at or after one minute is the baseline.
awk -v errors="$errors" '
  $1 >= 60 && !base { base = 1; rss0 = $2; fds0 = $3; tasks0 = $5 }
  { rss = $2; fds = $3; tasks = $5 }
  END {
    growth = (rss - rss0) / rss0 * 100
    printf "after the first minute -> end: RSS %d -> %d KiB (%+.1f%%), fds %d -> %d, tasks %s -> %s\n", rss0, rss, growth, fds0, fds, tasks0, tasks
    # In-flight requests and a rotating spool segment move both by one or two.
    ok = growth <= 10 && growth >= -10 && fds <= fds0 + 4 && tasks <= tasks0 + 4 && errors == 0
    print ok ? "soak: PASS" : "soak: FAIL"
    exit ok ? 0 : 1
  }' "$work/samples.txt"
