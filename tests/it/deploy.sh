#!/usr/bin/env bash
# deploy.sh - the operator's path: `make install`, the systemd units
# (systemd-analyze verify; chat-fcgi started on an inherited socket by
# systemd-socket-activate), and the production server block loaded into a
# real nginx, with its limits, answering the page, the API and /ws.
. "$(dirname "$0")/../lib.sh"
flavour=$(basename "$BIN_DIR")
san=""; [ "$flavour" = san ] && san="SAN=1"
P=$TMP/prefix

make -s -C "$ROOT" install PREFIX="$P" $san >"$TMP/install.log" 2>&1
check "make install" 0 $?
for f in bin/chat-fcgi bin/chat-ws share/chat/sql/schema.sql share/chat/sql/inspect.sql share/chat/htdocs/index.html \
         share/chat/nginx/chat-site.conf share/chat/nginx/chat-errors.conf \
         lib/systemd/system/chat-fcgi.socket lib/systemd/system/chat-fcgi.service \
         lib/systemd/system/chat-ws.service lib/sysusers.d/chat.conf; do
    check_true "installed $f" test -e "$P/$f"
done
check "units run the installed programs" "$P/bin/chat-fcgi" "$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$P/lib/systemd/system/chat-fcgi.service")"
systemd-analyze verify "$P"/lib/systemd/system/chat-fcgi.socket "$P"/lib/systemd/system/chat-fcgi.service \
    "$P"/lib/systemd/system/chat-ws.service >"$TMP/verify.log" 2>&1
check "systemd-analyze verify accepts the units" 0 $?
[ -s "$TMP/verify.log" ] && cat "$TMP/verify.log"
ws_unit_sock=$(sed -n 's/^ExecStart=.* --listen \([^ ]*\).*/\1/p' "$P/lib/systemd/system/chat-ws.service")
check "chat-ws's unit listens where the site's upstream points" "server unix:$ws_unit_sock;" \
    "$(sed -n '/^upstream chat_ws {/,/}/s/^ *\(server .*\)/\1/p' "$P/share/chat/nginx/chat-site.conf")"

# The production server block in a real nginx, paths pointed at this folder
N=$TMP/nginx
mkdir -p "$N/snippets" "$N/logs" "$N/tmp"
cp "$P"/share/chat/nginx/chat-locations.conf "$P"/share/chat/nginx/chat-errors.conf \
   "$P"/share/chat/nginx/chat-fastcgi.conf "$P"/share/chat/nginx/chat-page-headers.conf "$N/snippets/"
port=$(free_port)
sed -e "s|listen 80;|listen 127.0.0.1:$port;|" -e '/listen \[::\]:80;/d' \
    -e "s|unix:/run/chat/fcgi.sock|unix:$TMP/fcgi.sock|" -e "s|unix:$ws_unit_sock|unix:$TMP/ws.sock|" \
    -e "s|root /usr/local/share/chat/htdocs;|root $P/share/chat/htdocs;|" \
    "$P/share/chat/nginx/chat-site.conf" > "$N/chat-site.conf"
{ nginx_conf_head "$N" 2 1024; cat <<NGINX
    types { text/html html; text/css css; application/javascript js; image/svg+xml svg; }
    include $N/chat-site.conf;
}
NGINX
} > "$N/nginx.conf"
nginx -t -p "$N" -c "$N/nginx.conf" -e "$N/logs/error.log" >"$TMP/nginx-t.log" 2>&1
check "nginx -t accepts the production server block" 0 $?
grep -q "test is successful" "$TMP/nginx-t.log" || cat "$TMP/nginx-t.log"

DB=$TMP/chat.db
systemd-socket-activate -l "$TMP/fcgi.sock" "$P/bin/chat-fcgi" --db "$DB" >>"$TMP/fcgi.log" 2>&1 &
echo $! > "$TMP/fcgi.pid"
"$P/bin/chat-ws" --db "$DB" --listen "$TMP/ws.sock" --socket-group "$(id -gn)" >>"$TMP/ws.log" 2>&1 &
echo $! > "$TMP/ws.pid"
nginx -p "$N" -c "$N/nginx.conf" -e "$N/logs/error.log" >>"$N/logs/error.log" 2>&1 &
echo $! > "$TMP/nginx.pid"
# stop_all: TERM to each, then up to 5 s for it to be gone (a socket a
# process still holds is in use: the next one started on it would refuse it)
gone() { local st; st=$(ps -o stat= -p "$1"); [ -z "$st" ] || [ "${st:0:1}" = Z ]; }   # a zombie has let go
stop_all() {
    local f p
    for f in nginx ws fcgi; do
        [ -f "$TMP/$f.pid" ] || continue
        p=$(cat "$TMP/$f.pid"); rm -f "$TMP/$f.pid"
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 1 100); do gone "$p" && break; sleep 0.05; done
    done
}
trap 'stop_all; stack_down_all' EXIT
for _ in $(seq 1 100); do [ -S "$TMP/fcgi.sock" ] && curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
BASE=http://127.0.0.1:$port

