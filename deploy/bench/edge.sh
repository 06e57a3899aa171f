#!/usr/bin/env bash
# Edge benchmark, measured in one run with wrk: the upstream called directly,
# nginx as a plain reverse proxy to it (the reference proxy), the edge with
# authentication, limits and usage on (gatewayd --demo, a plan with limits
# too high to refuse), and the edge on an API with routes (a parameterised
# rule with a rewrite), weighted balancing over two targets, a circuit
# breaker, CORS and header transforms; and a bare proxy on the edge's HTTP
# stack (hyper, no gateway work) as the floor under the edge. Servers run on
# core 0, wrk on core 1.
#
#   deploy/bench/edge.sh            # 10 s per run
#   DURATION=30s deploy/bench/edge.sh
#   COMPARE=/path/to/other/gatewayd deploy/bench/edge.sh
#
# COMPARE measures another build's plain edge in the same run (after this
# build's, on a fresh gatewayd), e.g. one from before a change.
#
# Needs nginx and wrk (Debian: apt-get install nginx-light wrk).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18082}
BARE_PROXY_PORT=${BARE_PROXY_PORT:-18083}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

for tool in nginx wrk taskset grpcurl jq; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

(cd "$REPO" && cargo build --release -p gatewayd -p gateway-edge -p gateway-bench >&2)

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

start_reference "$UPSTREAM_PORT" "$NGINX_PROXY_PORT"
# The edge's HTTP stack with nothing on it: the floor under the edge.
taskset -c "$SERVER_CPU" "$TARGET/release/bare-proxy" "127.0.0.1:$BARE_PROXY_PORT" \
  "http://127.0.0.1:$UPSTREAM_PORT" &
pids+=($!)

# The edge: the whole suite, seeded with an API on the same upstream.
start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT"
edge_url="http://127.0.0.1:8080/demo/echo/"
wait_served "$edge_url"

# The API with policies, in the demo tenant, on the same upstream (two
# targets 3:1, which the demo's egress opening covers: same address).
tenant=$(echo '{"slug":"demo"}' |
  admin 127.0.0.1:50051 gateway.identity.v1.IdentityService/GetTenantBySlug | jq -r .tenant.id)
admin 127.0.0.1:50052 gateway.catalog.v1.CatalogService/CreateApi > /dev/null <<JSON
{"api": {"tenantId": "$tenant", "name": "Policies", "slug": "policies", "enabled": true,
  "upstreams": [{"url": "http://127.0.0.1:$UPSTREAM_PORT/", "weight": 3},
                {"url": "http://127.0.0.1:$UPSTREAM_PORT/b", "weight": 1}],
  "routes": [{"name": "items", "matchKind": "MATCH_KIND_PARAMETERISED",
              "pattern": "/items/{id}", "rewrite": "/v2/items/{id}"},
             {"name": "rest", "matchKind": "MATCH_KIND_PREFIX", "pattern": "/"}],
  "loadBalancing": {"algorithm": "LOAD_BALANCING_ALGORITHM_WEIGHTED"},
  "circuitBreaker": {"enabled": true, "consecutiveFailures": 5, "openDuration": "10s",
                     "halfOpenRequests": 1},
  "cors": {"enabled": true, "allowedOrigins": ["https://app.example"]},
  "transform": {"requestHeaders": {"set": {"x-env": "bench"}},
                "responseHeaders": {"remove": ["server"]}}}}
JSON
policies_url="http://127.0.0.1:8080/demo/policies/items/42"
wait_served "$policies_url"

figures=$(measure "http://127.0.0.1:$UPSTREAM_PORT/")
read -r d_rps d_p50 d_p99 d_one _ <<< "$figures"
figures=$(measure "http://127.0.0.1:$NGINX_PROXY_PORT/")
read -r n_rps n_p50 n_p99 n_one _ <<< "$figures"
figures=$(measure "http://127.0.0.1:$BARE_PROXY_PORT/")
read -r b_rps b_p50 b_p99 b_one _ <<< "$figures"
figures=$(measure "$edge_url" -H "X-API-Key: $key")
read -r e_rps e_p50 e_p99 e_one _ <<< "$figures"
figures=$(measure "$policies_url" -H "X-API-Key: $key")
read -r p_rps p_p50 p_p99 p_one _ <<< "$figures"

