#!/usr/bin/env bash
# send.sh - /send/msg against SPEC section 2, through a real nginx.
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }

# GET, the seed's form
req "$BASE/send/msg?text=hello"
check "GET send: 200" 200 "$STATUS"
check "GET send: ok" true "$(jget .ok)"
check "GET send: room defaults to lobby" '"lobby"' "$(jget .room)"
check "GET send: id is the stored row" "$(jget .id)" "$(sqlite3 "$DB" "select id from messages where text='hello'")"
check "GET send: ts is unix ms" true "$(jget '.ts > 1700000000000 and .ts < 4102444800000')"
case $(header content-type) in application/json*) pass "send: JSON content type" ;; *) fail "send: JSON content type" "$(header content-type)" ;; esac
check "send: Cache-Control no-store" no-store "$(header cache-control)"

req "$BASE/send/msg/?text=slash"
check "trailing slash: 200" 200 "$STATUS"

req "$BASE/send/msg?text=a+b%20c&user=ann&room=r-1.x_y"
check "user and room: 200" 200 "$STATUS"
check "user and room stored" "ann|r-1.x_y|a b c" "$(sqlite3 "$DB" "select \"user\", room, text from messages where id=$(jget .id)")"

req -d 'text=from+a+form&user=bob&room=forms' "$BASE/send/msg"
check "POST form: 200" 200 "$STATUS"
check "POST form stored" "bob|forms|from a form" "$(sqlite3 "$DB" "select \"user\", room, text from messages where id=$(jget .id)")"

req -H 'Content-Type: application/json; charset=utf-8' \
    -d '{"text":"json \u00e9\n2nd line","user":"cy","room":"js","unknown":[1,{"a":2}],"n":3}' "$BASE/send/msg"
check "POST JSON: 200" 200 "$STATUS"
check "POST JSON stored with escapes decoded" "$(printf 'json \xc3\xa9\n2nd line')" \
    "$(sqlite3 "$DB" "select text from messages where id=$(jget .id)")"
# Keys repeated inside an ignored value, or inside strings, are not repeats
req -H 'Content-Type: application/json' \
    -d '{"x":{"text":"no","text":"no"},"l":[{"user":1,"user":2}],"text":"a {\"text\":\"b\"}","user":"}\"text"}' "$BASE/send/msg"
check "POST JSON with repeats nested or in strings: 200" 200 "$STATUS"
check "POST JSON with repeats nested or in strings: stored as sent" 'a {"text":"b"}|}"text' \
    "$(sqlite3 "$DB" "select text, \"user\" from messages where id=$(jget .id)")"

req -X POST "$BASE/send/msg?text=query+on+a+post"
check "POST without body, parameters in the query: 200" 200 "$STATUS"

# Limits: 4096 bytes pass, 4097 are 413, by GET and POST
t4096=$(head -c 4096 /dev/zero | tr '\0' 'x')
req "$BASE/send/msg?text=$t4096"
check "4096-byte text by GET: 200" 200 "$STATUS"
# A 4096-byte text of 3-byte characters, percent-encoded (12 KiB request line)
t_enc=$(python3 -c 'print("%E2%82%AC"*1365 + "x")')
req "$BASE/send/msg?text=$t_enc"
check "4096-byte text percent-encoded (12 KiB line): 200" 200 "$STATUS"
req "$BASE/send/msg?text=${t4096}y"
check_error "4097-byte text by GET" 413
req --data-urlencode "text=${t4096}y" "$BASE/send/msg"
check_error "4097-byte text by POST" 413
req -H 'Content-Type: application/json' -d "{\"text\":\"${t4096}y\"}" "$BASE/send/msg"
check_error "4097-byte text by JSON" 413

