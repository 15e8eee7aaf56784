# shellcheck shell=bash
# Redis test servers for the test suite and the benchmarks (sourced, not run).
#
# Debian's `redis-server` package (Redis 7) provides redis-server, redis-cli and redis-benchmark;
# redis_install installs it when missing. Every server listens on a free 127.0.0.1 port, in a
# fresh data folder, without persistence, and is stopped (its folder removed) when the shell
# exits. Functions:
#   redis_install                install the package if redis-server is missing
#   redis_start VAR              start a standalone server; export its URI (redis://...) in VAR
#   redis_cluster_start VAR      start a cluster of 3 masters with one replica each; export the
#                                seed nodes (host:port,host:port,...) in VAR
#   redis_stop_all               stop every server started here (run on exit unless the shell
#                                already has an EXIT trap, which must then call it)

_REDIS_PIDS=()
_REDIS_DIRS=()

redis_install() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo "Installing redis-server (Debian package)..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    fi
}

_redis_free_port() {
    # A port whose cluster bus port (port + 10000) is free too.
    python3 -c '
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    if p + 10000 > 65535: a.close(); continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 10000))
    except OSError:
        a.close(); b.close(); continue
    print(p); break'
}

redis_stop_all() {
    local pid
    for pid in "${_REDIS_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    _REDIS_PIDS=()
    if ((${#_REDIS_DIRS[@]})); then
        rm -rf "${_REDIS_DIRS[@]}"
    fi
    _REDIS_DIRS=()
}

# _redis_server PORT DIR [ARGS...]: starts one server in DIR and waits until it answers PING.
_redis_server() {
    local port="$1" dir="$2" pid
    shift 2
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
        --protected-mode yes --daemonize no --logfile "$dir/server.log" "$@" </dev/null >/dev/null 2>&1 &
    pid=$!
    _REDIS_PIDS+=("$pid")
    for _ in $(seq 300); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "redis-server on port $port exited at start:" >&2
            cat "$dir/server.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "redis-server on port $port did not answer within 30 s" >&2
    return 1
}

redis_start() {
    local var="$1" port dir
    redis_install
    [[ -n "$(trap -p EXIT)" ]] || trap redis_stop_all EXIT
    port="$(_redis_free_port)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/service-sessions-redis.XXXXXX")"
    _REDIS_DIRS+=("$dir")
    _redis_server "$port" "$dir" || return 1
    export "$var=redis://127.0.0.1:$port"
    echo "Redis test server listening on 127.0.0.1:$port" >&2
}

redis_cluster_start() {
    local var="$1" root port nodes=() i
    redis_install
    [[ -n "$(trap -p EXIT)" ]] || trap redis_stop_all EXIT
    root="$(mktemp -d "${TMPDIR:-/tmp}/service-sessions-redis-cluster.XXXXXX")"
    _REDIS_DIRS+=("$root")
    for i in 1 2 3 4 5 6; do
        port="$(_redis_free_port)"
        _redis_server "$port" "$root/$port" --cluster-enabled yes --cluster-config-file "$root/$port/nodes.conf" \
            --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 || return 1
        nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$root/create.log" 2>&1 || {
        cat "$root/create.log" >&2
        return 1
    }
    for _ in $(seq 300); do
        if redis-cli -h 127.0.0.1 -p "${nodes[0]##*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
            # Every replica attached to its master and in sync with it (a replica that never
            # synced cannot take over when its master fails).
            local synced=0 node
            for node in "${nodes[@]}"; do
                if redis-cli -h 127.0.0.1 -p "${node##*:}" info replication 2>/dev/null | grep -q 'master_link_status:up'; then
                    synced=$((synced + 1))
                fi
            done
            if [[ "$(redis-cli -h 127.0.0.1 -p "${nodes[0]##*:}" cluster nodes | grep -c ' slave ')" == 3 ]] &&
                ((synced == 3)); then
                local list
                list="$(IFS=,; echo "${nodes[*]}")"
                export "$var=$list"
                echo "Redis test cluster (3 masters, 3 replicas) on $list" >&2
                return 0
            fi
        fi
        sleep 0.1
    done
    echo "The Redis test cluster did not come up within 30 s" >&2
    return 1
}
