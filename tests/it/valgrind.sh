#!/usr/bin/env bash
# valgrind.sh - chat-fcgi and chat-ws serve sends, long-polls (answered,
# expired and abandoned), WebSockets and event streams under valgrind, then
# stop on SIGTERM: no byte definitely or indirectly lost, no invalid access.
# (Skipped in the sanitizer pass: valgrind and ASan do not mix; ASan checks
# leaks there.)
. "$(dirname "$0")/../lib.sh"
case $BIN_DIR in */san) echo "  (sanitizer build: valgrind skipped)"; finish; exit $? ;; esac
command -v valgrind >/dev/null || { fail "valgrind is installed"; finish; exit 1; }
vg="valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=20"
FCGI_WRAP="$vg --log-file=$TMP/vg-fcgi.%p" WS_WRAP="$vg --log-file=$TMP/vg-ws.%p" stack_up main || { finish; exit 1; }

for i in $(seq 1 20); do curl -s -o /dev/null "$BASE/send/msg?text=v$i&cid=c$i"; done
curl -s -o /dev/null "$BASE/send/msg?text=again&cid=c1"
curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"text":"json","user":"u"}' "$BASE/send/msg"
curl -s -o /dev/null "$BASE/send/msg?text=%01bad"
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
curl -s -o "$TMP/lp1" "$BASE/get/msg?index=$latest&wait=10" &
curl -s -o /dev/null -m 1 "$BASE/get/msg?index=$latest&wait=10" &
curl -s -o "$TMP/lp3" "$BASE/get/msg?index=$latest&wait=1" &
sleep 1.5
run_checks /usr/bin/python3 - "$BASE" <<'PY'
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?tail=3") as ws:
        for _ in range(3):
            await asyncio.wait_for(ws.recv(), 20)
        await ws.send(json.dumps({"text": "from ws", "cid": "w1"}))
        got = json.loads(await asyncio.wait_for(ws.recv(), 20))
        print(("PASS" if got.get("text") == "from ws" else "FAIL") + " a WebSocket round trip under valgrind")
        await ws.send("not json")
        await asyncio.wait_for(ws.recv(), 20)
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws") as ws2:
        await asyncio.sleep(0.5)
asyncio.run(main())
PY
wait
# Event streams: a replay then the end of its client, a refusal, one left open at shutdown (below)
out=$(curl -s -N -m 3 "$BASE/events?tail=3")
case $out in *"event: ready"*"from ws"*) pass "an event stream under valgrind" ;;
    *) fail "an event stream under valgrind" "${out:0:200}" ;; esac
check "a bad Last-Event-ID under valgrind" 400 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Last-Event-ID: x' "$BASE/events")"
check "a held long-poll answered under valgrind" '["from ws"]' "$(jq -c .data "$TMP/lp1")"
check "an expired long-poll answered under valgrind" '[]' "$(jq -c .data "$TMP/lp3")"
# one socket still open at shutdown, one long-poll still held
/usr/bin/python3 -c "
import asyncio, sys, websockets
async def main():
    async with websockets.connect('ws' + sys.argv[1][4:] + '/ws') as ws:
        await asyncio.sleep(30)
asyncio.run(main())" "$BASE" >/dev/null 2>&1 &
curl -s -o /dev/null "$BASE/get/msg?index=$((latest + 100))&wait=30&room=empty" &
curl -s -N -o /dev/null -m 30 "$BASE/events?index=0" &
sleep 1
"$ROOT/conf/stack.sh" stop "$STACK_DIR" >/dev/null 2>&1
wait
for f in "$TMP"/vg-fcgi.* "$TMP"/vg-ws.*; do
    name=$(basename "$f" | cut -d. -f1)
    if grep -q "ERROR SUMMARY: 0 errors" "$f" && ! grep -q -E "definitely lost: [1-9]|indirectly lost: [1-9]" "$f"; then
        pass "$name: no leak, no invalid access"
    else
        fail "$name: no leak, no invalid access" "$(grep -E 'lost:|ERROR SUMMARY|Invalid' "$f" | head -5)"
    fi
done
check "both programs ran under valgrind" 2 "$(ls "$TMP"/vg-* | wc -l)"
finish
