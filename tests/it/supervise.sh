#!/usr/bin/env bash
# supervise.sh - `make run` supervises (SPEC section 7): under `conf/stack.sh
# run`, chat-fcgi, chat-ws and nginx's master killed with SIGKILL are started
# again within seconds while messages flow on every transport, a reload is not
# a death, a process that keeps dying is restarted with growing delays, and
# only SIGTERM stops the whole (tests/it/supervise.py).
. "$(dirname "$0")/../lib.sh"

# `make run` is this same command (run with make it would install packages).
check_true "make run runs conf/stack.sh run" \
    grep -q 'conf/stack.sh run var' <(make -s -n -C "$ROOT" run 2>/dev/null)

port=$(free_port); ws_port=$(free_port)
S=$TMP/run
STACKS+=("$S")
PORT=$port WS_PORT=$ws_port "$ROOT/conf/stack.sh" run "$S" > "$TMP/run.out" 2>&1 &
run_pid=$!
run2=
# A supervisor left running would start again what stack_down_all stops.
trap 'kill -TERM $run_pid $run2 2>/dev/null; wait $run_pid $run2 2>/dev/null; stack_down_all' EXIT
BASE=http://127.0.0.1:$port

ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200 ] && grep -q listening "$S/logs/chat-ws.log" 2>/dev/null; }
for _ in $(seq 1 300); do ready && break; kill -0 $run_pid 2>/dev/null || break; sleep 0.1; done
check_true "stack.sh run starts" ready || { cat "$TMP/run.out"; finish; exit 1; }

run_checks /usr/bin/python3 "$ROOT/tests/it/supervise.py" "$BASE" "$S" "$BIN_DIR" "$run_pid" "$TMP/pids"
check_true "the restarts are said on the terminal too" \
    grep -q 'chat-fcgi exited (signal 9); restarting in 0.5 s' "$TMP/run.out"
check "integrity_check" ok "$(sqlite3 "$S/chat.db" 'pragma integrity_check')"

# SIGTERM stops the whole, exits 0, and leaves nothing running.
pgrep -P $run_pid >> "$TMP/pids" || true
kill -TERM $run_pid
for _ in $(seq 1 300); do kill -0 $run_pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $run_pid 2>/dev/null; then fail "stack.sh run stops on SIGTERM within 30 s"; rc=none
else rc=0; wait $run_pid || rc=$?; fi
check "stack.sh run exits 0 on SIGTERM" 0 "$rc"
left=""
for p in $(sort -u "$TMP/pids"); do
    state=$(awk '/^State:/ {print $2}' "/proc/$p/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && left="$left $p($(cat "/proc/$p/comm" 2>/dev/null))"
done
check "no process of the stack left (of $(sort -u "$TMP/pids" | wc -l) seen)" "" "$left"
check_true "it said it was stopping" grep -q '^stopping$' "$TMP/run.out"

# Ctrl-C: the terminal sends SIGINT to the whole foreground process group
# (set -m: the job gets a group of its own, and SIGINT is not ignored in it).
port=$(free_port); ws_port=$(free_port)
S2=$TMP/ctrl-c
STACKS+=("$S2")
set -m
PORT=$port WS_PORT=$ws_port "$ROOT/conf/stack.sh" run "$S2" > "$TMP/run2.out" 2>&1 &
run2=$!
set +m
for _ in $(seq 1 300); do [ -f "$S2/nginx.run.pid" ] && curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
pids=$(cat "$S2"/*.pid 2>/dev/null; pgrep -P "$(cat "$S2/nginx.run.pid" 2>/dev/null || echo 0)")
kill -INT -- -$run2
for _ in $(seq 1 300); do kill -0 $run2 2>/dev/null || break; sleep 0.1; done
if kill -0 $run2 2>/dev/null; then rc=none; kill -TERM $run2; else rc=0; wait $run2 || rc=$?; fi
check "Ctrl-C stops stack.sh run, exit 0" 0 "$rc"
left=""
for p in $pids; do
    state=$(awk '/^State:/ {print $2}' "/proc/$p/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && left="$left $p"
done
check "Ctrl-C leaves no process of the stack ($(echo $pids | wc -w) seen)" "" "$left"

# A port already taken (another make run, say: nginx's reuseport would share
# it): stack.sh says so and starts nothing
port=$(free_port); ws_port=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$port" &
holder=$!
for _ in $(seq 1 50); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
S3=$TMP/taken
STACKS+=("$S3")
PORT=$port WS_PORT=$ws_port timeout 30 "$ROOT/conf/stack.sh" run "$S3" > "$TMP/run3.out" 2>&1
check "make run on a port in use: exit 1" 1 $?
check_true "and it says the port is in use" grep -q "port $port is in use" "$TMP/run3.out"
check "and nothing of it runs" 0 "$(pgrep -fc "$S3/" || true)"
kill $holder; wait $holder 2>/dev/null

# A second run in the folder of one that runs: refused before it touches
# anything, and the first one goes on serving
port=$(free_port); ws_port=$(free_port)
S5=$TMP/twice
STACKS+=("$S5")
PORT=$port WS_PORT=$ws_port "$ROOT/conf/stack.sh" start "$S5" > /dev/null 2>&1
PORT=$(free_port) WS_PORT=$(free_port) timeout 30 "$ROOT/conf/stack.sh" run "$S5" > "$TMP/run5.out" 2>&1
check "a second run in a folder whose stack runs: exit 1" 1 $?
check_true "and it says a stack runs there" grep -q "a stack already runs in $S5" "$TMP/run5.out"
check "and the first one still serves" 200 "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/get/msg")"
check_true "with its sockets" test -S "$S5/fcgi.sock" -a -S "$S5/ws.sock"

# A start that fails half-way (chat-ws refuses its flags) stops what it started
S4=$TMP/half
STACKS+=("$S4")
PORT=$(free_port) WS_PORT=$(free_port) WS_FLAGS="--max-queue 8" timeout 30 "$ROOT/conf/stack.sh" run "$S4" > "$TMP/run4.out" 2>&1
check "a failed start: exit 1" 1 $?
sleep 0.3
check "and chat-fcgi, started before, is stopped too" 0 "$(pgrep -fc "$S4/" || true)"
[ "$FAILED" = 0 ] || tail -20 "$TMP/run.out"
finish
