#!/usr/bin/env bash
# Instructions per request, by scenario, of the service (and of the bare hyper server) under
# callgrind: counts that do not move with the machine's load, for A/B comparisons of changes to
# the request path. Prints numbers; not a test.
#
#   bash benches/callgrind_http.sh                       # every scenario, 2 000 requests each
#   REQUESTS=500 SCENARIOS="get_session_by_id" bash benches/callgrind_http.sh
#   BIN=/path/to/other/service-sessions bash benches/callgrind_http.sh   # another build
#   KEEP=1 ...                                           # keep the callgrind.out files (printed)
#
# Needs valgrind (apt-get install -y valgrind) and python3. Starts the release binary under
# callgrind (memory backend, log level warn), opens SESSIONS sessions of 10 users through HTTP,
# then for each scenario sends REQUESTS requests one at a time on one keep-alive connection,
# with the counters zeroed before and dumped after, and prints the instructions of the whole
# process (every thread: hyper, the runtime, the kernel's share is not counted) divided by the
# requests. `bare` is benches/bare_hello.rs driven with GET /heartbeat; `bare_post` the same
# server driven with get_session_by_id's requests (a get's exchange with no work between).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-2000}
SESSIONS=${SESSIONS:-1000}
PORT=${PORT:-18390}
SCENARIOS=${SCENARIOS:-bare bare_post heartbeat get_session_by_id store_session_data open_session get_sessions_by_user}
BIN=${BIN:-./target/release/service-sessions}
command -v valgrind >/dev/null || { echo "valgrind is required: apt-get install -y valgrind" >&2; exit 1; }
# A server already on PORT would answer in place of the one measured here: refuse.
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
  echo "port $PORT is taken by another server: set PORT to a free one" >&2
  exit 1
fi
# The service is built only when no other build is named (an edit in the tree then costs no build).
if [ "$BIN" = ./target/release/service-sessions ]; then
  cargo build --release --quiet --bin service-sessions --example bare_hello
else
  cargo build --release --quiet --example bare_hello
fi
WORK=$(mktemp -d)
PID=''
trap 'kill $PID 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

start() { # name command...: run under callgrind with collection on, wait for the port
  local name=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.%p.out" "$@" >"$WORK/$name.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/heartbeat" >/dev/null && return; sleep 0.1; done
  echo "port $PORT did not answer" >&2
  exit 1
}

drive() { # scenario count: send the requests on one connection; every answer must be 200
  python3 - "$PORT" "$1" "$2" "$WORK/ids" <<'EOF'
import http.client, json, sys
port, scenario, count, ids_file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ids = open(ids_file).read().split() if scenario in ("get_session_by_id", "store_session_data") else []
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(count):
    if scenario in ("bare", "heartbeat"):
        c.request("GET", "/heartbeat")
    else:
        body = {
            "get_session_by_id": lambda: {"session_id": ids[i % len(ids)]},
            "store_session_data": lambda: {"session_id": ids[i % len(ids)], "data": {"n": i, "cart": [1, 2, 3]}},
            "open_session": lambda: {"user_id": "u%d" % (i % 10), "user_name": "User", "address": "10.0.0.1", "client": "bench"},
            "get_sessions_by_user": lambda: {"filter": {"user_id": "u%d" % (i % 10)}, "paging": {"take": 100}},
        }[scenario]()
        command = "get_sessions" if scenario == "get_sessions_by_user" else scenario
        c.request("POST", "/v1/sessions/" + command, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("%s answered %d" % (scenario, r.status))
EOF
}

per_request() { # name: the instructions of the last dump over REQUESTS
  local file
  file=$(ls -t "$WORK"/"$1".*.out* | head -n 1)
  awk -v n="$REQUESTS" '/^summary:|^totals:/ {print int($2 / n); exit}' "$file"
}

measure() { # name scenario [label]: the label names the dump and the printed line
  local label=${3:-$2}
  callgrind_control -z "$PID" >/dev/null 2>&1
  drive "$2" "$REQUESTS"
  callgrind_control -d "$label" "$PID" >/dev/null 2>&1
  sleep 0.5
  printf '%-24s instructions_per_request=%s\n' "$label" "$(per_request "$1")"
}

if [[ " $SCENARIOS " == *" bare "* || " $SCENARIOS " == *" bare_post "* ]]; then
  start bare ./target/release/examples/bare_hello "$PORT"
  # The bare server ignores the body: any ids of the service's shape will do.
  python3 -c 'import uuid; print("\n".join(uuid.uuid4().hex for _ in range(1000)))' >"$WORK/ids"
  for s in bare bare_post; do
    [[ " $SCENARIOS " == *" $s "* ]] || continue
    scenario=$s
    [ "$s" = bare_post ] && scenario=get_session_by_id
    drive "$scenario" 200
    measure bare "$scenario" "$s"
  done
  kill "$PID"
  wait "$PID" 2>/dev/null || true
fi
export HTTP_PORT="$PORT" LOG_LEVEL=warn
start service "$BIN" -c config/config.yml
drive open_session "$SESSIONS"
python3 - "$PORT" >"$WORK/ids" <<'EOF'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
c.request("POST", "/v1/sessions/get_sessions", json.dumps({"paging": {"take": 1000}}), {"Content-Type": "application/json"})
print("\n".join(s["id"] for s in json.loads(c.getresponse().read())["data"]))
EOF
for s in $SCENARIOS; do
  [ "$s" = bare ] || [ "$s" = bare_post ] && continue
  drive "$s" 200
  measure service "$s"
done
[ -n "${KEEP:-}" ] && echo "callgrind files in $WORK (callgrind_annotate --inclusive=yes FILE)"