req "$BASE/"
check "the page through the production block" 200 "$STATUS"
check_true "with its Content-Security-Policy" test -n "$(header content-security-policy)"
req "$BASE/send/msg?text=deployed"
check "a send through systemd-socket-activate's socket" 200 "$STATUS"
inherited() { for _ in $(seq 1 50); do grep -q "inherited socket" "$TMP/fcgi.log" && return 0; sleep 0.05; done; return 1; }
check_true "chat-fcgi runs on the inherited socket" inherited
req "$BASE/get/msg?index=0"
check "the message is there" '["deployed"]' "$(jget .data)"
req "$BASE/healthz"
check "healthz from this host" 200 "$STATUS"
req "$BASE/metrics"
check "metrics from this host" 200 "$STATUS"
# nginx's own errors (a header over 16 KiB, an unknown Transfer-Encoding...) are JSON
run_checks /usr/bin/python3 "$ROOT/tests/it/nginx_errors.py" "$port"
run_checks /usr/bin/python3 - "$BASE" <<'PY'
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?tail=1") as ws:
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        print(("PASS" if got.get("text") == "deployed" else "FAIL") + " a WebSocket through the production block")
asyncio.run(main())
PY
check "chat-ws's socket: mode 660, the group --socket-group names" "660 $(id -gn)" "$(stat -c '%a %G' "$TMP/ws.sock")"
# A second process on a socket one listens on refuses it, and takes nothing away
for prog in chat-ws chat-fcgi; do
    sock=$TMP/ws.sock; [ $prog = chat-fcgi ] && sock=$TMP/fcgi.sock
    out=$(timeout 10 "$P/bin/$prog" --db "$DB" --listen "$sock" 2>&1); rc=$?
    check "a second $prog on a socket in use exits 1" 1 "$rc"
    case $out in *"is in use"*) pass "and says the socket is in use" ;; *) fail "and says the socket is in use" "$out" ;; esac
done
check_true "chat-ws's socket is still there" test -S "$TMP/ws.sock"
req "$BASE/ws?room=held"
check "and chat-ws still answers through it (426 to a plain GET)" 426 "$STATUS"

# Limits: sends beyond the rate answer 429 JSON, from another loopback address
mkdir -p "$TMP/flood"
# (one process, 40 connections opened at once: a burst even on a loaded machine,
# where 40 curl processes may take longer to start than the rate refills)
/usr/bin/python3 - "${BASE##*:}" "$TMP/flood" <<'PY' > "$TMP/flood/codes"
import socket, sys, threading
port, out = int(sys.argv[1]), sys.argv[2]
socks = []
for i in range(1, 41):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", port))
    socks.append(s)
