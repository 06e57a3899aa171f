#!/usr/bin/env bash
# AI gateway benchmark, measured in one run with wrk: OpenAI chat
# completions, JSON and streamed (SSE), against a fast mock provider (nginx
# answering fixed bodies), called directly, through nginx as a plain
# reverse proxy, through the edge (gatewayd --demo: key auth, the estimate
# and the balance hold in quota, channel choice, usage read from the
# answer, Commit, one usage event per request), and through the LiteLLM
# proxy (offline cost map, the same prices). Servers run on core 0, wrk on
# core 1.
#
#   deploy/bench/ai.sh              # 10 s per run
#   DURATION=30s deploy/bench/ai.sh
#   LITELLM=off deploy/bench/ai.sh  # without the LiteLLM rows
#
# Needs nginx, wrk, grpcurl and jq; LiteLLM from a venv
# (python3 -m venv $LITELLM_VENV && $LITELLM_VENV/bin/pip install 'litellm[proxy]').
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
MOCK_PORT=${MOCK_PORT:-18091}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18092}
LITELLM_PORT=${LITELLM_PORT:-18093}
LITELLM=${LITELLM:-on}
LITELLM_VENV=${LITELLM_VENV:-$HOME/.cache/gateway-tools/litellm}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

for tool in nginx wrk taskset grpcurl jq; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
if [ "$LITELLM" = on ] && [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  echo "missing LiteLLM in $LITELLM_VENV (or run with LITELLM=off)" >&2
  exit 1
fi

(cd "$REPO" && cargo build --release -p gatewayd >&2)

# shellcheck source=deploy/bench/lib.sh
source "$REPO/deploy/bench/lib.sh"

# The mock provider's answers: a chat completion with usage, and a stream
# of ten content chunks, the finish chunk and the usage chunk.
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock provider."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}'
chunk() { printf 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[%s]%s}\\n\\n' "$1" "${2:-}"; }
stream=$(chunk '{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}')
for word in Hello from the mock provider, one word per chunk here.; do
  stream+=$(chunk "{\"index\":0,\"delta\":{\"content\":\"$word \"},\"finish_reason\":null}")
done
stream+=$(chunk '{"index":0,"delta":{},"finish_reason":"stop"}')
stream+=$(chunk '' ',"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}')
stream+='data: [DONE]\n\n'
# A longer stream (20 content chunks instead of 10: an nginx `return`
# holds at most 4 KiB): the difference per chunk is each proxy's cost of one
# SSE event.
long=$(chunk '{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}')
for _ in $(seq 1 20); do
  long+=$(chunk '{"index":0,"delta":{"content":"word "},"finish_reason":null}')
done
long+=$(chunk '{"index":0,"delta":{},"finish_reason":"stop"}')
long+=$(chunk '' ',"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}')
long+='data: [DONE]\n\n'

start_nginx <<NGINX
  upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$MOCK_PORT;
    location = /json/v1/chat/completions { default_type application/json; return 200 '$answer'; }
    location = /sse/v1/chat/completions { default_type text/event-stream; return 200 '$stream'; }
    location = /sselong/v1/chat/completions { default_type text/event-stream; return 200 '$long'; }
  }
  server {
    listen 127.0.0.1:$NGINX_PROXY_PORT;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
NGINX

# The edge, with an OpenAI channel per answer on the mock, priced, and
# the demo user's balance (the demo key pays from it) credited.
start_gatewayd "http://127.0.0.1:$MOCK_PORT"
tenant=$(echo '{"slug":"demo"}' |
  admin 127.0.0.1:50051 gateway.identity.v1.IdentityService/GetTenantBySlug | jq -r .tenant.id)
user=$(echo "{\"tenantId\": \"$tenant\", \"pageSize\": 100}" |
  admin 127.0.0.1:50051 gateway.identity.v1.IdentityService/ListUsers |
  jq -r '.users[] | select(.username == "demo") | .id')
for kind in json sse sselong; do
  admin 127.0.0.1:50052 gateway.catalog.v1.CatalogService/CreateChannel > /dev/null <<JSON
{"channel": {"tenantId": "$tenant", "name": "mock-$kind", "provider": "PROVIDER_OPENAI",
  "baseUrl": "http://127.0.0.1:$MOCK_PORT/$kind", "models": ["bench-$kind"],
  "weight": 1, "priority": 1, "enabled": true}, "secret": "sk-mock-provider"}
JSON
  admin 127.0.0.1:50052 gateway.catalog.v1.CatalogService/CreateModelPrice > /dev/null <<JSON
{"modelPrice": {"tenantId": "$tenant", "model": "bench-$kind",
  "inputMicrosPerMillionTokens": 2000000, "outputMicrosPerMillionTokens": 8000000}}
JSON
done
admin 127.0.0.1:50053 gateway.quota.v1.QuotaService/AdjustBalance > /dev/null <<JSON
{"owner": {"kind": "BALANCE_OWNER_KIND_USER", "id": "$user"}, "amountMicros": "1000000000000",
 "reason": "benchmark credit", "idempotencyKey": "bench-$(date +%s%N)"}
JSON

body() {
  printf '{"model":"bench-%s","max_tokens":32,"stream":%s,"messages":[{"role":"user","content":"Say hello in a short sentence."}]}' "$1" "$2"
}
post_script "$work/json.lua" "$(body json false)"
post_script "$work/sse.lua" "$(body sse true)"
post_script "$work/edge-json.lua" "$(body json false)" "Authorization: Bearer $key"
post_script "$work/edge-sse.lua" "$(body sse true)" "Authorization: Bearer $key"
post_script "$work/sselong.lua" "$(body sselong true)"
post_script "$work/edge-sselong.lua" "$(body sselong true)" "Authorization: Bearer $key"
# LiteLLM refuses to start without a master key; clients present it.
litellm_key="sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
post_script "$work/litellm-json.lua" "$(body json false)" "Authorization: Bearer $litellm_key"
post_script "$work/litellm-sse.lua" "$(body sse true)" "Authorization: Bearer $litellm_key"
for kind in json sse sselong; do
  for _ in $(seq 1 100); do
    code=$(curl -s -o "$work/probe.txt" -w '%{http_code}' -H "Authorization: Bearer $key" \
      -H 'content-type: application/json' -d "$(body "$kind" "$([ $kind = json ] && echo false || echo true)")" \
      http://127.0.0.1:8080/v1/chat/completions)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || { echo "the edge does not serve bench-$kind: $code $(cat "$work/probe.txt")" >&2; exit 1; }
done

# LiteLLM in front of the same mock, one worker on the server CPU.
if [ "$LITELLM" = on ]; then
  {
    echo "model_list:"
    for kind in json sse; do
      cat <<YAML
  - model_name: bench-$kind
    litellm_params:
      model: openai/bench-$kind
      api_base: http://127.0.0.1:$MOCK_PORT/$kind/v1
      api_key: sk-mock-provider
    model_info:
      input_cost_per_token: 0.000002
      output_cost_per_token: 0.000008
YAML
    done
  } > "$work/litellm.yaml"
  (
    cd "$work"
    LITELLM_MASTER_KEY="$litellm_key" LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
      exec taskset -c "$SERVER_CPU" "$LITELLM_VENV/bin/litellm" --config "$work/litellm.yaml" \
      --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers 1 > litellm.log 2>&1
  ) &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null -H 'content-type: application/json' -d "$(body json false)" \
      -H "Authorization: Bearer $litellm_key" \
      "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" && break
    sleep 0.2
  done
  curl -sf -o /dev/null -H 'content-type: application/json' -d "$(body json false)" \
    -H "Authorization: Bearer $litellm_key" "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" ||
    { echo "LiteLLM did not start:" >&2; tail -20 "$work/litellm.log" >&2; exit 1; }
fi

row() { printf '| %-30s | %10.0f | %9s | %9s | %13s | %6s |\n' "$@"; }
report() {
  local kind=$1 script=$work/$1.lua
  local d n e l
  d=$(measure "http://127.0.0.1:$MOCK_PORT/$kind/v1/chat/completions" -s "$script")
  n=$(measure "http://127.0.0.1:$NGINX_PROXY_PORT/$kind/v1/chat/completions" -s "$script")
  e=$(measure "http://127.0.0.1:8080/v1/chat/completions" -s "$work/edge-$kind.lua")
  l="0 - - - -"
  if [ "$LITELLM" = on ]; then
    l=$(measure "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" -s "$work/litellm-$kind.lua")
  fi
  read -r -a d <<< "$d"
  read -r -a n <<< "$n"
  read -r -a e <<< "$e"
  read -r -a l <<< "$l"
  echo
  echo "chat completions, $kind: wrk, $CONNECTIONS connections and 1 connection, $DURATION each"
  printf '| %-30s | %10s | %9s | %9s | %13s | %6s |\n' "path" "req/s" "p50 ms" "p99 ms" "p50 ms, 1 conn" "errors"
  printf '|%s|%s|%s|%s|%s|%s|\n' "--------------------------------" "------------" "-----------" "-----------" "---------------" "--------"
  row "mock provider, direct" "${d[@]}"
  row "nginx reverse proxy" "${n[@]}"
  row "edge (auth, money, usage)" "${e[@]}"
  [ "$LITELLM" = on ] && row "LiteLLM proxy" "${l[@]}"
  awk -v e="${e[0]}" -v n="${n[0]}" -v l="${l[0]}" -v eo="${e[3]}" -v no="${n[3]}" -v d="${d[3]}" 'BEGIN {
    printf "edge / nginx throughput: %.2fx\n", e / n
    if (l > 0) printf "edge / LiteLLM throughput: %.0fx\n", e / l
    printf "added p50 at 1 connection over the direct mock: edge %.3f ms, nginx %.3f ms\n", eo - d, no - d
  }'
}

# per_chunk: CPU per SSE event for the nginx proxy and the edge, from the
# throughput of the 10- and 20-chunk streams (1/req/s is CPU time per
# request with the server core saturated).
per_chunk() {
  local n10 e10 nlong elong
  read -r n10 _ <<< "$(measure "http://127.0.0.1:$NGINX_PROXY_PORT/sse/v1/chat/completions" -s "$work/sse.lua")"
  read -r e10 _ <<< "$(measure "http://127.0.0.1:8080/v1/chat/completions" -s "$work/edge-sse.lua")"
  read -r nlong _ <<< "$(measure "http://127.0.0.1:$NGINX_PROXY_PORT/sselong/v1/chat/completions" -s "$work/sselong.lua")"
  read -r elong _ <<< "$(measure "http://127.0.0.1:8080/v1/chat/completions" -s "$work/edge-sselong.lua")"
  echo
  awk -v n10="$n10" -v e10="$e10" -v nlong="$nlong" -v elong="$elong" 'BEGIN {
    n = (1 / nlong - 1 / n10) / 10 * 1e6; e = (1 / elong - 1 / e10) / 10 * 1e6
    printf "SSE, 20 content chunks vs 10: nginx %.0f -> %.0f req/s, edge %.0f -> %.0f req/s\n", n10, nlong, e10, elong
    printf "CPU per SSE chunk: nginx %.2f us, edge %.2f us (edge adds %.2f us per chunk)\n", n, e, e - n
  }'
}

echo "servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
report json
report sse
per_chunk
