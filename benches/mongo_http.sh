#!/usr/bin/env bash
# Benchmark of the service over HTTP on the MongoDB backend, against the driver's floor.
#
# Runs the release binary with the shipped config (MONGO_ENABLED) against MONGODB_URI, or against
# a SecantusDB test server started here (test/mongo_server.sh) when it is unset; opens SESSIONS
# sessions, then drives `get_session_by_id` and `store_session_data` over them round-robin with
# wrk (CONNECTIONS connections, THREADS threads, DURATION each) and reads req/s, latency
# percentiles and the service's CPU time per request (user + system, from /proc). After each
# service run, benches/mongo_ops.rs issues the same driver commands from CONNECTIONS tasks and
# prints the driver's CPU per operation twice: unthrottled (as fast as the server answers) and
# rate-matched (at the req/s the service just reached). Printed: both ratios, service CPU per
# request over each floor. The MongoDB server's own single-client rates are printed once first.
# Everything runs on this machine's loopback interface.
#
#   bash benches/mongo_http.sh                          # CONNECTIONS=50 THREADS=2 DURATION=10s SESSIONS=200
#   BIN=<build> bash benches/mongo_http.sh              # another build of the service
#   BIN_B=<other build> ROUNDS=3 bash benches/mongo_http.sh   # A/B: BIN and BIN_B interleaved
#
# Data goes to the database `service_sessions_bench` (drop it afterwards when MONGODB_URI points
# at a real deployment).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-10s}"
SESSIONS="${SESSIONS:-200}"

if ! command -v wrk >/dev/null; then
    if [[ "$(id -u)" == 0 ]]; then
        apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is needed: apt-get install -y wrk" >&2
        exit 1
    fi
fi

source test/mongo_server.sh
# shellcheck source=common.sh
source benches/common.sh
if [[ -z "${MONGODB_URI:-}" ]]; then
    mongo_start MONGODB_URI
fi
BIN="${BIN:-./target/release/service-sessions}"
BIN_B="${BIN_B:-}"
ROUNDS="${ROUNDS:-1}"
# Builds the benchmark and, with it, the release binary (one feature set, one build).
cargo bench --quiet --bench mongo_ops --no-run 2>/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/service-sessions-bench.XXXXXX")"
service=
stop_service() {
    if [[ -n "$service" ]]; then
        kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
        service=
    fi
}
cleanup() {
    stop_service
    rm -rf "$work"
    _mongo_stop_all
}
trap cleanup EXIT

# Starts build `$1` on a fresh collection `$2` and opens SESSIONS sessions; sets `service`, `base`
# and `ids`.
start_service() {
    local port
    port="$(_mongo_free_port)"
    MONGO_ENABLED=true MONGO_SERVICE_URI="$MONGODB_URI" MONGO_DB=service_sessions_bench \
        MONGO_COLLECTION="$2" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" LOG_LEVEL=warn \
        "$1" -c config/config.yml >"$work/service.log" 2>&1 &
    service=$!
    base="http://127.0.0.1:$port"
    bench_wait_ready "$base" "$work/service.log"

    ids=()
    bench_open_sessions "$base" "$SESSIONS"
}

# A wrk script that posts `$2` (a Lua expression of `id` and `n`) to command `$1` round-robin.
lua() {
    local IFS=,
    cat >"$work/$1.lua" <<EOF
local ids = {${ids[*]}}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  return wrk.format(nil, "/v1/sessions/$1", nil, $2)
end
EOF
}
# One service run of build `$1` (label `$2`, round `$3`): both commands under wrk, then the
# driver's floor unthrottled and at the rates the service reached; appends to the summary.
rows=()
measure() {
    local bin="$1" label="$2" round="$3" command before after requests
    local -A rps cpu_us
    start_service "$bin" "http_$$_${label}_$round"
    lua get_session_by_id "'{\"session_id\":\"' .. id .. '\"}'"
    lua store_session_data "'{\"session_id\":\"' .. id .. '\",\"data\":{\"cart\":[1,2,3],\"n\":' .. n .. '}}'"
    for command in get_session_by_id store_session_data; do
        before="$(cpu_ticks)"
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/$command.lua" "$base" >"$work/$command.out"
        after="$(cpu_ticks)"
        requests="$(awk '/requests in/ {print $1}' "$work/$command.out")"
        cpu_us[$command]="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
        rps[$command]="$(awk '/^Requests\/sec/ {print $2}' "$work/$command.out")"
        local p50 p99 errors
        p50="$(awk '$1 == "50%" {print $2}' "$work/$command.out")"
        p99="$(awk '$1 == "99%" {print $2}' "$work/$command.out")"
        errors="$(awk '/Non-2xx/ {print $5}' "$work/$command.out")"
        printf '%-6s round %s  %-20s %10s req/s   p50 %8s   p99 %8s   non-2xx %s   service CPU %s us/req\n' \
            "$label" "$round" "$command" "${rps[$command]}" "$p50" "$p99" "${errors:-0}" "${cpu_us[$command]}"
    done
    stop_service
    RATE_GET="${rps[get_session_by_id]}" RATE_STORE="${rps[store_session_data]}" SEQUENTIAL="$sequential" \
        BENCH_SECONDS="${BENCH_SECONDS:-5}" CONCURRENCY="$CONNECTIONS" cargo bench --quiet --bench mongo_ops | tee "$work/ops.out"
    sequential=0
    local load pair driver matched
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    for pair in "get_session_by_id:find_one by _id" "store_session_data:find_one_and_update"; do
        command="${pair%%:*}"
        driver="$(floor "${pair#*:}")"
        matched="$(floor "rate-matched ${pair#*:}")"
        rows+=("$(awk -v l="$label" -v r="$round" -v c="$command" -v q="${rps[$command]}" -v s="${cpu_us[$command]}" \
            -v d="$driver" -v m="$matched" -v la="$load" \
            'BEGIN {printf "%-6s %5s  %-20s %8.0f   %7.1f   %7.1f  %5.2f   %7.1f  %5.2f   %s\n", l, r, c, q, s, d, s / d, m, s / m, la}')")
    done
}

# CPU time (user + system) of the service so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$service/stat"; }
hz="$(getconf CLK_TCK)"
# The driver's CPU per op on the floor line that starts with `$1`.
floor() { awk -v op="$1" 'index($0, op) == 1 && /driver CPU/ {for (i = 1; i <= NF; i++) if ($i == "CPU") print $(i + 1)}' "$work/ops.out"; }
sequential=1

echo "service-sessions over HTTP, MongoDB backend ($CONNECTIONS connections, $THREADS wrk threads, $DURATION, $SESSIONS sessions), $(nproc) cores"
echo "A = $BIN${BIN_B:+, B = $BIN_B}; $ROUNDS round(s)"
for round in $(seq "$ROUNDS"); do
    measure "$BIN" A "$round"
    if [[ -n "$BIN_B" ]]; then
        measure "$BIN_B" B "$round"
    fi
done

echo
echo "=== Service CPU per request over the driver's floor (µs; floor unthrottled, and rate-matched: the same commands at the service's req/s)"
printf '%-6s %5s  %-20s %8s   %7s   %7s  %5s   %7s  %5s   %s\n' build round call "req/s" service floor ratio matched ratio "load average"
printf '%s\n' "${rows[@]}"
