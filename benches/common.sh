# Shared steps of the benchmark scripts that run the service against a store (sourced).

# bench_wait_ready BASE LOG: waits up to 30 s for BASE/ready to answer 200; otherwise prints the
# service's log LOG and exits 1.
bench_wait_ready() {
    local base=$1 log=$2 i
    for i in $(seq 300); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/ready")" == 200 ]] && return 0
        sleep 0.1
    done
    echo "The service at $base did not become ready:" >&2
    cat "$log" >&2
    exit 1
}

# bench_open_sessions BASE N: opens N sessions of users u1..uN (a small `data`), appending each
# id, quoted for a Lua table, to the array `ids`.
bench_open_sessions() {
    local base=$1 n=$2 i body id
    for i in $(seq "$n"); do
        body="{\"user_id\":\"u$i\",\"user_name\":\"bench\",\"data\":{\"cart\":[1,2,3]}}"
        id="$(curl -sf -X POST -H 'content-type: application/json' -d "$body" "$base/v1/sessions/open_session" |
            sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')"
        ids+=("\"$id\"")
    done
}
