#!/usr/bin/env bash
# ws.sh - chat-ws behind nginx at /ws against SPEC section 4, with a real
# WebSocket client (Debian's python3-websockets).
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
CLIENTS=$ROOT/tests/it/ws_clients.py

WS_FLAGS="--max-queue 100" stack_up main || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" basic bad slow many
check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
check "each WS cid stored once" 1 "$(rows "where cid='ws-basic-1'")"

# An Origin allow-list
WS_FLAGS="--origin http://good.example,http://other.example" stack_up origin || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" origin

# --help lists every flag
help=$("$BIN_DIR/chat-ws" --help)
for flag in --db --listen --origin --max-queue --ping-secs --probe-ms --busy-ms --sync --verbose --quiet --help --version; do
    case $help in *"$flag"*) pass "chat-ws --help lists $flag" ;; *) fail "chat-ws --help lists $flag" ;; esac
done

# Shutdown closes every socket with 1001, promptly
"$PY" - "$BASE" > "$TMP/close.out" 2>&1 <<'PY' &
import asyncio, sys, websockets
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?room=bye", origin="http://good.example") as ws:
        print("open", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except websockets.ConnectionClosed as e:
            print("closed", e.code)
asyncio.run(main())
PY
cpid=$!
for _ in $(seq 1 100); do grep -q open "$TMP/close.out" && break; sleep 0.05; done
t0=$(date +%s%N)
kill -TERM "$(cat "$STACK_DIR/chat-ws.pid")"
wait $cpid
t1=$(date +%s%N)
check "SIGTERM closes sockets with 1001" "closed 1001" "$(tail -1 "$TMP/close.out")"
check "within a second" 1 "$(( (t1 - t0) < 1000000000 ))"

finish
