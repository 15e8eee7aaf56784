#!/usr/bin/env bash
# Soak: 30 minutes (SOAK_SECONDS) of mixed traffic at a fixed rate (RATE) against the release
# binary on one backend (BACKEND=memory|file|mongodb). Prints the error count, RSS at start and
# end, and p99 latency per interval. Not a test. For mongodb it uses MONGODB_URI, or starts the
# test server from test/mongo_server.sh (MONGO_IMPL=rs is the index-backed one for load).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-memory}
PORT=${PORT:-18091}
WORK=$(mktemp -d)
cargo build --release --quiet --bin service-sessions --example soak
case "$BACKEND" in
  memory) export MEMORY_ENABLED=true ;;
  file) export FILE_ENABLED=true FILE_PATH="$WORK/store" ;;
  mongodb)
    if [[ -z "${MONGODB_URI:-}" ]]; then
      # shellcheck source=../test/mongo_server.sh
      source test/mongo_server.sh
      mongo_start MONGODB_URI
    fi
    export MONGO_ENABLED=true MONGO_SERVICE_URI="$MONGODB_URI" ;;
  *) echo "unknown BACKEND $BACKEND" >&2; exit 2 ;;
esac
HTTP_PORT=$PORT LOG_LEVEL=warn ./target/release/service-sessions -c config/config.yml >"$WORK/server.log" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
  if declare -F _mongo_stop_all >/dev/null; then _mongo_stop_all; fi
}
trap cleanup EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/heartbeat" >/dev/null && break; sleep 0.05; done
BENCH=target/release/examples/soak
URL="http://127.0.0.1:$PORT" SERVER_PID=$PID DURATION=${SOAK_SECONDS:-1800} INTERVAL=${INTERVAL:-60} RATE=${RATE:-500} "$BENCH"
