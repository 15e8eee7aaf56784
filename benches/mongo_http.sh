#!/usr/bin/env bash
# Benchmark of the service over HTTP on the MongoDB backend.
#
# Runs the release binary with the shipped config (MONGO_ENABLED) against MONGODB_URI, or against
# a SecantusDB test server started here (test/mongo_server.sh) when it is unset; opens SESSIONS
# sessions, then drives `get_session_by_id` and `store_session_data` over them round-robin with
# wrk (CONNECTIONS connections, THREADS threads, DURATION each) and prints req/s and latency
# percentiles and the service's CPU time per request (user + system, from /proc); then prints the
# MongoDB server's own single-client op rate and the driver's CPU per operation for the same
# commands (benches/mongo_ops.rs), and the ratio service CPU / driver CPU per request.
# Everything runs on this machine's loopback interface.
#
#   bash benches/mongo_http.sh        # CONNECTIONS=50 THREADS=2 DURATION=10s SESSIONS=200
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
if [[ -z "${MONGODB_URI:-}" ]]; then
    mongo_start MONGODB_URI
fi
# Builds the benchmark and, with it, the release binary (one feature set, one build).
cargo bench --quiet --bench mongo_ops --no-run 2>/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/service-sessions-bench.XXXXXX")"
port="$(_mongo_free_port)"
MONGO_ENABLED=true MONGO_SERVICE_URI="$MONGODB_URI" MONGO_DB=service_sessions_bench \
    MONGO_COLLECTION="http_$$" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" LOG_LEVEL=warn \
    ./target/release/service-sessions -c config/config.yml >"$work/service.log" 2>&1 &
service=$!
cleanup() {
    kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
    rm -rf "$work"
    _mongo_stop_all
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
for i in $(seq 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/ready")" == 200 ]] && break
    if ((i == 300)); then
        echo "The service did not become ready:" >&2
        cat "$work/service.log" >&2
        exit 1
    fi
    sleep 0.1
done

ids=()
for i in $(seq "$SESSIONS"); do
    body="{\"user_id\":\"u$i\",\"user_name\":\"bench\",\"data\":{\"cart\":[1,2,3]}}"
    id="$(curl -sf -X POST -H 'content-type: application/json' -d "$body" "$base/v1/sessions/open_session" |
        sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')"
    ids+=("\"$id\"")
done

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
lua get_session_by_id "'{\"session_id\":\"' .. id .. '\"}'"
lua store_session_data "'{\"session_id\":\"' .. id .. '\",\"data\":{\"cart\":[1,2,3],\"n\":' .. n .. '}}'"

echo "service-sessions over HTTP, MongoDB backend ($CONNECTIONS connections, $THREADS wrk threads, $DURATION, $SESSIONS sessions), $(nproc) cores"
# CPU time (user + system) of the service so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$service/stat"; }
hz="$(getconf CLK_TCK)"
summary=()
declare -A cpu_us
for command in get_session_by_id store_session_data; do
    before="$(cpu_ticks)"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/$command.lua" "$base" >"$work/$command.out"
    after="$(cpu_ticks)"
    requests="$(awk '/requests in/ {print $1}' "$work/$command.out")"
    cpu_us[$command]="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
    echo "--- $command"
    sed -n '/Thread Stats/,$p' "$work/$command.out"
    rps="$(awk '/^Requests\/sec/ {print $2}' "$work/$command.out")"
    p50="$(awk '$1 == "50%" {print $2}' "$work/$command.out")"
    p99="$(awk '$1 == "99%" {print $2}' "$work/$command.out")"
    errors="$(awk '/Non-2xx/ {print $5}' "$work/$command.out")"
    summary+=("$(printf '%-20s %10s req/s   p50 %8s   p99 %8s   non-2xx %s   service CPU %s us/req' \
        "$command" "$rps" "$p50" "$p99" "${errors:-0}" "${cpu_us[$command]}")")
done
echo
echo "=== Summary"
printf '%s\n' "${summary[@]}"
echo
BENCH_SECONDS="${BENCH_SECONDS:-5}" CONCURRENCY="$CONNECTIONS" cargo bench --quiet --bench mongo_ops | tee "$work/ops.out"
floor() { awk -v op="$1" 'index($0, op) == 1 && /driver CPU/ {for (i = 1; i <= NF; i++) if ($i == "CPU") print $(i + 1)}' "$work/ops.out"; }
echo
echo "=== Service CPU per request over the driver's (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
for pair in "get_session_by_id:find_one by _id" "store_session_data:find_one_and_update"; do
    command="${pair%%:*}"
    driver="$(floor "${pair#*:}")"
    awk -v c="$command" -v s="${cpu_us[$command]}" -v d="$driver" \
        'BEGIN {printf "%-20s service %6.1f us   driver %6.1f us   ratio %.2f\n", c, s, d, s / d}'
done
