#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the integration suite (every backend, MongoDB included),
# doc tests.
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
# Fuzzing (test/fuzz.rs) runs each target for FUZZ_SECONDS (60 here unless set).
set -euo pipefail
cd "$(dirname "$0")/.."
source test/mongo_server.sh
source test/node_original.sh
mongo_install
node_original_install
if [[ -z "${MONGODB_URI:-}" ]]; then
    mongo_start MONGODB_URI
fi
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
cargo test --all-targets
cargo test --doc
