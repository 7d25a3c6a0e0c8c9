#!/usr/bin/env bash
# conns.sh - what chat-fcgi must not wait on for ever: connections that send
# nothing, stop half-way or trickle (TCP and unix), and descriptors: held
# long-polls beyond what the descriptor limit allows get 503, not EMFILE.
. "$(dirname "$0")/../lib.sh"
FCGI=$BIN_DIR/chat-fcgi
mkdir -p "$TMP/run/logs"

run_checks python3 "$ROOT/tests/it/fcgi_raw.py" conns "$FCGI" "$TMP/run/chat.db" \
    "$TMP/run/logs/chat-fcgi.log" "$TMP/run"

# --max-held capped by a low descriptor limit, behind nginx: the stack's
# chat-fcgi is replaced by one under `ulimit -n 128`.
stack_up cap || { finish; exit 1; }
pid=$(cat "$STACK_DIR/chat-fcgi.pid")
kill -TERM "$pid"
for _ in $(seq 1 200); do [ -e "$STACK_DIR/fcgi.sock" ] || break; sleep 0.05; done
bash -c 'ulimit -n 128 && exec "$0" "$@"' "$FCGI" --db "$DB" --listen "$STACK_DIR/fcgi.sock" --threads 2 \
    >>"$STACK_DIR/logs/chat-fcgi.log" 2>&1 </dev/null &
echo $! > "$STACK_DIR/chat-fcgi.pid"
for _ in $(seq 1 200); do curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" | grep -q 200 && break; sleep 0.05; done
req "$BASE/healthz"
check "chat-fcgi under ulimit -n 128 answers" 200 "$STATUS"
run_checks python3 "$ROOT/tests/it/fcgi_raw.py" held_cap "$BASE" "$STACK_DIR/logs/chat-fcgi.log" 120

check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
finish
