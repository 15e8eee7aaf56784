#!/usr/bin/env bash
# Soak: 30 minutes (SOAK_SECONDS) of mixed traffic at a fixed rate (RATE) against the release
# binary on one backend (BACKEND=memory|file|mongodb; mongodb needs MONGODB_URI). Prints the
# error count, RSS at start and end, and p99 latency per interval. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-memory}
PORT=${PORT:-18091}
WORK=$(mktemp -d)
cargo build --release --quiet --bin service-sessions --example soak
case "$BACKEND" in
  memory) export MEMORY_ENABLED=true ;;
  file) export FILE_ENABLED=true FILE_PATH="$WORK/store" ;;
  mongodb) export MONGO_ENABLED=true MONGO_SERVICE_URI="${MONGODB_URI:?set MONGODB_URI}" ;;
  *) echo "unknown BACKEND $BACKEND" >&2; exit 2 ;;
esac
HTTP_PORT=$PORT LOG_LEVEL=warn ./target/release/service-sessions -c config/config.yml >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/heartbeat" >/dev/null && break; sleep 0.05; done
BENCH=target/release/examples/soak
URL="http://127.0.0.1:$PORT" SERVER_PID=$PID DURATION=${SOAK_SECONDS:-1800} INTERVAL=${INTERVAL:-60} RATE=${RATE:-500} "$BENCH"
