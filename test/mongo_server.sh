# shellcheck shell=bash
# A MongoDB wire-protocol test server for the test suite and the benchmarks (sourced, not run).
#
# No real `mongod` can be installed from the package registries this project uses, so tests run
# against SecantusDB (a single-node MongoDB wire-protocol server over WiredTiger). It is GPL-2.0:
# it runs only as a separate process and is never a dependency of the crate.
#
#   MONGO_IMPL=py (default)  PyPI `SecantusDB` in a venv: installs in ~15 s. Clients must use
#                            `retryWrites=false` (its retryable-write bookkeeping slows down after
#                            ~10k writes), which the exported URIs carry. Its findAndModify does
#                            not use the `_id` index (cost grows with the collection): fine for
#                            tests, wrong for benchmarks.
#   MONGO_IMPL=rs            crates.io `secantus-mdb` (`secantusd-rs`): faster and index-backed
#                            findAndModify, but a ~5 min cold build (2 idle cores) that needs cmake.
#
# The server is installed once into a cache folder outside the repository
# (${XDG_CACHE_HOME:-$HOME/.cache}/service-sessions) and started on a free 127.0.0.1 port with a
# fresh data folder. Functions:
#   mongo_install      install (if missing) and export SECANTUS_CMD: the server command without
#                      `--port` / `--storage-path`, which tests append to run private instances,
#                      and SECANTUS_URI_OPTIONS: the query options its clients need
#   mongo_start VAR    start a server, export its URI in VAR and stop it when the shell exits

MONGO_IMPL="${MONGO_IMPL:-py}"
SECANTUS_PY_VERSION="0.7.0b3"
SECANTUS_RS_VERSION="0.5.3-beta.196"
MONGO_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/service-sessions"
_MONGO_PIDS=()
_MONGO_DIRS=()

mongo_install() {
    mkdir -p "$MONGO_CACHE"
    local root bin
    case "$MONGO_IMPL" in
    py)
        root="$MONGO_CACHE/secantus-py-$SECANTUS_PY_VERSION"
        bin="$root/bin/secantusd-py"
        # `.complete` is written last, so an interrupted install is redone, not half-used.
        if [[ ! -f "$root/.complete" ]]; then
            echo "Installing the SecantusDB test server (PyPI SecantusDB==$SECANTUS_PY_VERSION)..." >&2
            rm -rf "$root"
            python3 -m venv "$root"
            "$root/bin/pip" install --quiet --disable-pip-version-check "SecantusDB==$SECANTUS_PY_VERSION"
            touch "$root/.complete"
        fi
        ;;
    rs)
        root="$MONGO_CACHE/secantus-rs-$SECANTUS_RS_VERSION"
        bin="$root/bin/secantusd-rs"
        if [[ ! -x "$bin" ]]; then
            echo "Building the SecantusDB test server (crates.io secantus-mdb $SECANTUS_RS_VERSION, ~5 min)..." >&2
            cargo install secantus-mdb --version "=$SECANTUS_RS_VERSION" --locked --ignore-rust-version \
                --root "$root" --quiet
        fi
        ;;
    *)
        echo "MONGO_IMPL must be py or rs, not '$MONGO_IMPL'" >&2
        return 1
        ;;
    esac
    # An empty config file stops the server from picking up a secantusd.toml from the machine.
    : >"$MONGO_CACHE/empty.toml"
    SECANTUS_CMD="$bin --config $MONGO_CACHE/empty.toml --host 127.0.0.1 --cache-size 256M --log-level WARNING"
    # Connection-string options clients of this server need (see above).
    SECANTUS_URI_OPTIONS="retryWrites=false"
    if [[ "$MONGO_IMPL" == rs ]]; then
        SECANTUS_CMD="$SECANTUS_CMD --log-file-max 16MB"
        SECANTUS_URI_OPTIONS=""
    fi
    export SECANTUS_CMD SECANTUS_URI_OPTIONS
}

_mongo_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_mongo_stop_all() {
    local pid
    for pid in "${_MONGO_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if ((${#_MONGO_DIRS[@]})); then
        rm -rf "${_MONGO_DIRS[@]}"
    fi
}

# mongo_start VAR: starts a server on a free loopback port in a fresh data folder and exports its
# connection string in VAR. The server is stopped (and its folder removed) when the shell exits.
mongo_start() {
    local var="$1" port dir pid
    [[ -n "${SECANTUS_CMD:-}" ]] || mongo_install
    port="$(_mongo_free_port)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/service-sessions-mongo.XXXXXX")"
    _MONGO_DIRS+=("$dir")
    trap _mongo_stop_all EXIT
    # shellcheck disable=SC2086 # SECANTUS_CMD is a command line
    $SECANTUS_CMD --port "$port" --storage-path "$dir/data" >"$dir/server.log" 2>&1 &
    pid=$!
    _MONGO_PIDS+=("$pid")
    for _ in $(seq 600); do
        if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export "$var=mongodb://127.0.0.1:$port/${SECANTUS_URI_OPTIONS:+?$SECANTUS_URI_OPTIONS}"
            echo "MongoDB test server (SecantusDB, $MONGO_IMPL) listening on 127.0.0.1:$port" >&2
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "The MongoDB test server exited at start:" >&2
            cat "$dir/server.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "The MongoDB test server did not listen within 60 s:" >&2
    cat "$dir/server.log" >&2
    return 1
}