# The production layout: the standalone edge alone on the server CPU, the
# rest of the suite (and so its stores) moved to the load CPU beside wrk.
taskset -a -p -c "$LOAD_CPU" "$gatewayd_pid" > /dev/null
standalone_edge 18090 18091 "$TARGET/release/gateway-edge" > "$work/edge.log" 2>&1 &
edge_pid=$!
pids+=($edge_pid)
alone_url="http://127.0.0.1:18090/demo/echo/"
wait_served "$alone_url"
figures=$(measure "$alone_url" -H "X-API-Key: $key")
read -r a_rps a_p50 a_p99 a_one _ <<< "$figures"
kill "$edge_pid"

if [ -n "${COMPARE:-}" ]; then
  kill "$gatewayd_pid"
  wait "$gatewayd_pid" 2>/dev/null || true
  start_gatewayd "http://127.0.0.1:$UPSTREAM_PORT" "$COMPARE"
  wait_served "$edge_url"
  figures=$(measure "$edge_url" -H "X-API-Key: $key")
  read -r c_rps c_p50 c_p99 c_one _ <<< "$figures"
fi

echo "wrk, $CONNECTIONS connections and 1 connection, $DURATION each; servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
printf '| %-34s | %10s | %9s | %9s | %13s |\n' "path" "req/s" "p50 ms" "p99 ms" "p50 ms, 1 conn"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "------------" "-----------" "-----------" "---------------"
printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "upstream, direct" "$d_rps" "$d_p50" "$d_p99" "$d_one"
printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "nginx reverse proxy" "$n_rps" "$n_p50" "$n_p99" "$n_one"
printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "bare hyper proxy (the edge's stack)" "$b_rps" "$b_p50" "$b_p99" "$b_one"
printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "edge (auth + limits + usage)" "$e_rps" "$e_p50" "$e_p99" "$e_one"
printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "edge, API with policies" "$p_rps" "$p_p50" "$p_p99" "$p_one"
printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "edge alone on CPU $SERVER_CPU (rest on $LOAD_CPU)" "$a_rps" "$a_p50" "$a_p99" "$a_one"
if [ -n "${COMPARE:-}" ]; then
  printf '| %-34s | %10.0f | %9s | %9s | %13s |\n' "edge, $COMPARE" "$c_rps" "$c_p50" "$c_p99" "$c_one"
  awk -v e="$e_rps" -v c="$c_rps" -v eo="$e_one" -v co="$c_one" 'BEGIN {
    printf "this edge / compared edge throughput: %.2fx; p50 at 1 connection %.3f ms vs %.3f ms\n", e / c, eo, co
  }'
fi
awk -v e="$e_rps" -v n="$n_rps" -v b="$b_rps" -v p="$p_rps" -v eo="$e_one" -v d="$d_one" -v no="$n_one" -v po="$p_one" 'BEGIN {
  printf "edge / nginx throughput: %.2fx; bare hyper proxy / nginx: %.2fx; edge / bare hyper proxy: %.2fx\n", e / n, b / n, e / b
  printf "policies / plain edge throughput: %.2fx (cost %.1f%%); added p50 at 1 connection: %.3f ms\n", p / e, (1 - p / e) * 100, po - eo
  printf "added p50 at 1 connection over the direct call: edge %.3f ms, nginx %.3f ms\n", eo - d, no - d
}'
awk -v a="$a_rps" -v n="$n_rps" -v ao="$a_one" -v d="$d_one" 'BEGIN {
  printf "production layout (edge alone on the server CPU): %.2fx nginx; added p50 at 1 connection %.3f ms\n", a / n, ao - d
}'
