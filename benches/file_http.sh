#!/usr/bin/env bash
# HTTP throughput of store_session_data on the file backend: runs the release binary on a fresh
# store, opens 200 sessions, then drives store_session_data with wrk (2 threads, 50 connections by
# default) and prints wrk's report (requests/s, latency percentiles, non-2xx count).
#
# Usage: benches/file_http.sh [duration=10s] [connections=50] [sync=always]
# Needs curl and wrk (apt-get install -y wrk). BENCH_DIR places the store (default: the temp dir);
# PORT picks the port (default 18080).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNECTIONS=${2:-50}
SYNC=${3:-always}
PORT=${PORT:-18080}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed: apt-get install -y curl" >&2; exit 1; }

cargo build --release --quiet --bin service-sessions
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/file-http.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/config.yml" <<EOF
- descriptor: "pip-services:logger:console:default:1.0"
  level: warn
- descriptor: "service-sessions:persistence:file:default:1.0"
  path: "$WORK/store"
  options:
    sync: $SYNC
- descriptor: "service-sessions:controller:default:default:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: http, host: 127.0.0.1, port: $PORT }
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
EOF

target/release/service-sessions -c "$WORK/config.yml" &
PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/heartbeat" >/dev/null && break
    sleep 0.1
done

ids=()
for i in $(seq 200); do
    body=$(curl -sf -X POST -H 'Content-Type: application/json' \
        -d "{\"user_id\":\"user$i\",\"user_name\":\"User $i\",\"address\":\"10.0.0.1\",\"client\":\"bench\",\"data\":{}}" \
        "http://127.0.0.1:$PORT/v1/sessions/open_session")
    ids+=("$(printf '%s' "$body" | grep -o '"id":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)")
done

{
    printf 'local ids = {'
    printf '"%s",' "${ids[@]}"
    printf '}\n'
    cat <<'EOF'
local counter = 0
local headers = { ["Content-Type"] = "application/json" }
request = function()
  counter = counter + 1
  local id = ids[(counter % #ids) + 1]
  local body = '{"session_id":"' .. id .. '","data":{"cart":[1,2,3],"theme":"dark","n":' .. counter .. '}}'
  return wrk.format("POST", "/v1/sessions/store_session_data", headers, body)
end
EOF
} >"$WORK/store.lua"

echo "# store_session_data over HTTP: file backend, sync=$SYNC, $CONNECTIONS connections, $DURATION, $(nproc) cores"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/store.lua" "http://127.0.0.1:$PORT"
