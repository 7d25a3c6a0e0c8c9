#!/usr/bin/env bash
# get.sh - /get/msg short polls against SPEC section 3, through a real nginx.
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }

req "$BASE/get/msg?index=0"
check "empty store: 200" 200 "$STATUS"
check "empty store: seed shape" '{"data":[],"max_index":0,"messages":[],"more":false}' "$BODY"
check "get: no-store" no-store "$(header cache-control)"

for t in one two three four five; do curl -s "$BASE/send/msg?text=$t&user=u$t" >/dev/null; done
curl -s "$BASE/send/msg?text=elsewhere&room=side" >/dev/null

req "$BASE/get/msg?index=0"
check "all of the room, oldest first" '["one","two","three","four","five"]' "$(jget .data)"
check "messages carry whole rows" '{"id":1,"room":"lobby","user":"uone","text":"one"}' \
    "$(jget '.messages[0] | {id, room, user, text}')"
check "messages have ts" true "$(jget '.messages | all(.ts > 1700000000000)')"
check "max_index is the last id" 5 "$(jget .max_index)"
check "more false" false "$(jget .more)"
req "$BASE/get/msg/?index=3"
check "index: ids after it; trailing slash" '[4,5]' "$(jget '[.messages[].id]')"
req "$BASE/get/msg"
check "index defaults to 0" 5 "$(jget '.data | length')"

req "$BASE/get/msg?index=0&limit=2"
check "limit: first two" '[1,2]' "$(jget '[.messages[].id]')"
check "limit: more true" true "$(jget .more)"
check "limit: max_index is the last returned" 2 "$(jget .max_index)"
req "$BASE/get/msg?index=2&limit=3"
check "limit exactly the rest: more false" false "$(jget .more)"

req "$BASE/get/msg?tail=2&index=1"
check "tail ignores index, last two" '[4,5]' "$(jget '[.messages[].id]')"
req "$BASE/get/msg?tail=1000"
check "tail larger than the room" 5 "$(jget '.data | length')"

req "$BASE/get/msg?index=5"
check "nothing new: empty data" '[]' "$(jget .data)"
check "nothing new: max_index is the latest" 5 "$(jget .max_index)"
req "$BASE/get/msg?index=500"
check "cursor ahead: latest id" 5 "$(jget .max_index)"
# The whole cursor range of SPEC section 3: 0 to 2^62 - 1, leading zeros allowed
req "$BASE/get/msg?index=4611686018427387903"
check "index at the maximum (2^62 - 1): 200" 200 "$STATUS"
check "index at the maximum: nothing after it, latest id" '{"data":[],"max_index":5,"messages":[],"more":false}' "$BODY"
req "$BASE/get/msg?index=4611686018427387904"
check_error "index one past the maximum" 400
check "index one past the maximum: says the range" '"index must be a whole number from 0 to 4611686018427387903"' "$(jget .error)"
req "$BASE/get/msg?index=99999999999999999999"
check_error "index past int64" 400
req "$BASE/get/msg?index=1"
one=$BODY
req "$BASE/get/msg?index=0000000000000000000001"
check "index with leading zeros: 200" 200 "$STATUS"
check "index with leading zeros: the same as index=1" "$one" "$BODY"
req "$BASE/get/msg?tail=0002&wait=0000000000000000000000000"
check "tail and wait with leading zeros" '[4,5]' "$(jget '[.messages[].id]')"
# The same cursor rule on /ws: the maximum and leading zeros open, one past is refused
ws_open=$(/usr/bin/python3 - "$BASE" <<'PY'
import asyncio, json, sys
import websockets
async def opens(query):
    try:
        async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?" + query) as ws:
            if query.startswith("index=0"):
                return [json.loads(await asyncio.wait_for(ws.recv(), 10))["id"] for _ in range(4)]
            return "open"
    except (websockets.InvalidStatusCode, websockets.InvalidHandshake):
        return "refused"
async def main():
    out = [await opens(q) for q in ("index=4611686018427387903", "index=0000000000000000000001",
                                    "index=4611686018427387904")]
    print(json.dumps(out, separators=(",", ":")))
asyncio.run(asyncio.wait_for(main(), 60))
PY
)
check "/ws: index at the maximum opens, leading zeros replay from 1, one past is refused" \
    '["open",[2,3,4,5],"refused"]' "$ws_open"

req "$BASE/get/msg?room=side"
check "rooms are separate" '["elsewhere"]' "$(jget .data)"
check "room's max_index" 6 "$(jget .max_index)"
req "$BASE/get/msg?room=nobody&index=0"
check "unknown room: empty, max_index 0" '{"data":[],"max_index":0,"messages":[],"more":false}' "$BODY"

# jq -r '.data[]' works, as the seed's page reads it
check "jq -r .data[] prints texts" "$(printf 'four\nfive')" "$(curl -s "$BASE/get/msg?index=3" | jq -r '.data[]')"

# Rows written with the sqlite3 CLI, even ones that break the rules, are served
sqlite3 "$DB" "insert into messages(room,text) values('lobby','from the cli')"
if on_sqlite; then
    sqlite3 "$DB" "insert into messages(room,user,text) values('lobby',x'ff00fe',x'6869ff')"
else    # PostgreSQL's text is always valid UTF-8 without NUL: nothing to replace
    sqlite3 "$DB" "insert into messages(room,text) values('lobby','hi')"
