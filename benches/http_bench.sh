#!/usr/bin/env bash
# HTTP benchmark of the sessions service on the memory backend (prints numbers; not a test).
#
#   bash benches/http_bench.sh            # 1,000,000 sessions of 10,000 users, 3 rounds of 8 s
#   SESSIONS=100000 DURATION=5 ROUNDS=1 bash benches/http_bench.sh
#   SCENARIOS="get_sessions_by_user get_sessions_by_user_c8" bash benches/http_bench.sh
#   NODE=0 bash benches/http_bench.sh     # without the original Node service
#   BIN=/path/to/other/service-sessions bash benches/http_bench.sh   # A/B against another build
#
# Needs wrk (apt-get install -y wrk). Runs the release binary on a loopback port, preloads the
# sessions with open_session, then drives each scenario with CONNECTIONS connections from one wrk
# thread, and prints req/s, p50/p99 latency, server CPU per request (and the user-space part of
# it: the rest is the kernel's socket work) and RSS per stored session.
# The scenarios run interleaved for ROUNDS rounds (machines with neighbours drift over minutes)
# and the summary gives each figure's median over the rounds. Every wrk script sends requests
# built in advance, so the load generator spends the same per request in every scenario.
#
# The floor: every round also drives `bare` (benches/bare_hello.rs, a hyper "hello" server built
# with the same hyper, tokio, allocator and release profile) with the heartbeat script, and the
# summary prints each scenario's server CPU per request as a multiple of the bare server's
# (cpu_x_bare). It also drives `bare_post`: the same bare server sent get_session_by_id's
# requests, which it reads whole and answers with a fixed session's JSON text and the service's
# headers: the same bytes as a get and its answer with no work between them. cpu_x_post is each
# scenario's CPU as a multiple of that one's: what the service's own work costs over the shape
# of the exchange.
# SCENARIOS (space-separated names, default all) picks the service's scenarios to run.
#
# The original: when SESSIONS_NODE_DIR names an installed service-sessions-node (test/run.sh
# installs it; NODE=0 skips it), the script also starts it (memory persistence, console log at
# warn), preloads NODE_SESSIONS sessions, drives heartbeat, get_session_by_id and
# store_session_data against it in the same rounds, and prints our req/s as a multiple of its.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-1000000}
USERS=${USERS:-10000}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
PORT=${PORT:-18090}
BARE_PORT=${BARE_PORT:-$((PORT + 1))}
NODE_PORT=${NODE_PORT:-$((PORT + 2))}
NODE_SESSIONS=${NODE_SESSIONS:-10000}
SCENARIOS=${SCENARIOS:-heartbeat get_session_by_id store_session_data get_sessions_by_user get_sessions_by_user_c8 open_session}
NODE=${NODE:-1}
BIN=${BIN:-./target/release/service-sessions}
[ -n "${SESSIONS_NODE_DIR:-}" ] && [ -f "${SESSIONS_NODE_DIR}/bin/main.js" ] && command -v node >/dev/null || NODE=0
export LUA_DIR="$PWD/benches/lua" USERS
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
# One build for both, so the service and the bare server link the very same hyper and tokio (an
# example also turns on the dev-dependencies' features, tokio's test-util among them, for both).
cargo build --release --quiet --bin service-sessions --example bare_hello
WORK=$(mktemp -d)
PID='' BPID='' NPID=''
trap 'kill $PID $BPID $NPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
trap 'echo "failed at line $LINENO; server logs:" >&2; tail -n 5 "$WORK"/*.log >&2' ERR
HTTP_PORT=$PORT LOG_LEVEL=warn "$BIN" -c config/config.yml >"$WORK/server.log" 2>&1 &
PID=$!
./target/release/examples/bare_hello "$BARE_PORT" >"$WORK/bare.log" 2>&1 &
BPID=$!
if [ "$NODE" = 1 ]; then
  # The original's own config with its console logger at warn, like ours (its default is trace).
  sed 's/level: "trace"/level: "warn"/' "$SESSIONS_NODE_DIR/config/config.yml" >"$WORK/node-config.yml"
  (cd "$SESSIONS_NODE_DIR" && MEMORY_ENABLED=true HTTP_ENABLED=true HTTP_PORT=$NODE_PORT \
    exec node bin/main.js -c "$WORK/node-config.yml" >"$WORK/node.log" 2>&1) &
  NPID=$!
fi
up() { for _ in $(seq 400); do curl -sf "http://127.0.0.1:$1/heartbeat" >/dev/null && return; sleep 0.05; done; echo "port $1 did not answer" >&2; exit 1; }
up "$PORT"
up "$BARE_PORT"
[ "$NODE" = 1 ] && up "$NODE_PORT"
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/${1:-$PID}/stat"; }
user_cpu() { awk '{print $14}' "/proc/${1:-$PID}/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
wanted() { [[ " $SCENARIOS " == *" $1 "* ]]; }

run() { # name script [pid port]: one wrk run against the service (or the given server)
  local name=$1 script=$2 pid=${3:-$PID} port=${4:-$PORT}
  local before after user_before user_after out requests
  before=$(cpu "$pid")
  user_before=$(user_cpu "$pid")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "benches/lua/$script" "http://127.0.0.1:$port" | grep '^RESULT')
  after=$(cpu "$pid")
  user_after=$(user_cpu "$pid")
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  per_request() { awk -v a="$1" -v b="$2" -v t="$TICK" -v r="$requests" 'BEGIN {print (a - b) / t * 1e6 / r}'; }
  printf '%-26s %s cpu_us_per_req=%.1f user_us_per_req=%.1f\n' "$name" "${out#RESULT }" \
    "$(per_request "$after" "$before")" "$(per_request "$user_after" "$user_before")" | tee -a "$WORK/results"
}

