#!/usr/bin/env bash
# Fleet benchmark (not a test): 1, 2 and 4 instances of the release binary on one store —
# BACKEND=mongodb (default: one MongoDB-wire test server) or BACKEND=redis-cluster (3 masters with
# a replica each, from test/redis_server.sh) — a mixed closed-loop load spread round-robin over them (examples/fleet.rs), then
# a check of the store's state (no lost acknowledged write, no user over its limit). Prints per
# instance count: req/s, p50/p99, service and store CPU per request. Then the over-capacity run
# on one instance: an open-loop load at twice the measured capacity for OVER_SECONDS, then half of
# it, reported every 5 s (503 OVERLOADED while over, normal p99 after).
#
# Knobs: INSTANCES ("1 2 4"), DURATION (20 s per count), CONCURRENCY (64), MAX_IN_FLIGHT (64),
# OVER_SECONDS (60), MONGODB_URI (else a test server from test/mongo_server.sh; MONGO_IMPL=rs is
# the index-backed one for load). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
INSTANCES=${INSTANCES:-"1 2 4"}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-64}
OVER_SECONDS=${OVER_SECONDS:-60}
export MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-64}
export MONGO_IMPL=${MONGO_IMPL:-rs}
BACKEND=${BACKEND:-mongodb}
cargo build --release --quiet --bin service-sessions --example fleet
# shellcheck source=../test/mongo_server.sh
source test/mongo_server.sh
# shellcheck source=../test/redis_server.sh
source test/redis_server.sh
STORE_PID=""
case "$BACKEND" in
mongodb)
    if [[ -z "${MONGODB_URI:-}" ]]; then
        mongo_start MONGODB_URI
        STORE_PID="${_MONGO_PIDS[0]}"
    fi
    STORE="MongoDB $MONGODB_URI (SecantusDB $MONGO_IMPL)"
    ;;
redis-cluster)
    trap redis_stop_all EXIT
    redis_cluster_start REDIS_NODES
    STORE_PID=$(IFS=,; echo "${_REDIS_PIDS[*]}")
    STORE="Redis Cluster $REDIS_NODES"
    ;;
*)
    echo "BACKEND must be mongodb or redis-cluster" >&2
    exit 2
    ;;
esac
WORK=$(mktemp -d)
PIDS=()
stop_instances() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_instances
    rm -rf "$WORK"
    _mongo_stop_all
    redis_stop_all
}
trap cleanup EXIT

# start_instances N COLLECTION: N instances on ports 18101.. sharing COLLECTION; sets URLS.
start_instances() {
    local n=$1 collection=$2 urls=() port
    for i in $(seq "$n"); do
        port=$((18100 + i))
        if [[ "$BACKEND" == mongodb ]]; then
            export MONGO_ENABLED=true MONGO_SERVICE_URI="$MONGODB_URI" MONGO_COLLECTION="$collection"
        else
            export REDIS_ENABLED=true REDIS_CLUSTER=true REDIS_NODES="$REDIS_NODES" REDIS_KEY_PREFIX="$collection"
        fi
        MAX_SESSIONS_PER_USER=5 HTTP_PORT=$port HTTP_HOST=127.0.0.1 LOG_LEVEL=warn \
            ./target/release/service-sessions -c config/config.yml >"$WORK/instance-$i.log" 2>&1 &
        PIDS+=("$!")
        urls+=("http://127.0.0.1:$port")
    done
    for u in "${urls[@]}"; do
        for _ in $(seq 200); do
            [[ "$(curl -s -o /dev/null -w '%{http_code}' "$u/ready")" == 200 ]] && break
            sleep 0.05
        done
    done
    URLS=$(IFS=,; echo "${urls[*]}")
}

echo "# fleet on $STORE, ${DURATION}s per count, $CONCURRENCY workers, max_in_flight=$MAX_IN_FLIGHT"
CAPACITY=0
for n in $INSTANCES; do
    start_instances "$n" "fleet_${n}_$$"
    line=$(URLS=$URLS PIDS=$(IFS=,; echo "${PIDS[*]}") STORE_PID=$STORE_PID DURATION=$DURATION \
        CONCURRENCY=$CONCURRENCY ./target/release/examples/fleet)
    echo "$line"
    if [[ "$n" == 1 ]]; then
        CAPACITY=$(sed -n 's/.*req\/s=\([0-9]*\).*/\1/p' <<<"$line" | head -1)
    fi
    stop_instances
done

if [[ "$CAPACITY" -gt 0 ]]; then
    over=$((CAPACITY * 2)) under=$((CAPACITY / 2))
    echo "# over capacity: one instance, ${over}/s for ${OVER_SECONDS}s, then ${under}/s for 30s"
    start_instances 1 "fleet_over_$$"
    URLS=$URLS PIDS=$(IFS=,; echo "${PIDS[*]}") STORE_PID=$STORE_PID RATES="$over:$OVER_SECONDS,$under:30" \
        INTERVAL=5 ./target/release/examples/fleet || true
    stop_instances
fi
