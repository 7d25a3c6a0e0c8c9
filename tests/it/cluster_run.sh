#!/usr/bin/env bash
# cluster_run.sh - `make cluster` (SPEC section 9): conf/cluster.sh run starts
# a private PostgreSQL (unix socket only, its postmaster.pid under var/pg/)
# and NODES nodes on PORT+10k; prints each node's URL and a URI that psql
# accepts; supervises the nodes; survives an operator's pg_ctl restart; and
# Ctrl-C stops it all. As root, a checkout that the postgres user cannot
# enter puts PostgreSQL under the temporary directory, and says so.
. "$(dirname "$0")/../lib.sh"

check_true "make cluster runs conf/cluster.sh run var" \
    grep -q 'conf/cluster.sh run var' <(make -s -n -C "$ROOT" cluster 2>/dev/null)

# free_block N: a base port P with P+10k and P+10k+1 free for k < N
free_block() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 60000 - 10 * n)
    socks = []
    try:
        for k in range(n):
            for off in (0, 1):
                s = socket.socket()
                s.bind(("127.0.0.1", base + 10 * k + off))
                socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
PY
}

# start_cluster NAME DIR NODES: conf/cluster.sh run in a job of its own (set -m:
# a group of its own, where SIGINT is not ignored, as from a terminal)
start_cluster() {
    local i
    BASEPORT=$(free_block "$3")
    set -m
    NODES=$3 PORT=$BASEPORT "$ROOT/conf/cluster.sh" run "$2" > "$TMP/$1.out" 2>&1 &
    CL_PID=$!
    set +m
    CLUSTERS+=("$CL_PID")
    for i in $(seq 1 600); do
        grep -q '^Ctrl-C stops' "$TMP/$1.out" && return 0
        kill -0 "$CL_PID" 2>/dev/null || break
        sleep 0.1
    done
    fail "$1: the cluster starts" "$(tail -5 "$TMP/$1.out")"
    return 1
}
# ctrl_c PID NAME: SIGINT to its group; it must exit 0 within 60 s
ctrl_c() {
    local rc=none
    kill -INT -- "-$1"
    for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then kill -TERM "$1"; else rc=0; wait "$1" || rc=$?; fi
    check "$2: Ctrl-C stops it, exit 0" 0 "$rc"
}
left_of() {   # left_of PIDS...: those still running
    local p state out=""
    for p in "$@"; do
        state=$(awk '/^State:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        [ -n "$state" ] && [ "$state" != Z ] && out="$out $p($(cat "/proc/$p/comm" 2>/dev/null))"
    done
    echo "$out"
}
CLUSTERS=()
trap 'for p in "${CLUSTERS[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait; stack_down_all' EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$TMP"

# ---- two nodes in var/ ----
V=$TMP/var
start_cluster two "$V" 2 || { finish; exit 1; }
n0=http://127.0.0.1:$BASEPORT
n1=http://127.0.0.1:$((BASEPORT + 10))
check_true "node 0's URL is printed" grep -q "^node 0: $n0/" "$TMP/two.out"
check_true "node 1's URL, on PORT+10" grep -q "^node 1: $n1/" "$TMP/two.out"
check "node 1's chat-ws on PORT+11 (a plain GET /ws: 426)" 426 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASEPORT + 11))/ws")"
check "node 1's nginx reaches its chat-ws on the node's own socket" "server unix:$V/node1/ws.sock;" \
    "$(grep -o "server unix:[^;]*ws.sock;" "$V/node1/nginx/nginx.conf")"
uri=$(sed -n 's/^PostgreSQL: psql "\(.*\)"$/\1/p' "$TMP/two.out")
check "psql accepts the printed URI" 1 "$(psql -X -q -A -t "$uri" -c 'select 1' 2>&1)"
check "a unix socket only" "" "$(psql -X -q -A -t "$uri" -c 'show listen_addresses' 2>&1)"
check_true "postmaster.pid under var/pg/" test -f "$V/pg/data/postmaster.pid"
pg_pid=$(head -1 "$V/pg/data/postmaster.pid")
check "PostgreSQL runs as $( [ "$(id -u)" = 0 ] && echo postgres || id -un)" \
    "$( [ "$(id -u)" = 0 ] && echo postgres || id -un)" "$(ps -o user= -p "$pg_pid" | tr -d ' ')"
check "the socket's folder is closed to others" 700 "$(stat -c %a "$V/pg")"

# The psql examples of the README, on the printed URI
n=0
while IFS= read -r line; do
    n=$((n + 1))
    out=$(URI=$uri bash -c "cd '$ROOT' && $line" 2>&1)
    check "README psql example $n runs: ${line:0:50}" 0 $?
    case $out in *ERROR*) fail "README psql example $n: no error" "$out" ;; esac
done < <(grep '^psql "$URI"' "$ROOT/README.md")
check_true "the README has psql examples" test "$n" -ge 3
check "the psql insert of the README is stored" "ops|maintenance at 18:00" \
    "$(psql -X -q -A -t "$uri" -c 'select "user", text from messages order by id desc limit 1')"

