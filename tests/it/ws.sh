#!/usr/bin/env bash
# ws.sh - chat-ws behind nginx at /ws against SPEC section 4, with a real
# WebSocket client (Debian's python3-websockets).
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
CLIENTS=$ROOT/tests/it/ws_clients.py

WS_FLAGS="--max-queue 100 --max-sends 100000" stack_up main || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" basic bad refuse edges slow many
on_sqlite && check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
req "$BASE/metrics/ws"
check "chat-ws metrics: 200" 200 "$STATUS"
check_true "chat-ws metrics: open sockets" grep -q '^chat_ws_open_sockets [0-9]' "$TMP/body"
check_true "chat-ws metrics: a slow socket was counted" grep -q '^chat_ws_closed_slow_total [1-9]' "$TMP/body"
check_true "chat-ws metrics: frames sent" grep -q '^chat_ws_frames_sent_total [1-9]' "$TMP/body"
check "each WS cid stored once" 1 "$(rows "where cid='ws-basic-1'")"

# What libwebsockets would refuse before chat-ws's checks (an HTML 403, a
# dropped connection: nginx said 503) is a JSON 400, as on /get/msg
for q in "room=r1&x=%zz" "room=r1&x=%" "room=r1&x=%4" "room=r1&x=%00"; do
    req "$BASE/ws?$q"
    check_error "GET /ws?$q" 400
    req -H 'Upgrade: websocket' -H 'Connection: Upgrade' -H 'Sec-WebSocket-Version: 13' \
        -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$BASE/ws?$q"
    check_error "a handshake on /ws?$q" 400
    req "$BASE/events?$q"
    check_error "GET /events?$q" 400
done
# Headers chat-ws does not read (a browser's cookies for the site) and a
# long query fit: nginx passes on only what chat-ws reads
cookie="Cookie: sid=$(printf 'c%.0s' $(seq 1 6000))"
req -H "$cookie" "$BASE/ws?room=r1"
check "6,000 bytes of cookies: GET /ws is still a 426" 426 "$STATUS"
out=$(curl -s -N -m 2 -H "$cookie" "$BASE/events?room=r1")
case $out in *"event: ready"*) pass "6,000 bytes of cookies: /events still streams" ;;
    *) fail "6,000 bytes of cookies: /events still streams" "${out:0:200}" ;; esac
req "$BASE/ws?room=r1&pad=$(printf 'a%.0s' $(seq 1 12000))"
check "a 12,000-byte query: GET /ws is still a 426" 426 "$STATUS"
run_checks "$PY" - "$WS_BASE" <<'PY'
import asyncio, sys, websockets
async def main():
    url = sys.argv[1] + "?room=r1"
    async with websockets.connect(url, extra_headers={"Cookie": "a=" + "c" * 6000}) as ws:
        await ws.send('{"text": "with cookies"}')
        got = await asyncio.wait_for(ws.recv(), 10)
        print(("PASS" if "with cookies" in got else "FAIL") + " a WebSocket with 6,000 bytes of cookies is served")
    try:
        await websockets.connect(url, subprotocols=["graphql-ws"])
        print("FAIL a subprotocol other than chat is refused: connected")
    except websockets.InvalidStatusCode as e:
        print(("PASS" if e.status_code == 400 else "FAIL") + f" a subprotocol other than chat is refused with 400 ({e.status_code})")
    async with websockets.connect(url, subprotocols=["graphql-ws", "chat"]) as ws:
        print(("PASS" if ws.subprotocol == "chat" else "FAIL") + " a list that offers chat gets it")
asyncio.run(main())
PY
# chat-ws's own port: a WebSocket on another path is a 404, an HTTP/2
# upgrade (curl --http2) is answered, not a crash
ws_pid=$(cat "$STACK_DIR/chat-ws.pid")
ws_direct=$(sed -n 's/.*--listen 127.0.0.1:\([0-9]*\).*/\1/p' < <(tr '\0' ' ' < "/proc/$ws_pid/cmdline"))
req -H 'Upgrade: websocket' -H 'Connection: Upgrade' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "http://127.0.0.1:$ws_direct/nope?room=r1"
check_error "a WebSocket on chat-ws's port at another path than /ws" 404
codes=""
for u in "/ws?room=a/b" "/events?room=a/b"; do
    codes="$codes $(curl -s -o /dev/null -m 3 --http2 -w '%{http_code}/%{http_version}' "http://127.0.0.1:$ws_direct$u")"
