#!/usr/bin/env bash
# process.sh - chat-fcgi as a process: flags, signals, inherited sockets,
# two processes on one database, nginx's answer while it is down.
. "$(dirname "$0")/../lib.sh"
FCGI=$BIN_DIR/chat-fcgi

# --help lists every flag
help=$("$FCGI" --help)
for flag in --db --listen --socket-mode --threads --max-held --probe-ms --busy-ms --sync --backlog --verbose --quiet --help --version; do
    case $help in *"$flag"*) pass "--help lists $flag" ;; *) fail "--help lists $flag" ;; esac
done
"$FCGI" --threads 0 --listen "$TMP/x.sock" 2>/dev/null
check "a bad flag value exits 2" 2 $?
"$FCGI" --db "$TMP/nowhere/x.db" --listen "$TMP/y.sock" 2>"$TMP/err"
check "an unopenable database exits 1" 1 $?
check_true "and says why" grep -q "cannot open database" "$TMP/err"
sqlite3 "$TMP/newer.db" "pragma user_version=99"
"$FCGI" --db "$TMP/newer.db" --listen "$TMP/z.sock" 2>"$TMP/err"
check "a database from a newer version is refused" 1 $?
check_true "with a clear message" grep -q "newer than this program" "$TMP/err"

stack_up main || { finish; exit 1; }
pid=$(cat "$STACK_DIR/chat-fcgi.pid")
check "the socket is not world-writable" 660 "$(stat -c %a "$STACK_DIR/fcgi.sock")"
# conf/stack.sh (make run) runs chat-fcgi and nginx under SCHED_BATCH, every
# thread (unless SCHED=other, or where chrt is refused); chat-ws keeps the
# policy it was started with, this shell's.
policies() { for t in /proc/"$1"/task/*; do chrt -p "${t##*/}" 2>/dev/null | sed -n 's/.*policy: //p'; done | sort -u; }
if [ "${SCHED:-batch}" = batch ] && chrt --batch 0 true 2>/dev/null; then
    check "chat-fcgi's threads run under SCHED_BATCH" SCHED_BATCH "$(policies "$pid")"
    check "nginx's master runs under SCHED_BATCH" SCHED_BATCH "$(policies "$(cat "$STACK_DIR/nginx.run.pid")")"
    check "and its workers" SCHED_BATCH "$(for w in $(pgrep -P "$(cat "$STACK_DIR/nginx.run.pid")"); do policies "$w"; done | sort -u)"
fi
check "chat-ws keeps the launcher's policy" "$(policies $$)" "$(policies "$(cat "$STACK_DIR/chat-ws.pid")")"

# Two chat-fcgi processes (each behind its own nginx) on one database
first=$BASE
stack_up second || { finish; exit 1; }
second=$BASE
latest=$(curl -s "$first/get/msg?tail=1" | jq .max_index)
curl -s -m 20 -o "$TMP/cross.body" -w '%{time_total}' "$first/get/msg?index=$latest&wait=15" > "$TMP/cross.time" &
cpid=$!
sleep 0.3
req "$second/send/msg?text=from+the+other+process"
check "second process stores" 200 "$STATUS"
wait $cpid
check "a long-poll on process 1 wakes for a send on process 2" '["from the other process"]' "$(jq -c .data "$TMP/cross.body")"
check "cross-process wake-up within a second" 1 "$(calc "$(cat "$TMP/cross.time") < 1")"
req "$first/send/msg?text=back"
a=$(jget .id)
req "$second/send/msg?text=forth"
check "ids keep increasing across processes" 1 "$(( $(jget .id) > a ))"
"$ROOT/conf/stack.sh" stop "$TMP/second"
BASE=$first
STACK_DIR=$TMP/main

# SIGTERM with requests held: answered as expired, exits within a second
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
for i in 1 2 3; do
    curl -s -m 20 -o "$TMP/term$i.body" -w '%{http_code} %{time_total}' "$BASE/get/msg?index=$latest&wait=30" > "$TMP/term$i.meta" &
done
for _ in $(seq 1 100); do [ "$(curl -s "$BASE/healthz" | jq .held)" = 3 ] && break; sleep 0.02; done
t0=$(date +%s%N)
kill -TERM "$pid"
gone=0
for _ in $(seq 1 200); do
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    if [ -z "$state" ] || [ "$state" = Z ]; then gone=1; break; fi
    sleep 0.01
done
t1=$(date +%s%N)
wait
check "SIGTERM: the process exits" 1 "$gone"
check "SIGTERM: within a second" 1 "$(( (t1 - t0) < 1000000000 ))"
for i in 1 2 3; do
    check "SIGTERM: held request $i answered 200" 200 "$(cut -d' ' -f1 "$TMP/term$i.meta")"
    check "SIGTERM: held request $i got an empty page" "{\"data\":[],\"max_index\":$latest,\"messages\":[],\"more\":false}" "$(cat "$TMP/term$i.body")"
done
check_true "SIGTERM: the socket file is removed" test ! -e "$STACK_DIR/fcgi.sock"

# chat-fcgi down: nginx answers 503 JSON with Retry-After
req "$BASE/send/msg?text=nobody+home"
check_error "chat-fcgi down: send" 503
check "chat-fcgi down: Retry-After" 1 "$(header retry-after)"
req "$BASE/get/msg?index=0"
check_error "chat-fcgi down: get" 503

# Inherited socket, as spawn-fcgi passes it (fd 0)
python3 - "$STACK_DIR/fcgi.sock" "$FCGI" "$DB" "$STACK_DIR/logs/chat-fcgi.log" <<'PY' &
import os, socket, sys
path, prog, db, log = sys.argv[1:]
s = socket.socket(socket.AF_UNIX)
s.bind(path); s.listen(64)
os.dup2(s.fileno(), 0)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.dup2(fd, 2)
os.execv(prog, [prog, "--db", db])
PY
ipid=$!
echo $ipid > "$STACK_DIR/chat-fcgi.pid"
for _ in $(seq 1 100); do curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" | grep -q 200 && break; sleep 0.05; done
req "$BASE/send/msg?text=via+fd+0"
check "inherited fd 0 (spawn-fcgi style): serves" 200 "$STATUS"
kill -TERM $ipid; wait $ipid 2>/dev/null

# Inherited socket, as systemd passes it (LISTEN_FDS=1, fd 3, LISTEN_PID)
python3 - "$STACK_DIR/fcgi.sock" "$FCGI" "$DB" "$STACK_DIR/logs/chat-fcgi.log" <<'PY' &
import os, socket, sys
path, prog, db, log = sys.argv[1:]
if os.path.exists(path): os.unlink(path)
s = socket.socket(socket.AF_UNIX)
s.bind(path); s.listen(64)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.dup2(fd, 2)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execve(prog, [prog, "--db", db], env)
PY
spid=$!
echo $spid > "$STACK_DIR/chat-fcgi.pid"
for _ in $(seq 1 100); do curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" | grep -q 200 && break; sleep 0.05; done
req "$BASE/send/msg?text=via+LISTEN_FDS"
check "inherited LISTEN_FDS socket (systemd style): serves" 200 "$STATUS"
kill -TERM $spid; wait $spid 2>/dev/null

# TCP listening address
port=$(free_port)
"$FCGI" --db "$DB" --listen "127.0.0.1:$port" 2>>"$STACK_DIR/logs/chat-fcgi.log" &
tpid=$!
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break; sleep 0.05; done
check_true "listens on a TCP address" python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))"
kill -TERM $tpid; wait $tpid 2>/dev/null
check "TCP: SIGTERM exits 0" 0 $?

check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
finish