fi
sqlite3 "$DB" "insert into messages(room,text) values('lobby',42)"
req "$BASE/get/msg?index=5"
check "CLI rows: 200" 200 "$STATUS"
check "CLI rows: all three" 3 "$(jget '.data | length')"
check "CLI row served" '"from the cli"' "$(jget '.data[0]')"
on_sqlite && check "invalid UTF-8 becomes U+FFFD" '"hi�"' "$(jget '.data[1]')"
on_sqlite && check "blob user: NUL escaped, bad bytes replaced" '"�\u0000�"' "$(jget '.messages[1].user')"
check "integer text served as text" '"42"' "$(jget '.data[2]')"
check "CLI row has a default ts" true "$(jget '.messages[0].ts > 1700000000000')"

# JSON escaping: nothing a browser would render as HTML
curl -s --data-urlencode 'text=<script>alert("x")</script> & "quotes" \ back' "$BASE/send/msg" >/dev/null
req "$BASE/get/msg?tail=1"
check "text with markup and quotes round-trips" '<script>alert("x")</script> & "quotes" \ back' "$(printf '%s' "$BODY" | jq -r '.data[0]')"
case $(header content-type) in application/json*) pass "get: JSON content type" ;; *) fail "get: JSON content type" ;; esac

bad() { local name=$1 st=$2; shift 2; req "$@"; check_error "$name" "$st"; }
bad "index negative" 400 "$BASE/get/msg?index=-1"
bad "index not a number" 400 "$BASE/get/msg?index=abc"
bad "index with spaces" 400 "$BASE/get/msg?index=%201"
bad "index twice" 400 "$BASE/get/msg?index=1&index=2"
bad "limit 0" 400 "$BASE/get/msg?limit=0"
bad "limit 1001" 400 "$BASE/get/msg?limit=1001"
bad "tail 0" 400 "$BASE/get/msg?tail=0"
bad "tail 1001" 400 "$BASE/get/msg?tail=1001"
bad "wait negative" 400 "$BASE/get/msg?wait=-1"
bad "wait fractional" 400 "$BASE/get/msg?wait=0.5"
bad "bad room" 400 "$BASE/get/msg?room=no%20spaces"
bad "POST" 405 -d 'index=0' "$BASE/get/msg"
check "405 Allow on get" "get, head" "$(header allow)"
bad "unknown get path" 404 "$BASE/get/messages"
bad "a path nobody serves" 404 "$BASE/no/such/thing"
bad "/get without its slash (not nginx's HTML redirect)" 404 "$BASE/get"
bad "/send without its slash" 404 "$BASE/send"
# raw_http: sends stdin as it is to the stack's port, prints the first answer
raw_http() {
    python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
print(s.recv(4096).decode())" "${BASE##*:}"
}
bad_chunk=$(printf 'POST /send/msg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\n' | raw_http)
check "a malformed chunked body on the API: 400" "HTTP/1.1 400" "${bad_chunk:0:12}"
check "a malformed chunked body on the API: JSON" '{"error":"bad request"}' "$(printf '%s' "$bad_chunk" | tail -1)"
raw=$(printf 'GET /send/msg?text=a HTTP/1.1\r\n\r\n' | raw_http)
check "a request without Host: 400" "HTTP/1.1 400" "${raw:0:12}"
check "a request without Host: JSON" '{"error":"bad request"}' "$(printf '%s' "$raw" | tail -1)"
req -I "$BASE/get/msg?index=0"
check "HEAD: 200" 200 "$STATUS"

req "$BASE/healthz/"
check "healthz/ (trailing slash): 200" 200 "$STATUS"
req -X POST -H 'Transfer-Encoding: chunked' --data-binary 'zz' "$BASE/send/msg"
req "$BASE/healthz"
check "healthz: 200" 200 "$STATUS"
check "healthz: ok" true "$(jget .ok)"

# Prometheus metrics
req "$BASE/metrics"
check "metrics: 200" 200 "$STATUS"
case $(header content-type) in text/plain*) pass "metrics: text format" ;; *) fail "metrics: text format" "$(header content-type)" ;; esac
check_true "metrics: requests by route and status" grep -q '^chat_requests_total{route="/get/msg",status="400"} [1-9]' "$TMP/body"
check_true "metrics: messages stored" grep -q '^chat_messages_stored_total [1-9]' "$TMP/body"
check_true "metrics: held long-polls" grep -q '^chat_held_longpolls 0$' "$TMP/body"
check_true "metrics: wake-up histogram" grep -q '^chat_wakeup_seconds_bucket{le="+Inf"} ' "$TMP/body"

# The page is served at / and /home/
req "$BASE/"
check "page at /" 200 "$STATUS"
req "$BASE/home/"
check "page at /home/" 200 "$STATUS"
case $(header content-type) in text/html*) pass "page is HTML" ;; *) fail "page is HTML" "$(header content-type)" ;; esac

# make run's access log holds the failed requests only (a buffer at a time,
# at most a second late): the 400s above, none of the 200s.
access_log=$STACK_DIR/logs/nginx-access.log
for _ in $(seq 1 50); do grep -q '"GET /get/msg?[^"]*" 400 ' "$access_log" 2>/dev/null && break; sleep 0.1; done
check_true "access log: a failed request is there" grep -q '"GET /get/msg?[^"]*" 400 ' "$access_log"
check "access log: no request that succeeded" 0 "$(grep -c '" [23]0[0-9] ' "$access_log")"

finish
