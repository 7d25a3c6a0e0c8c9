#!/usr/bin/env bash
# auth.sh - behind nginx's authentication the logged-in name is the stored
# user on every transport (SPEC section 7), with a real auth_basic in front:
# a client's different user is a 403, a missing one becomes the name, and a
# header forged by the client changes nothing. Without authentication user
# stays a free display name, whatever Authorization or X-Chat-User says.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3

# auth_basic in front of every route, as the production block shows it
# (conf/nginx/chat-site.conf): stack.sh's nginx includes DIR/nginx/server-*.conf.
mkdir -p "$TMP/auth/nginx"
printf 'ann:%s\nbob:%s\n' "$(openssl passwd -apr1 ann-pw)" "$(openssl passwd -apr1 bob-pw)" > "$TMP/htpasswd"
cat > "$TMP/auth/nginx/server-auth.conf" <<EOF
auth_basic "chat";
auth_basic_user_file $TMP/htpasswd;
set \$chat_user \$remote_user;
EOF
stack_up auth || { finish; exit 1; }
ANN=(-u ann:ann-pw)
BOB=(-u bob:bob-pw)

# stored_user TEXT: the user of the stored message with that text
stored_user() { sqlite3 "$DB" "select group_concat(user, ',') from messages where text = '$1'"; }

req "$BASE/get/msg"
check "no credentials: 401" 401 "$STATUS"
req -u ann:wrong "$BASE/send/msg?text=nope"
check "a wrong password: 401" 401 "$STATUS"
check "a refused login stores nothing" 0 "$(rows "where text = 'nope'")"

# GET
req "${ANN[@]}" "$BASE/send/msg?text=g1"
check "GET without user: 200" 200 "$STATUS"
check "GET without user: stored as the login name" ann "$(stored_user g1)"
req "${ANN[@]}" "$BASE/send/msg?text=g2&user=ann"
check "GET with the login name as user: 200" 200 "$STATUS"
check "GET with the login name: stored as it" ann "$(stored_user g2)"
req "${ANN[@]}" "$BASE/send/msg?text=g3&user=bob"
check_error "GET with another user" 403
check "GET with another user: nothing stored" 0 "$(rows "where text = 'g3'")"
req "${ANN[@]}" "$BASE/send/msg?text=g4&user="
check "GET with an empty user: stored as the login name" ann "$(stored_user g4)"
req "${BOB[@]}" "$BASE/send/msg?text=g5"
check "another login: stored as its own name" bob "$(stored_user g5)"

# POST form
req "${ANN[@]}" --data-urlencode text=f1 "$BASE/send/msg"
check "form without user: stored as the login name" ann "$(stored_user f1)"
req "${ANN[@]}" --data-urlencode text=f2 -d user=admin "$BASE/send/msg"
check_error "form with another user" 403
check "form with another user: nothing stored" 0 "$(rows "where text = 'f2'")"

# POST JSON
json() { req "${ANN[@]}" -H 'Content-Type: application/json' --data-binary "$1" "$BASE/send/msg"; }
json '{"text":"j1"}'
check "JSON without user: stored as the login name" ann "$(stored_user j1)"
json '{"text":"j2","user":"bob"}'
check_error "JSON with another user" 403
check "JSON with another user: nothing stored" 0 "$(rows "where text = 'j2'")"
json '{"text":"j3","user":"ann"}'
check "JSON with the login name: stored as it" ann "$(stored_user j3)"
json '{"text":"j4","user":"Ann"}'
check_error "JSON with the login name in another case" 403

# The client cannot forge what nginx passes on
req "${ANN[@]}" -H 'X-Chat-User: bob' -H 'Remote-User: bob' "$BASE/send/msg?text=h1"
check "a forged X-Chat-User header: stored as the login name" ann "$(stored_user h1)"
req "${ANN[@]}" -H 'X-Chat-User: bob' "$BASE/send/msg?text=h2&user=bob"
check_error "a forged header does not make another user acceptable" 403

req "${ANN[@]}" "$BASE/get/msg?tail=1"
check "the messages show the login name" '"ann"' "$(jget '.messages[0].user')"

# WebSocket: the same rules for frames, a forged X-Chat-User ignored
run_checks "$PY" - "$BASE" "$DB" <<'PY'
import asyncio, base64, json, sqlite3, sys, websockets
base, db = sys.argv[1], sys.argv[2]
url = "ws" + base[4:] + "/ws?room=authws"
from checks import report
def basic(user, pw):
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 5))
async def main():
    try:
        async with websockets.connect(url):
            report(False, "a WebSocket without credentials is refused", "connected")
    except websockets.InvalidStatusCode as e:
        report(e.status_code == 401, "a WebSocket without credentials is refused with 401", e.status_code)
    async with websockets.connect(url, extra_headers=[basic("ann", "ann-pw"), ("X-Chat-User", "bob")]) as ws, \
               websockets.connect(url, extra_headers=[basic("bob", "bob-pw")]) as other:
        await ws.send(json.dumps({"text": "w1"}))
        got = await recv(ws)
        report(got.get("text") == "w1" and got.get("user") == "ann",
               "a frame without user is the login name's, a forged X-Chat-User ignored", got)
        got = await recv(other)
        report(got.get("user") == "ann", "and so it reaches the others", got)
        await ws.send(json.dumps({"text": "w2", "user": "bob"}))
        got = await recv(ws)
        report(got.get("code") == 403 and isinstance(got.get("error"), str) and got["error"],
               "a frame with another user gets an error frame 403", got)
        await ws.send(json.dumps({"text": "w3", "user": "ann"}))
        got = await recv(ws)
        report(got.get("text") == "w3" and got.get("user") == "ann",
               "a frame with the login name is stored, the socket still open", got)
        got = await recv(other)
        report(got.get("text") == "w3", "the others get only the stored frames", got)
        await other.send(json.dumps({"text": "w4"}))
        got = await recv(other)
        report(got.get("user") == "bob", "each socket sends as its own login", got)
    rows = sqlite3.connect(db).execute(
        "select text, user from messages where room = 'authws' order by id").fetchall()
    report(rows == [("w1", "ann"), ("w3", "ann"), ("w4", "bob")], "the stored rows", rows)
