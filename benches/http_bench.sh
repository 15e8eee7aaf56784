#!/usr/bin/env bash
# HTTP benchmark of the sessions service on the memory backend (prints numbers; not a test).
#
#   bash benches/http_bench.sh            # 1,000,000 sessions of 10,000 users, 3 rounds of 8 s
#   SESSIONS=100000 DURATION=5 ROUNDS=1 bash benches/http_bench.sh
#
# Needs wrk (apt-get install -y wrk). Runs the release binary on a loopback port, preloads the
# sessions with open_session, then drives each scenario with CONNECTIONS connections from one wrk
# thread, and prints req/s, p50/p99 latency, server CPU per request and RSS per stored session.
# The scenarios run interleaved for ROUNDS rounds (machines with neighbours drift over minutes)
# and the summary gives each figure's median over the rounds. Every wrk script sends requests
# built in advance, so the load generator spends the same per request in every scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-1000000}
USERS=${USERS:-10000}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
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

run() { # name script
  local name=$1 script=$2
  local before after out requests
  before=$(cpu)
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "benches/lua/$script" "http://127.0.0.1:$PORT" | grep '^RESULT')
  after=$(cpu)
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  printf '%-26s %s cpu_us_per_req=%.1f\n' "$name" "${out#RESULT }" \
    "$(awk -v a="$after" -v b="$before" -v t="$TICK" -v r="$requests" 'BEGIN {print (a - b) / t * 1e6 / r}')" \
    | tee -a "$WORK/results"
}

# Median of each figure per scenario over the rounds, and get_session_by_id against heartbeat.
summary() {
  awk '
    { name = $1; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[name, kv[1], ++n[name, kv[1]]] = kv[2] + 0 }
      if (!(name in seen)) { seen[name] = 1; order[++count] = name } }
    function median(name, key,   k, m, a, i, j, t) {
      m = n[name, key]; for (i = 1; i <= m; i++) a[i] = v[name, key, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
      print "median of " n[order[1], "rps"] " rounds:"
      for (c = 1; c <= count; c++) { s = order[c]
        printf "  %-26s rps=%.0f p50_ms=%.3f p99_ms=%.3f cpu_us_per_req=%.1f\n", s, median(s, "rps"),
          median(s, "p50_ms"), median(s, "p99_ms"), median(s, "cpu_us_per_req") }
      printf "get_session_by_id / heartbeat throughput: %.0f %%\n", 100 * median("get_session_by_id", "rps") / median("heartbeat", "rps")
    }' "$WORK/results"
}

RSS0=$(rss_kb)
echo "preloading $SESSIONS sessions of $USERS users..."
stored() { curl -s -XPOST -H "content-type: application/json" "http://127.0.0.1:$PORT/v1/sessions/get_sessions" -d '{"paging":{"take":1,"total":true}}' | sed -E 's/.*"total":([0-9]+).*/\1/'; }
STORED=0
while [ "$STORED" -lt "$SESSIONS" ]; do
  wrk -t2 -c64 -d5s -s benches/lua/open.lua "http://127.0.0.1:$PORT" | grep '^RESULT' | sed 's/^RESULT/preload:/'
  STORED=$(stored)
done
RSS1=$(rss_kb)
echo "stored=$STORED rss_before_kb=$RSS0 rss_after_kb=$RSS1 bytes_per_session=$(( (RSS1 - RSS0) * 1024 / STORED ))"

for u in $(seq 0 99); do
  curl -s -XPOST -H "content-type: application/json" "http://127.0.0.1:$PORT/v1/sessions/get_sessions" -d "{\"filter\":{\"user_id\":\"u$u\"},\"paging\":{\"take\":100}}" \
    | grep -oE '"id":"[0-9a-f]{32}"' | cut -d'"' -f4
done >"$WORK/ids"
export IDS_FILE="$WORK/ids"
echo "sampled $(wc -l <"$IDS_FILE") ids; $CONNECTIONS connections, ${DURATION}s per scenario"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run heartbeat heartbeat.lua
  run get_session_by_id by_id.lua
  run store_session_data store.lua
  run get_sessions_by_user by_user.lua
  CONNECTIONS=8 run get_sessions_by_user_c8 by_user.lua
done
run open_session open.lua
summary
echo "final_rss_kb=$(rss_kb)"
