#!/usr/bin/env bash
# Failover measurement on a Redis Cluster (not a test: it prints numbers).
#
# For each WAIT_REPLICAS value in MODES (default "0 1"), starts a fresh cluster of 3 masters with
# a replica each on free 127.0.0.1 ports (test/redis_server.sh), runs benches/redis_failover.rs
# (WRITERS writers with `version`, one master killed with -9 after WARMUP s, SECONDS in all) and
# stops the cluster. Everything runs on this machine's loopback interface.
#
#   bash benches/redis_failover.sh     # WRITERS=8 SECONDS=20 WARMUP=3 MODES="0 1"
set -euo pipefail
cd "$(dirname "$0")/.."
MODES="${MODES:-0 1}"
source test/redis_server.sh
redis_install
trap redis_stop_all EXIT
cargo bench --quiet --bench redis_failover --no-run 2>/dev/null
for mode in $MODES; do
    redis_cluster_start REDIS_CLUSTER_NODES 2>/dev/null
    WAIT_REPLICAS="$mode" cargo bench --quiet --bench redis_failover 2>/dev/null
    redis_stop_all
    unset REDIS_CLUSTER_NODES
done