# cid: a repeated send stores nothing new and answers the first id
req "$BASE/send/msg?text=once&cid=abc-1"
first=$(jget .id)
check "cid first send: not a duplicate" null "$(jget .duplicate)"
req "$BASE/send/msg?text=once+again&cid=abc-1"
check "cid repeat: 200" 200 "$STATUS"
check "cid repeat: first id" "$first" "$(jget .id)"
check "cid repeat: duplicate true" true "$(jget .duplicate)"
check "cid repeat: one row" 1 "$(rows "where cid='abc-1'")"
req -H 'Content-Type: application/json' -d '{"text":"x","cid":"abc-1"}' "$BASE/send/msg"
check "cid repeat by JSON: first id" "$first" "$(jget .id)"
req "$BASE/send/msg?text=other+room&cid=abc-1&room=elsewhere"
check "same cid in another room: a new message" false "$(jget ".id == $first")"

# Bad input: a clear JSON error, the fitting status, nothing stored
before=$(rows)
bad() {  # bad NAME STATUS curl-args...
    local name=$1 st=$2; shift 2
    req "$@"
    check_error "$name" "$st"
}
bad "no text" 400 "$BASE/send/msg"
bad "no text, other params" 400 "$BASE/send/msg?user=ann"
bad "empty text" 400 "$BASE/send/msg?text="
bad "control character" 400 "$BASE/send/msg?text=a%01b"
bad "carriage return" 400 "$BASE/send/msg?text=a%0Db"
bad "NUL" 400 "$BASE/send/msg?text=a%00b"
bad "DEL" 400 "$BASE/send/msg?text=a%7Fb"
bad "C1 control" 400 "$BASE/send/msg?text=a%C2%85b"
bad "invalid UTF-8" 400 "$BASE/send/msg?text=a%FFb"
bad "overlong UTF-8" 400 "$BASE/send/msg?text=%C0%AF"
bad "UTF-16 surrogate" 400 "$BASE/send/msg?text=%ED%A0%80"
bad "bad percent escape" 400 "$BASE/send/msg?text=a%zz"
bad "text given twice" 400 "$BASE/send/msg?text=a&text=b"
bad "room in query and body" 400 -d 'text=a&room=x' "$BASE/send/msg?room=y"
bad "user over 64 bytes" 400 "$BASE/send/msg?text=a&user=$(head -c 65 /dev/zero | tr '\0' u)"
bad "user with a control character" 400 "$BASE/send/msg?text=a&user=a%09%01"
bad "bad room" 400 "$BASE/send/msg?text=a&room=a%20b"
bad "empty room" 400 "$BASE/send/msg?text=a&room="
bad "room over 64" 400 "$BASE/send/msg?text=a&room=$(head -c 65 /dev/zero | tr '\0' r)"
bad "bad cid" 400 "$BASE/send/msg?text=a&cid=a/b"
bad "cid over 64" 400 "$BASE/send/msg?text=a&cid=$(head -c 65 /dev/zero | tr '\0' c)"
bad "JSON not an object" 400 -H 'Content-Type: application/json' -d '["text"]' "$BASE/send/msg"
bad "JSON number text" 400 -H 'Content-Type: application/json' -d '{"text":5}' "$BASE/send/msg"
bad "JSON null user" 400 -H 'Content-Type: application/json' -d '{"text":"a","user":null}' "$BASE/send/msg"
bad "JSON broken" 400 -H 'Content-Type: application/json' -d '{"text":"a"' "$BASE/send/msg"
bad "JSON trailing garbage" 400 -H 'Content-Type: application/json' -d '{"text":"a"}x' "$BASE/send/msg"
bad "JSON NUL in text" 400 -H 'Content-Type: application/json' -d '{"text":"a\u0000b"}' "$BASE/send/msg"
bad "JSON control char escaped" 400 -H 'Content-Type: application/json' -d '{"text":"a\u0007b"}' "$BASE/send/msg"
bad "JSON NaN" 400 -H 'Content-Type: application/json' -d '{"text":"x","n":NaN}' "$BASE/send/msg"
bad "JSON -Infinity" 400 -H 'Content-Type: application/json' -d '{"text":"x","n":-Infinity}' "$BASE/send/msg"
bad "JSON number 1." 400 -H 'Content-Type: application/json' -d '{"text":"x","n":1.}' "$BASE/send/msg"
bad "JSON raw newline in a string" 400 -H 'Content-Type: application/json' --data-binary $'{"text":"raw\nnewline"}' "$BASE/send/msg"
bad "JSON raw tab in a string" 400 -H 'Content-Type: application/json' --data-binary $'{"text":"raw\ttab"}' "$BASE/send/msg"
bad "JSON empty body" 400 -H 'Content-Type: application/json' -X POST "$BASE/send/msg"
# A key given twice at the top level is a parameter given twice (SPEC section 5),
# compared after unescaping; any key, even one that would be ignored
bad "JSON text twice" 400 -H 'Content-Type: application/json' -d '{"text":"dup-a","text":"dup-b"}' "$BASE/send/msg"
check "JSON text twice: the key is named" '"parameter text is given more than once"' "$(jget .error)"
bad "JSON text twice, once escaped" 400 -H 'Content-Type: application/json' \
    -d '{"text":"dup-a","te\u0078t":"dup-b"}' "$BASE/send/msg"
