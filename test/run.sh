#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the integration suite (every backend), doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
cargo test --doc