# Median of each figure per scenario over the rounds; server CPU per request as a multiple of the
# bare server's; get_session_by_id against heartbeat; our req/s as a multiple of the original's.
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
      bare = ("bare" in seen) ? median("bare", "cpu_us_per_req") : 0
      post = ("bare_post" in seen) ? median("bare_post", "cpu_us_per_req") : 0
      print "median of " n[order[1], "rps"] " rounds:"
      for (c = 1; c <= count; c++) { s = order[c]; cpu = median(s, "cpu_us_per_req")
        printf "  %-26s rps=%.0f p50_ms=%.3f p99_ms=%.3f cpu_us_per_req=%.1f user_us_per_req=%.1f", s, median(s, "rps"),
          median(s, "p50_ms"), median(s, "p99_ms"), cpu, median(s, "user_us_per_req")
        if (bare > 0) printf " cpu_x_bare=%.2f", cpu / bare
        if (post > 0) printf " cpu_x_post=%.2f", cpu / post
        printf "\n" }
      if (("get_session_by_id" in seen) && ("heartbeat" in seen))
        printf "get_session_by_id / heartbeat throughput: %.0f %%\n", 100 * median("get_session_by_id", "rps") / median("heartbeat", "rps")
      for (c = 1; c <= count; c++) { s = order[c]
        if (("node_" s) in seen) printf "%s: %.1fx the original'"'"'s req/s (%.0f vs %.0f)\n", s,
          median(s, "rps") / median("node_" s, "rps"), median(s, "rps"), median("node_" s, "rps") }
    }' "$WORK/results"
}

RSS0=$(rss_kb)
echo "preloading $SESSIONS sessions of $USERS users..."
stored() { curl -s -XPOST -H "content-type: application/json" "http://127.0.0.1:$1/v1/sessions/get_sessions" -d '{"paging":{"take":1,"total":true}}' | sed -E 's/.*"total":([0-9]+).*/\1/'; }
preload() { # port sessions: opens about that many (each wrk run stops at what is missing)
  local stored=0 threads=2
  while [ "$stored" -lt "$2" ]; do
    OPEN_LIMIT=$(($2 - stored)) THREADS=$threads wrk -t$threads -c64 -d5s -s benches/lua/open.lua "http://127.0.0.1:$1" \
      | grep '^RESULT' | sed 's/^RESULT/preload:/'
    stored=$(stored "$1")
  done
  echo "$stored" >"$WORK/stored"
}
sample_ids() { # port: up to 100 ids of each of the users u0..u99
  for u in $(seq 0 99); do
    curl -s -XPOST -H "content-type: application/json" "http://127.0.0.1:$1/v1/sessions/get_sessions" -d "{\"filter\":{\"user_id\":\"u$u\"},\"paging\":{\"take\":100}}" \
      | { grep -oE '"id":"[0-9a-f]{32}"' || true; } | cut -d'"' -f4
  done
}
preload "$PORT" "$SESSIONS"
STORED=$(cat "$WORK/stored")
RSS1=$(rss_kb)
echo "stored=$STORED rss_before_kb=$RSS0 rss_after_kb=$RSS1 bytes_per_session=$(( (RSS1 - RSS0) * 1024 / STORED ))"
sample_ids "$PORT" >"$WORK/ids"
export IDS_FILE="$WORK/ids"
echo "sampled $(wc -l <"$IDS_FILE") ids; $CONNECTIONS connections, ${DURATION}s per scenario"
if [ "$NODE" = 1 ]; then
  echo "preloading the original with $NODE_SESSIONS sessions..."
  preload "$NODE_PORT" "$NODE_SESSIONS"
  sample_ids "$NODE_PORT" >"$WORK/node-ids"
  echo "original: stored=$(cat "$WORK/stored") sampled $(wc -l <"$WORK/node-ids") ids"
fi
node_run() { # name script: the same scenario against the original
  [ "$NODE" = 1 ] && wanted "$1" && IDS_FILE="$WORK/node-ids" run "node_$1" "$2" "$NPID" "$NODE_PORT"
  return 0
}
for round in $(seq "$ROUNDS"); do
  echo "round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  run bare heartbeat.lua "$BPID" "$BARE_PORT"
  run bare_post by_id.lua "$BPID" "$BARE_PORT"
  wanted heartbeat && run heartbeat heartbeat.lua
  wanted get_session_by_id && run get_session_by_id by_id.lua
  wanted store_session_data && run store_session_data store.lua
  wanted get_sessions_by_user && run get_sessions_by_user by_user.lua
  wanted get_sessions_by_user_c8 && CONNECTIONS=8 run get_sessions_by_user_c8 by_user.lua
  node_run heartbeat heartbeat.lua
  node_run get_session_by_id by_id.lua
  node_run store_session_data store.lua
  # Last in the round: each run adds sessions (the next rounds then read and write a larger store).
  wanted open_session && run open_session open.lua
done
summary
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "final_rss_kb=$(rss_kb)"
