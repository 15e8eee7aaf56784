#!/usr/bin/env bash
# Benchmark of the service over HTTP on the Redis backend (standalone), next to the memory backend
# and to redis-benchmark's own GET/SET on the same Redis server, in one run.
#
# Starts a Redis server on a free 127.0.0.1 port (test/redis_server.sh), then for each backend
# (memory, redis) runs the release binary with the shipped config (MEMORY_ENABLED /
# REDIS_ENABLED), opens SESSIONS sessions and drives `get_session_by_id` and `store_session_data`
# over them round-robin with wrk (CONNECTIONS connections, THREADS threads, DURATION each). Prints
# req/s, latency percentiles and CPU time per request of the service process and of redis-server
# (from /proc), then redis-benchmark's GET/SET (same connections, VALUE_SIZE-byte values) with
# redis-server's CPU per operation. Everything runs on this machine's loopback interface.
#
#   bash benches/redis_http.sh     # CONNECTIONS=50 THREADS=2 DURATION=10s SESSIONS=200 VALUE_SIZE=300
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-10s}"
SESSIONS="${SESSIONS:-200}"
VALUE_SIZE="${VALUE_SIZE:-300}"

if ! command -v wrk >/dev/null; then
    if [[ "$(id -u)" == 0 ]]; then
        apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is needed: apt-get install -y wrk" >&2
        exit 1
    fi
fi
source test/redis_server.sh
# shellcheck source=common.sh
source benches/common.sh
redis_install
cargo build --quiet --release --bin service-sessions

work="$(mktemp -d "${TMPDIR:-/tmp}/service-sessions-bench.XXXXXX")"
service=""
cleanup() {
    [[ -n "$service" ]] && { kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null || true; }
    rm -rf "$work"
    redis_stop_all
}
trap cleanup EXIT
redis_start REDIS_URI 2>/dev/null
redis_port="${REDIS_URI##*:}"
redis_pid="$(redis-cli -p "$redis_port" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')"

# CPU seconds (user + system) a process has used so far.
cpu() {
    awk -v tck="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / tck }' "/proc/$1/stat"
}

# µs of CPU per request: cpu_before cpu_after requests
per_request() {
    awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / n; else print "-" }'
}

summary=()
run_backend() {
    local backend="$1" port base ids=()
    port="$(_redis_free_port)"
    base="http://127.0.0.1:$port"
    if [[ "$backend" == redis ]]; then
        REDIS_ENABLED=true REDIS_SERVICE_URI="$REDIS_URI" REDIS_KEY_PREFIX="bench_$$" HTTP_HOST=127.0.0.1 \
            HTTP_PORT="$port" LOG_LEVEL=warn ./target/release/service-sessions -c config/config.yml \
            >"$work/service-$backend.log" 2>&1 &
    else
        MEMORY_ENABLED=true HTTP_HOST=127.0.0.1 HTTP_PORT="$port" LOG_LEVEL=warn \
            ./target/release/service-sessions -c config/config.yml >"$work/service-$backend.log" 2>&1 &
    fi
    service=$!
    bench_wait_ready "$base" "$work/service-$backend.log"
    bench_open_sessions "$base" "$SESSIONS"
    local IFS=,
    for command in get_session_by_id store_session_data; do
        local expr
        if [[ "$command" == get_session_by_id ]]; then
            expr="'{\"session_id\":\"' .. id .. '\"}'"
        else
            expr="'{\"session_id\":\"' .. id .. '\",\"data\":{\"cart\":[1,2,3],\"n\":' .. n .. '}}'"
        fi
        cat >"$work/$command.lua" <<LUA
local ids = {${ids[*]}}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  return wrk.format(nil, "/v1/sessions/$command", nil, $expr)
end
LUA
    done
    unset IFS
    for command in get_session_by_id store_session_data; do
        local s0 r0 s1 r1 requests rps p50 p99 errors
        s0="$(cpu "$service")"
        r0="$(cpu "$redis_pid")"
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/$command.lua" "$base" >"$work/$backend-$command.out"
        s1="$(cpu "$service")"
        r1="$(cpu "$redis_pid")"
        requests="$(awk '/requests in/ {print $1}' "$work/$backend-$command.out")"
        rps="$(awk '/^Requests\/sec/ {print $2}' "$work/$backend-$command.out")"
        p50="$(awk '$1 == "50%" {print $2}' "$work/$backend-$command.out")"
        p99="$(awk '$1 == "99%" {print $2}' "$work/$backend-$command.out")"
        errors="$(awk '/Non-2xx/ {print $5}' "$work/$backend-$command.out")"
        summary+=("$(printf '%-7s %-20s %10s req/s  p50 %8s  p99 %8s  service CPU %6s us/req  redis CPU %5s us/req  non-2xx %s' \
            "$backend" "$command" "$rps" "$p50" "$p99" "$(per_request "$s0" "$s1" "$requests")" \
            "$(per_request "$r0" "$r1" "$requests")" "${errors:-0}")")
    done
    kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
    service=""
}

echo "service-sessions over HTTP: memory vs Redis standalone ($CONNECTIONS connections, $THREADS wrk threads, $DURATION, $SESSIONS sessions), $(nproc) cores, $(redis-server --version | awk '{print $3}')"
run_backend memory
run_backend redis
requests=200000
for op in get set; do
    r0="$(cpu "$redis_pid")"
    line="$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$CONNECTIONS" -n "$requests" -d "$VALUE_SIZE" -t "$op" --csv | tail -1)"
    r1="$(cpu "$redis_pid")"
    rps="$(echo "$line" | awk -F'","' '{print $2}')"
    p50="$(echo "$line" | awk -F'","' '{print $5}')"
    p99="$(echo "$line" | awk -F'","' '{print $7}')"
    summary+=("$(printf '%-7s %-20s %10s req/s  p50 %6sms  p99 %6sms  redis CPU %5s us/op' \
        "bench" "redis-benchmark ${op^^}" "$rps" "$p50" "$p99" "$(per_request "$r0" "$r1" "$requests")")")
done
echo
echo "=== Summary"
printf '%s\n' "${summary[@]}"