def send(i, s):
    s.sendall(f"GET /send/msg?text=flood{i} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = b""
    s.settimeout(20)
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    open(f"{out}/{i}.head", "wb").write(head + b"\r\n")
    open(f"{out}/{i}.body", "wb").write(body)
    codes[i] = head.split()[1].decode() if head else "000"
codes = {}
ts = [threading.Thread(target=send, args=(i, s)) for i, s in enumerate(socks, 1)]
for t in ts: t.start()
for t in ts: t.join()
print("\n".join(codes[i] for i in sorted(codes)))
PY
n429=$(grep -c '^429$' "$TMP/flood/codes")
n200=$(grep -c '^200$' "$TMP/flood/codes")
check_true "a burst of 40 sends is limited with 429 ($n429 of them)" test "$n429" -gt 0
check "the others were stored" 40 "$((n429 + n200))"
one=$(grep -l '^HTTP/1.1 429' "$TMP"/flood/*.head | head -1)
BODY=$(cat "${one%.head}.body"); HEADERS=$(tr 'A-Z' 'a-z' < "$one" | tr -d '\r'); STATUS=429
check_error "a limited send" 429
check "429 carries Retry-After" 1 "$(header retry-after)"
check "every 200 was stored, no 429 was" "$((n200 + 1))" "$(sqlite3 "$DB" "select count(*) from messages")"

# limit_conn: held long-polls and sockets per address (20), then 429 JSON
latest=$(curl -s "$BASE/get/msg?tail=1&room=held" | jq .max_index)
held=()
for i in $(seq 1 20); do
    curl -s -o /dev/null -m 20 --interface 127.0.0.2 "$BASE/get/msg?index=$latest&wait=15&room=held" &
    held+=($!)
done
# (until chat-fcgi holds all 20: curl processes start slowly on a loaded machine)
for _ in $(seq 1 100); do
    [ "$(curl -s "$BASE/healthz" | jq .held)" -ge 20 ] 2>/dev/null && break
    sleep 0.1
done
req --interface 127.0.0.2 "$BASE/get/msg?index=$latest&wait=15&room=held"
check_error "the 21st held long-poll from one address" 429
req --interface 127.0.0.3 "$BASE/get/msg?index=$latest&wait=1&room=held"
check "another address is not limited" 200 "$STATUS"
# An event stream beyond the limit: EventSource would give up on a 429, so a 200 retry stream
out=$(curl -s -N -m 3 -D "$TMP/ev.head" --interface 127.0.0.2 "$BASE/events?room=held")
check "the 21st held connection on /events: 200" 200 "$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$TMP/ev.head")"
case $out in *"retry: "*"event: error"*'"code":429'*) pass "a retry stream with event: error 429" ;;
    *) fail "a retry stream with event: error 429" "${out:0:200}" ;; esac
wait "${held[@]}"
# Event streams count with them: 20 streams from one address, then its long-poll is a 429
streams=()
for i in $(seq 1 20); do
    curl -s -N -o /dev/null -m 6 --interface 127.0.0.4 "$BASE/events?room=held" &
    streams+=($!)
done
sleep 1.5
req --interface 127.0.0.4 "$BASE/get/msg?index=$latest&wait=1&room=held"
check_error "a long-poll after 20 event streams from one address" 429
out=$(curl -s -N -m 2 "$BASE/events?room=held&tail=1")
case $out in *"event: ready"*) pass "an event stream through the production block" ;;
    *) fail "an event stream through the production block" "${out:0:200}" ;; esac
req -H 'Origin: http://evil.example' "$BASE/events?room=held"
check_error "a page from another site may not read /events" 403
req -H 'Origin: http://evil.example' "$BASE/ws"
check_error "nor GET /ws (the refusal is JSON, not nginx's page)" 403
wait "${streams[@]}"

# The Origin allow-list of /ws in the site
run_checks /usr/bin/python3 - "$BASE" <<'PY'
import asyncio, sys, websockets
async def main():
    url = "ws" + sys.argv[1][4:] + "/ws"
    try:
        async with websockets.connect(url, origin="http://evil.example"):
            print("FAIL a page from another site may not open /ws: connected")
    except websockets.InvalidStatusCode as e:
        print(("PASS" if e.status_code == 403 else "FAIL") + f" a page from another site may not open /ws ({e.status_code})")
    async with websockets.connect(url, origin="https://chat.example.org"):
        print("PASS the site's own origin opens /ws")
    async with websockets.connect(url):
        print("PASS a client without Origin opens /ws")
asyncio.run(main())
PY

# Slow clients cost one connection for a bounded time, and nothing else:
# headers that never end, a body that never finishes (10 s timeouts)
run_checks python3 - "$port" "$BASE" <<'PY'
import socket, sys, time, urllib.request
port, base = int(sys.argv[1]), sys.argv[2]
from checks import report
a = socket.create_connection(("127.0.0.1", port)); a.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
b = socket.create_connection(("127.0.0.1", port))
b.sendall(b"POST /send/msg HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
          b"Content-Length: 100\r\n\r\ntext=abc")
t0 = time.monotonic()
with urllib.request.urlopen(base + "/get/msg?tail=1", timeout=5) as r:
    report(r.status == 200 and time.monotonic() - t0 < 1, "others are served while two clients stall")
for s, name in ((a, "headers that never end"), (b, "a body that never finishes")):
    s.settimeout(20)
    try:
        while s.recv(4096):
            pass
    except (socket.timeout, ConnectionResetError):
        pass
    took = time.monotonic() - t0
    report(9 <= took < 15, f"{name}: the connection is dropped after the timeout", f"{took:.1f} s")
PY

# Online backup while messages flow, both ways the README shows
(for i in $(seq 1 300); do curl -s -o /dev/null "$BASE/send/msg?text=flow$i"; done) &
flow=$!
sleep 0.3
sqlite3 "$DB" ".backup '$TMP/backup.db'"
check "sqlite3 .backup while messages flow" 0 $?
sqlite3 "$DB" "vacuum into '$TMP/vacuum.db'"
check "VACUUM INTO while messages flow" 0 $?
wait $flow
for b in backup vacuum; do
    check "$b: integrity_check" ok "$(sqlite3 "$TMP/$b.db" 'pragma integrity_check')"
    n=$(sqlite3 "$TMP/$b.db" 'select count(*) from messages')
    check "$b: a consistent prefix of the live database" "$n" \
        "$(sqlite3 "$DB" "attach '$TMP/$b.db' as b; select count(*) from messages m join b.messages c using(id) where m.text = c.text and m.room = c.room")"
    check_true "$b: taken while messages flowed" test "$n" -lt "$(sqlite3 "$DB" 'select count(*) from messages')"
done

# Restore: a stopped chat-fcgi started on the backup serves it
stop_all
cp "$TMP/backup.db" "$TMP/restored.db"
"$P/bin/chat-fcgi" --db "$TMP/restored.db" --listen "$TMP/fcgi.sock" >>"$TMP/fcgi.log" 2>&1 &
echo $! > "$TMP/fcgi.pid"
nginx -p "$N" -c "$N/nginx.conf" -e "$N/logs/error.log" >>"$N/logs/error.log" 2>&1 &
echo $! > "$TMP/nginx.pid"
for _ in $(seq 1 100); do curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" | grep -q 200 && break; sleep 0.05; done
req "$BASE/get/msg?tail=1"
check "the restored database is served" "$(sqlite3 "$TMP/backup.db" 'select max(id) from messages')" "$(jget .max_index)"

stop_all
finish