done
curl -s -o /dev/null -m 3 --http2 "http://127.0.0.1:$ws_direct/ws?room=r1"
check "HTTP/2 upgrades on chat-ws's port: refusals answered over HTTP/2" " 400/2 400/2" "$codes"
check "and chat-ws lives on (not even a zombie)" R-or-S \
    "$(awk '/^State:/ { print ($2 == "R" || $2 == "S") ? "R-or-S" : $2 }' "/proc/$ws_pid/status" 2>/dev/null)"

# As make run starts chat-ws: no rate limit (SPEC section 7)
stack_up open || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" burst_open

# Rows written by other processes arrive without waiting for the timer
# probe (inotify on the database's folder): probes only every 10 s here
WS_FLAGS="--probe-ms 10000" stack_up notify --probe-ms 10000 || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" notify

# An Origin allow-list
WS_FLAGS="--origin http://good.example,http://other.example" stack_up origin || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" origin

# As many sockets as --max-conns: the next handshake gets 503 JSON with Retry-After
WS_FLAGS="--max-conns 2" stack_up full || { finish; exit 1; }
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" full

# Idle sockets are pinged; one that never answers is dropped; a handshake
# that never completes is timed out
WS_FLAGS="--ping-secs 1 --handshake-secs 1 --max-sends 20" stack_up ping || { finish; exit 1; }
run_checks "$PY" - "${BASE##*:}" "$STACK_DIR/ws.sock" <<'PY'
import socket, sys, time
from checks import report
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /ws?room=idle HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
s.settimeout(10)
data = s.recv(4096)
head, _, rest = data.partition(b"\r\n\r\n")
report(head.startswith(b"HTTP/1.1 101"), "raw handshake through nginx", head[:30])
t0 = time.monotonic()
while len(rest) < 1:
    rest += s.recv(4096)
report(rest[0] == 0x89, "an idle socket gets a ping", rest[:4])
closed_at = None
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            closed_at = time.monotonic()
            break
except (socket.timeout, ConnectionResetError):
    closed_at = time.monotonic()
report(closed_at is not None and closed_at - t0 < 6, "a socket that never answers pings is dropped",
       None if closed_at is None else closed_at - t0)
d = socket.socket(socket.AF_UNIX)     # chat-ws itself, past nginx
d.connect(sys.argv[2])
d.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
d.settimeout(10)
t0 = time.monotonic()
try:
    gone = d.recv(4096) == b""
except (socket.timeout, ConnectionResetError):
    gone = True
report(gone and time.monotonic() - t0 < 5, "a handshake that does not complete is timed out",
       time.monotonic() - t0)
PY

# The per-connection send rate (chat-ws's default, 20 a second, bursts of 40,
# as the systemd unit runs it; stack.sh passes 0 unless told, as above)
run_checks "$PY" - "$BASE" "$DB" <<'PY'
import asyncio, json, sys, websockets
from checks import db_run
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?room=rate", max_queue=None) as ws:
        for i in range(60):
            await ws.send(json.dumps({"text": f"r{i}"}))
        echoes, limited = 0, 0
        try:
            while echoes + limited < 60:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m.get("code") == 429 and m.get("error"):
                    limited += 1
                elif m.get("text", "").startswith("r"):
                    echoes += 1
        except asyncio.TimeoutError:
            pass
        print(("PASS" if limited > 0 else "FAIL") + f" a fast sender gets error frames 429 ({limited} of 60): {echoes} echoes")
        print(("PASS" if 40 <= echoes < 60 and echoes + limited == 60 else "FAIL") + f" the burst goes through, the rest is refused: {echoes} + {limited}")
        await asyncio.sleep(1.1)
        await ws.send(json.dumps({"text": "after a pause"}))
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        print(("PASS" if m.get("text") == "after a pause" else "FAIL") + " the rate refills: " + json.dumps(m)[:80])
        stored = int(db_run(sys.argv[2], "select count(*) from messages where room = 'rate' and text like 'r%'")[0][0])
        print(("PASS" if stored == echoes else "FAIL") + f" refused sends are not stored: {stored} stored, {echoes} echoes")
asyncio.run(main())
PY

# --help lists every flag
help=$("$BIN_DIR/chat-ws" --help)
for flag in --db --listen --origin --max-conns --max-queue --max-sends --ping-secs --handshake-secs --probe-ms --busy-ms --sync --verbose --quiet --help --version; do
    case $help in *"$flag"*) pass "chat-ws --help lists $flag" ;; *) fail "chat-ws --help lists $flag" ;; esac
done

# Shutdown closes every socket with 1001, promptly
: > "$TMP/close.out"
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
# chat-ws is down now: nginx's 503 JSON says "retry"
run_checks "$PY" "$CLIENTS" "$BASE" "$DB" down

finish
