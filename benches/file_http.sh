#!/usr/bin/env bash
# HTTP throughput and server CPU of store_session_data on the file backend against the memory
# backend, in one run: for ROUNDS rounds (default 3), interleaved, runs the release binary on a
# fresh store of each backend, opens 200 sessions, drives store_session_data with wrk (2 threads,
# 50 connections by default) and reads the service's CPU time (user + system, /proc) per request.
# Prints each round's req/s, p50/p99 and CPU per request, then the medians and the ratio of the
# file backend's CPU per request to the memory backend's, with the load average.
#
# Usage: benches/file_http.sh [duration=10s] [connections=50] [sync=always]
# Needs curl and wrk (apt-get install -y wrk). BENCH_DIR places the store (default: the temp dir);
# PORT picks the port (default 18080); ROUNDS the number of rounds; BIN another build of the
# service to measure (an A/B against a saved binary; nothing is built then).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNECTIONS=${2:-50}
SYNC=${3:-always}
PORT=${PORT:-18080}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed: apt-get install -y curl" >&2; exit 1; }

# Builds the release binary through a benchmark build (one feature set, one build).
if [ -z "${BIN:-}" ]; then
    cargo bench --quiet --bench file_store --no-run 2>/dev/null
fi
BIN=${BIN:-target/release/service-sessions}
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/file-http.XXXXXX")
PID=
stop() {
    if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    PID=
}
cleanup() {
    stop
    rm -rf "$WORK"
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)

# run <backend> <round>: prints "rps p50 p99 cpu_us non2xx".
run() {
    local backend=$1 round=$2 persistence
    if [ "$backend" = file ]; then
        persistence="- descriptor: \"service-sessions:persistence:file:default:1.0\"
  path: \"$WORK/store-$round\"
  options:
    sync: $SYNC"
    else
        persistence='- descriptor: "service-sessions:persistence:memory:default:1.0"'
    fi
    cat >"$WORK/config.yml" <<EOF
- descriptor: "pip-services:logger:console:default:1.0"
  level: warn
$persistence
- descriptor: "service-sessions:controller:default:default:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: http, host: 127.0.0.1, port: $PORT }
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
EOF
    "$BIN" -c "$WORK/config.yml" 2>>"$WORK/service.log" &
    PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/heartbeat" >/dev/null && break
        sleep 0.1
    done
    local ids=() i body
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
    local before after
    before=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/store.lua" "http://127.0.0.1:$PORT" >"$WORK/wrk.out"
    after=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    stop
    local requests rps p50 p99 errors
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")
    errors=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out")
    printf '%s %s %s %s %s\n' "$rps" "$p50" "$p99" \
        "$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$requests" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')" "${errors:-0}"
}

echo "# store_session_data over HTTP: memory vs file (sync=$SYNC), $CONNECTIONS connections, $DURATION, $ROUNDS rounds, $(nproc) cores"
declare -A rps_of cpu_of
for round in $(seq "$ROUNDS"); do
    for backend in memory file; do
        read -r rps p50 p99 cpu errors < <(run "$backend" "$round")
        printf 'round %s %-6s %10s req/s   p50 %8s   p99 %8s   CPU %6s us/req   non-2xx %s   (load %s)\n' \
            "$round" "$backend" "$rps" "$p50" "$p99" "$cpu" "$errors" "$(cut -d' ' -f1 /proc/loadavg)"
        rps_of[$backend]+="$rps "
        cpu_of[$backend]+="$cpu "
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
m_cpu=$(echo "${cpu_of[memory]}" | median)
f_cpu=$(echo "${cpu_of[file]}" | median)
echo "median memory: $(echo "${rps_of[memory]}" | median) req/s, $m_cpu us CPU/req"
echo "median file:   $(echo "${rps_of[file]}" | median) req/s, $f_cpu us CPU/req"
awk -v f="$f_cpu" -v m="$m_cpu" 'BEGIN {printf "file / memory CPU per request: %.2f\n", f / m}'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
