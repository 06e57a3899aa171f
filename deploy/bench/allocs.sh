#!/usr/bin/env bash
# Heap allocations per request on the plain path: the standalone edge built
# with a counting allocator (deploy/bench/tools, allocs-per-request), wired to gatewayd --demo
# like the production layout of edge.sh, 20,000 sequential requests after a
# warm-up. Prints allocations and bytes allocated per request.
#
#   deploy/bench/allocs.sh
#   ALLOCS_REQUESTS=100000 deploy/bench/allocs.sh
#
# Needs nginx (Debian: apt-get install nginx-light).
set -euo pipefail

SERVER_CPU=${SERVER_CPU:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18082}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

command -v nginx >/dev/null || { echo "missing nginx" >&2; exit 1; }
(cd "$REPO" && cargo build --release -p gatewayd -p gateway-bench >&2)

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

start_reference "$UPSTREAM_PORT" "$NGINX_PROXY_PORT"
start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT"
wait_served "http://127.0.0.1:8080/demo/echo/"

read -r allocations bytes < <(
  ALLOCS_KEY="$key" ALLOCS_PATH=/demo/echo/ ALLOCS_REQUESTS="${ALLOCS_REQUESTS:-20000}" \
    standalone_edge 18090 18091 "$TARGET/release/allocs-per-request" 2> "$work/allocs.log"
) || { cat "$work/allocs.log" >&2; exit 1; }
[ -n "${bytes:-}" ] || { cat "$work/allocs.log" >&2; exit 1; }
echo "edge, plain path: $allocations heap allocations and $bytes bytes allocated per request"