asyncio.run(main())
PY

# The production block's own example (conf/nginx/chat-site.conf), its
# auth_basic lines uncommented, in front of the same chat-fcgi and chat-ws
AUTH_DIR=$STACK_DIR
N=$TMP/prod
mkdir -p "$N/snippets" "$N/logs" "$N/tmp"
cp "$ROOT"/conf/nginx/chat-*.conf "$N/snippets/"
port=$(free_port)
sed -e "s|listen 80;|listen 127.0.0.1:$port;|" -e '/listen \[::\]:80;/d' \
    -e "s|unix:/run/chat/fcgi.sock|unix:$AUTH_DIR/fcgi.sock|" -e "s|unix:/run/chat-ws/ws.sock|unix:$AUTH_DIR/ws.sock|" \
    -e "s|root /usr/local/share/chat/htdocs;|root $ROOT/htdocs;|" \
    -e 's|^    #   \(auth_basic "chat";\)$|    \1|' \
    -e "s|^    #   auth_basic_user_file .*|    auth_basic_user_file $TMP/htpasswd;|" \
    -e 's|^    #   \(set \$chat_user \$remote_user;\)$|    \1|' \
    "$ROOT/conf/nginx/chat-site.conf" > "$N/chat-site.conf"
check "the example's three auth lines are there to uncomment" 3 \
    "$(grep -c -E '^    (auth_basic "chat";|auth_basic_user_file |set \$chat_user \$remote_user;)' "$N/chat-site.conf")"
{ nginx_conf_head "$N" 1 256; cat <<NGINX
    types { text/html html; application/javascript js; }
    include $N/chat-site.conf;
}
NGINX
} > "$N/nginx.conf"
nginx -p "$N" -c "$N/nginx.conf" -e "$N/logs/error.log" >>"$N/logs/error.log" 2>&1 &
prod_pid=$!
trap 'kill $prod_pid 2>/dev/null; stack_down_all' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
PROD=http://127.0.0.1:$port
req "$PROD/send/msg?text=p1"
check "production block: no credentials, 401" 401 "$STATUS"
req "${BOB[@]}" "$PROD/send/msg?text=p2"
check "production block: stored as the login name" bob "$(stored_user p2)"
req "${BOB[@]}" -H 'X-Chat-User: ann' "$PROD/send/msg?text=p3&user=ann"
check_error "production block: another user" 403
run_checks "$PY" - "$PROD" <<'PY'
import asyncio, base64, json, sys, websockets
auth = [("Authorization", "Basic " + base64.b64encode(b"bob:bob-pw").decode()), ("X-Chat-User", "ann")]
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?room=prod", extra_headers=auth) as ws:
        await ws.send(json.dumps({"text": "p4"}))
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        print(("PASS" if got.get("user") == "bob" else "FAIL") + " production block: a frame is the login's " + json.dumps(got))
asyncio.run(main())
PY
kill $prod_pid 2>/dev/null
wait $prod_pid 2>/dev/null

# Without authentication: user is free; neither Authorization nor X-Chat-User counts
DB=""
stack_up open || { finish; exit 1; }
req -u mallory:x -H 'X-Chat-User: mallory' "$BASE/send/msg?text=o1&user=free"
check "no auth: the client's user is stored" free "$(stored_user o1)"
req -u mallory:x -H 'X-Chat-User: mallory' "$BASE/send/msg?text=o2"
check "no auth: a forged Authorization or X-Chat-User is not a user" "" "$(stored_user o2)"
check "(and the message is stored)" 1 "$(rows "where text = 'o2'")"
run_checks "$PY" - "$BASE" <<'PY'
import asyncio, base64, json, sys, websockets
url = "ws" + sys.argv[1][4:] + "/ws?room=open"
from checks import report
async def main():
    forged = [("X-Chat-User", "mallory"), ("Authorization", "Basic " + base64.b64encode(b"mallory:x").decode())]
    async with websockets.connect(url, extra_headers=forged) as ws:
        await ws.send(json.dumps({"text": "o3"}))
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        report(got.get("user") == "", "no auth: a frame's user is not taken from forged headers", got)
        await ws.send(json.dumps({"text": "o4", "user": "free"}))
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        report(got.get("user") == "free", "no auth: a frame's user is a free display name", got)
asyncio.run(main())
PY

finish
