#!/usr/bin/env bash
# HTTP benchmark of the sessions service on the memory backend (prints numbers; not a test).
#
#   bash benches/http_bench.sh            # 1,000,000 sessions of 10,000 users, 10 s per scenario
#   SESSIONS=100000 DURATION=5 bash benches/http_bench.sh
#
# Needs wrk (apt-get install -y wrk). Runs the release binary on a loopback port, preloads the
# sessions with open_session, then drives each scenario with CONNECTIONS connections from one wrk
# thread, and prints req/s, p50/p99 latency, server CPU per request and RSS per stored session.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-1000000}
USERS=${USERS:-10000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
PORT=${PORT:-18090}
export LUA_DIR="$PWD/benches/lua" USERS
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet --bin service-sessions
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
HTTP_PORT=$PORT LOG_LEVEL=warn ./target/release/service-sessions -c config/config.yml >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/heartbeat" >/dev/null && break; sleep 0.05; done
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }

run() { # name script method-free-args...
  local name=$1 script=$2
  local before after out requests
  before=$(cpu)
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "benches/lua/$script" "http://127.0.0.1:$PORT" | grep '^RESULT')
  after=$(cpu)
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  printf '%-22s %s cpu_us_per_req=%.1f\n' "$name" "${out#RESULT }" \
    "$(awk -v a="$after" -v b="$before" -v t="$TICK" -v r="$requests" 'BEGIN {print (a - b) / t * 1e6 / r}')"
}

RSS0=$(rss_kb)
echo "preloading $SESSIONS sessions of $USERS users..."
PER_THREAD=$(( SESSIONS / 2 ))
LIMIT=$PER_THREAD wrk -t2 -c64 -d600s -s benches/lua/open.lua "http://127.0.0.1:$PORT" | grep '^RESULT' | sed 's/^RESULT/preload:/'
RSS1=$(rss_kb)
STORED=$(curl -s -XPOST "http://127.0.0.1:$PORT/v1/sessions/get_sessions" -d '{"paging":{"take":1,"total":true}}' | sed -E 's/.*"total":([0-9]+).*/\1/')
echo "stored=$STORED rss_before_kb=$RSS0 rss_after_kb=$RSS1 bytes_per_session=$(( (RSS1 - RSS0) * 1024 / STORED ))"

for u in $(seq 0 99); do
  curl -s -XPOST "http://127.0.0.1:$PORT/v1/sessions/get_sessions" -d "{\"filter\":{\"user_id\":\"u$u\"},\"paging\":{\"take\":100}}" \
    | grep -oE '"id":"[0-9a-f]{32}"' | cut -d'"' -f4
done >"$WORK/ids"
export IDS_FILE="$WORK/ids"
echo "sampled $(wc -l <"$IDS_FILE") ids; $CONNECTIONS connections, ${DURATION}s per scenario"
run heartbeat heartbeat.lua
run get_session_by_id by_id.lua
run store_session_data store.lua
run open_session open.lua
run get_sessions_by_user by_user.lua
echo "final_rss_kb=$(rss_kb)"