latest=$(curl -s "$n1/get/msg?tail=1" | jq .max_index)
curl -s -m 20 -o "$TMP/cross.body" "$n1/get/msg?index=$latest&wait=15" &
cpid=$!
sleep 0.3
req "$n0/send/msg?text=node+0+to+node+1"
check "a send on node 0" 200 "$STATUS"
wait "$cpid"
check "reaches a long-poll on node 1" '["node 0 to node 1"]' "$(jq -c .data "$TMP/cross.body")"

# Supervised like make run: a node's chat-ws killed is started again.
kill -9 "$(cat "$V/node1/chat-ws.pid")"
ok=0
for _ in $(seq 1 100); do grep -q 'node1: .*chat-ws started again' "$TMP/two.out" && { ok=1; break; }; sleep 0.1; done
check "node 1's chat-ws killed: started again" 1 "$ok"

# An operator's pg_ctl restart while it runs (the command it printed).
restart=$(sed -n 's/^  (restart it with: \(.*\); the nodes reconnect by themselves)$/\1/p' "$TMP/two.out")
check_true "it prints how to restart PostgreSQL" test -n "$restart"
(cd / && $restart >/dev/null 2>&1)
check "pg_ctl restart as printed" 0 $?
for n in "$n0" "$n1"; do
    ok=0
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$n/send/msg?text=after+restart")" = 200 ] && { ok=1; break; }
        sleep 0.1
    done
    check "after the restart $n stores again" 1 "$ok"
done
check "PostgreSQL is not restarted by the supervisor" 0 "$(grep -c 'postgres.*started again' "$TMP/two.out")"
# Stopped, then started with no options, as an operator may: its settings are its own (chat.conf)
(cd / && ${restart% restart} stop >/dev/null 2>&1 && ${restart% restart} start >/dev/null 2>&1)
check "pg_ctl stop, then a plain pg_ctl start" 0 $?
ok=0
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$n0/send/msg?text=after+stop+and+start")" = 200 ] && { ok=1; break; }
    sleep 0.1
done
check "after it node 0 stores again (the socket where it was)" 1 "$ok"

pids=$(cat "$V"/node*/*.pid 2>/dev/null; head -1 "$V/pg/data/postmaster.pid")
ctrl_c "$CL_PID" "two nodes"
check "no node process and no PostgreSQL left" "" "$(left_of $pids)"
check_true "postmaster.pid is gone" test ! -e "$V/pg/data/postmaster.pid"
check_true "it said it stopped PostgreSQL" grep -q '^stopping PostgreSQL$' "$TMP/two.out"
# Started again on the same var/: the same database, the messages kept.
start_cluster again "$V" 1 || { finish; exit 1; }
check "started again: the messages are kept" 1 \
    "$(curl -s "http://127.0.0.1:$BASEPORT/get/msg?index=0" | jq '[.data[] | select(. == "node 0 to node 1")] | length')"
ctrl_c "$CL_PID" "again"

# ---- a checkout the postgres user cannot enter (as root only) ----
if [ "$(id -u)" = 0 ]; then
    mkdir -m 700 "$TMP/closed"
    mkdir -m 1777 "$TMP/systmp"
    TMPDIR=$TMP/systmp start_cluster closed "$TMP/closed/var" 1 || { finish; exit 1; }
    check_true "it says where PostgreSQL went instead" grep -q "^PostgreSQL cannot use $TMP/closed/var/pg" "$TMP/closed.out"
    check_true "var/pg/data links there" test -L "$TMP/closed/var/pg/data"
    case $(readlink "$TMP/closed/var/pg/data") in
        "$TMP/systmp/chat-pg-"*) pass "under the temporary directory" ;;
        *) fail "under the temporary directory" "$(readlink "$TMP/closed/var/pg/data")" ;;
    esac
    check_true "postmaster.pid findable under var/pg/" test -f "$TMP/closed/var/pg/data/postmaster.pid"
    uri=$(sed -n 's/^PostgreSQL: psql "\(.*\)"$/\1/p' "$TMP/closed.out")
    check "psql accepts its URI" 1 "$(psql -X -q -A -t "$uri" -c 'select 1' 2>&1)"
    req "http://127.0.0.1:$BASEPORT/send/msg?text=closed"
    check "the node stores" 200 "$STATUS"
    ctrl_c "$CL_PID" "closed checkout"
    check_true "postmaster.pid is gone" test ! -e "$TMP/closed/var/pg/data/postmaster.pid"
else
    echo "  (not root: the closed-checkout fallback is not tried)"
fi
CLUSTERS=()
# Any sanitizer report in a node's log is a failure (finish looks at $TMP/*/logs only).
check "no sanitizer report in the nodes' logs" "" \
    "$(grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$TMP"/var/node*/logs/chat-*.log "$TMP"/closed/var/node*/logs/chat-*.log 2>/dev/null)"
finish
