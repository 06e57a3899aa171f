# Shared by the benchmark scripts (sourced): a scratch dir ($work) and the
# servers started ($pids), both cleaned up on exit; wrk runs and their
# figures; gatewayd --demo on the server CPU. Expects DURATION, CONNECTIONS,
# SERVER_CPU, LOAD_CPU and TARGET.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wrk's latency figures in milliseconds.
to_ms() {
  awk -v value="$1" 'BEGIN {
    if (value ~ /us$/) { sub(/us$/, "", value); printf "%.3f", value / 1000 }
    else if (value ~ /ms$/) { sub(/ms$/, "", value); printf "%.3f", value }
    else if (value ~ /s$/) { sub(/s$/, "", value); printf "%.3f", value * 1000 }
    else { printf "%s", value }
  }'
}

# measure URL [WRK_ARGS...]: prints "rps p50 p99 p50_at_1 errors" from one
# run at $CONNECTIONS connections and one at a single connection; errors
# are the non-2xx answers of both (reported, and warned about: they make
# the other figures suspect).
measure() {
  local url=$1; shift
  local args=(--latency -d "$DURATION" "$@")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" "${args[@]}" "$url" > "$work/many.txt"
  taskset -c "$LOAD_CPU" wrk -t1 -c1 "${args[@]}" "$url" > "$work/one.txt"
  local rps p50 p99 one errors
  errors=$(cat "$work/many.txt" "$work/one.txt" |
    awk '/Non-2xx/ {sum += $NF} END {print sum + 0}')
  if [ "$errors" -gt 0 ]; then
    echo "warning: $errors non-2xx answers from $url" >&2
  fi
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/many.txt")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/many.txt")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/many.txt")")
  one=$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/one.txt")")
  echo "$rps $p50 $p99 $one $errors"
}

# post_script FILE BODY [HEADER...]: a wrk script that POSTs BODY as JSON.
post_script() {
  local file=$1 body=$2; shift 2
  {
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    local header
    for header in "$@"; do
      printf 'wrk.headers["%s"] = "%s"\n' "${header%%: *}" "${header#*: }"
    done
    printf 'wrk.body = [[%s]]\n' "$body"
  } > "$file"
}

# start_nginx: nginx with one worker on the server CPU, serving the http
# block's contents given on stdin.
start_nginx() {
  {
    echo "worker_processes 1;"
    echo "daemon off;"
    echo "error_log $work/nginx-error.log warn;"
    echo "pid $work/nginx.pid;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "  access_log off;"
    cat
    echo "}"
  } > "$work/nginx.conf"
  taskset -c "$SERVER_CPU" nginx -c "$work/nginx.conf" -p "$work" &
  pids+=($!)
}

# start_reference UPSTREAM_PORT PROXY_PORT: the upstream (nginx with a
# fixed 2-byte answer) and the reference proxy to it, with upstream
# keep-alive as a tuned nginx would have.
start_reference() {
  start_nginx <<NGINX
  upstream backend { server 127.0.0.1:$1; keepalive 128; }
  server {
    listen 127.0.0.1:$1;
    location / { return 200 "ok"; }
  }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
NGINX
}

# start_gatewayd UPSTREAM_URL [BINARY]: gatewayd --demo (this build's, or
# BINARY) on the server CPU with a plan too high to refuse, in
# $work/gatewayd; sets $admin_key, $key and $gatewayd_pid.
start_gatewayd() {
  rm -rf "$work/gatewayd"
  mkdir -p "$work/gatewayd"
  admin_key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  (
    cd "$work/gatewayd"
    GATEWAY_AUTH_ADMIN_KEY="$admin_key" \
    GATEWAY_DEMO_UPSTREAM_URL="$1" \
    GATEWAY_DEMO_REQUESTS_PER_MINUTE=1000000000000 \
    GATEWAY_DEMO_REQUESTS_PER_MONTH=1000000000000 \
    GATEWAY_TELEMETRY_LOG_FILTER=warn \
      exec taskset -c "$SERVER_CPU" "${2:-$TARGET/release/gatewayd}" --demo > out.log 2> err.log
  ) &
  gatewayd_pid=$!
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q '^curl' "$work/gatewayd/out.log" 2>/dev/null && break
    sleep 0.2
  done
  key=$(sed -n "s/^curl -i -H 'X-API-Key: \(sk-[A-Za-z0-9]*\)'.*/\1/p" "$work/gatewayd/out.log")
  [ -n "$key" ] || { echo "gatewayd did not start:" >&2; cat "$work/gatewayd/err.log" >&2; exit 1; }
}

# edge_env PORT OPS_PORT: exports the settings of a standalone edge on
# PORT, wired to the gRPC services of start_gatewayd; its spool in
# $work/edge-PORT. Call it in the subshell that starts the edge.
edge_env() {
  export GATEWAY_EDGE_LISTEN_ADDR="127.0.0.1:$1" GATEWAY_RUNTIME_OPS_ADDR="127.0.0.1:$2" \
    GATEWAY_EDGE_IDENTITY_URL=http://127.0.0.1:50051 GATEWAY_EDGE_CATALOG_URL=http://127.0.0.1:50052 \
    GATEWAY_EDGE_QUOTA_URL=http://127.0.0.1:50053 GATEWAY_EDGE_USAGE_URL=http://127.0.0.1:50054 \
    GATEWAY_EDGE_SPOOL_DIR="$work/edge-$1" GATEWAY_AUTH_ADMIN_KEY="$admin_key" \
    GATEWAY_EGRESS_ALLOW="127.0.0.1:$UPSTREAM_PORT" GATEWAY_TELEMETRY_LOG_FILTER=warn
}

# standalone_edge PORT OPS_PORT BINARY: runs BINARY (gateway-edge, or a
# bench build of it) on the server CPU as a standalone edge on PORT (see
# edge_env). It execs: call it in the background or in a subshell.
standalone_edge() {
  edge_env "$1" "$2"
  exec taskset -c "$SERVER_CPU" "$3"
}

# wait_served URL [SECONDS]: up to SECONDS (default 10) until URL answers
# 200 with $key.
wait_served() {
  for _ in $(seq 1 $((${2:-10} * 10))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "$1")" = 200 ] && return
    sleep 0.1
  done
}

# admin SERVICE_ADDR METHOD: a gRPC call as the admin key, JSON on stdin.
admin() {
  grpcurl -plaintext -H "x-admin-key: $admin_key" -d @ "$1" "$2"
}