check "JSON text twice, once escaped: the key is named" '"parameter text is given more than once"' "$(jget .error)"
bad "JSON key twice, as a surrogate pair and as UTF-8" 400 -H 'Content-Type: application/json' \
    -d "$(printf '{"text":"dup-a","\\ud83d\\ude00":1,"\xf0\x9f\x98\x80":2}')" "$BASE/send/msg"
check "JSON key twice, as a surrogate pair and as UTF-8: named" '"JSON key \"😀\" is given more than once (no key may repeat, even one that is ignored)"' "$(jget .error)"
bad "JSON ignored key twice" 400 -H 'Content-Type: application/json' -d '{"text":"dup-a","zz":1,"zz":[2]}' "$BASE/send/msg"
bad "JSON key with \u0000" 400 -H 'Content-Type: application/json' -d '{"text":"dup-a","text\u0000x":"dup-b"}' "$BASE/send/msg"
check "no repeated-key body stored" 0 "$(rows "where text like 'dup-%'")"
bad "unsupported content type" 415 -H 'Content-Type: text/plain' -d 'text=a' "$BASE/send/msg"
bad "multipart form" 415 -F 'text=a' "$BASE/send/msg"
bad "PUT" 405 -X PUT -d 'text=a' "$BASE/send/msg"
check "405 carries Allow" "get, post" "$(header allow)"
bad "DELETE" 405 -X DELETE "$BASE/send/msg"
bad "unknown API path" 404 "$BASE/send/nope?text=a"
bad "unknown API path below msg" 404 "$BASE/send/msg/more?text=a"
long=$(head -c 17000 /dev/zero | tr '\0' a)
bad "request line over 16 KiB" 414 "$BASE/send/msg?text=$long"
check "nothing stored by any bad input" "$before" "$(rows)"

# A WebSocket frame repeating a key gets the same refusal, as an error frame
ws_frame=$(/usr/bin/python3 - "$BASE" <<'PY'
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?room=wsdup") as ws:
        out = []
        for frame in ('{"text":"dup-ws","text":"dup-ws2"}', '{"text":"dup-ws","te\\u0078t":"dup-ws2"}'):
            await ws.send(frame)
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        print(json.dumps(out, separators=(",", ":")))
asyncio.run(asyncio.wait_for(main(), 30))
PY
)
check "WS frame repeating a key: error frames" \
    '[{"error":"parameter text is given more than once","code":400},{"error":"parameter text is given more than once","code":400}]' "$ws_frame"
check "WS frame repeating a key: nothing stored" 0 "$(rows "where room='wsdup'")"

# The body over 64 KiB: a real file, since process substitution may not stream
head -c 70000 /dev/zero | tr '\0' a > "$TMP/big"
req --data-binary "@$TMP/big" "$BASE/send/msg"
check_error "body over 64 KiB from a file" 413

# Allowed characters: tab, newline, any valid UTF-8
req --data-urlencode "text=$(printf 'tab\there\nnew line \xf0\x9f\x98\x80')" "$BASE/send/msg"
check "tab, newline and emoji: 200" 200 "$STATUS"
check "tab, newline and emoji stored exactly" "$(printf 'tab\there\nnew line \xf0\x9f\x98\x80')" \
    "$(sqlite3 "$DB" "select text from messages where id=$(jget .id)")"

finish
