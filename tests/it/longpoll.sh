#!/usr/bin/env bash
# longpoll.sh - /get/msg with wait: wake-ups, timeouts, disconnects.
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }

# poll_bg NAME QUERY: a long-poll in the background; its answer in $TMP/NAME
poll_bg() {
    curl -s -m 70 -o "$TMP/$1.body" -w '%{http_code} %{time_total}' "$BASE/get/msg?$2" > "$TMP/$1.meta" &
    echo $! > "$TMP/$1.pid"
}
poll_wait() { wait "$(cat "$TMP/$1.pid")" 2>/dev/null; BODY=$(cat "$TMP/$1.body"); META=$(cat "$TMP/$1.meta"); }
held_is() {   # held_is N: waits (bounded) until /healthz reports N held
    local i
    for i in $(seq 1 100); do
        [ "$(curl -s "$BASE/healthz" | jq .held)" = "$1" ] && return 0
        sleep 0.02
    done
    return 1
}

curl -s "$BASE/send/msg?text=first" >/dev/null

# Wake-up on an HTTP send
poll_bg a "index=1&wait=20"
check_true "long-poll is held" held_is 1
curl -s "$BASE/send/msg?text=second&user=ann" >/dev/null
poll_wait a
check "woken by a send: the message" '["second"]' "$(jget .data)"
check "woken by a send: max_index" 2 "$(jget .max_index)"
check "woken by a send: status" 200 "${META%% *}"
check "woken by a send: within a second" 1 "$(calc "${META#* } < 1")"

# Wake-up on a row written by the sqlite3 CLI
poll_bg b "index=2&wait=20"
check_true "second long-poll is held" held_is 1
sqlite3 "$DB" "insert into messages(room,\"user\",text) values('lobby','ops','from sqlite3')"
poll_wait b
check "woken by a sqlite3 insert" '[{"user":"ops","text":"from sqlite3"}]' "$(jget '[.messages[] | {user, text}]')"
check "sqlite3 wake-up long before the wait ends" 1 "$(calc "${META#* } < 2")"

# Only the room's own messages wake it
poll_bg c "index=0&wait=20&room=quiet"
poll_bg d "index=0&wait=20&room=quiet"
check_true "two long-polls held in room quiet" held_is 2
curl -s "$BASE/send/msg?text=noise" >/dev/null
sleep 0.3
check "a message in another room does not answer" 2 "$(curl -s "$BASE/healthz" | jq .held)"
curl -s "$BASE/send/msg?text=hush&room=quiet" >/dev/null
poll_wait c
check "room quiet woken with its message" '["hush"]' "$(jget .data)"
poll_wait d
check "both waiters of the room woken" '["hush"]' "$(jget .data)"

# Timeout: empty data, 200, after the wait
poll_bg e "index=100&wait=10&room=empty"
poll_wait e
check "cursor ahead of the room: answered at once, not after its wait" 1 "$(calc "${META#* } < 2")"
check "cursor ahead: latest id as max_index" 0 "$(jget .max_index)"
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
poll_bg f "index=$latest&wait=1"
poll_wait f
check "timeout: 200" 200 "${META%% *}"
check "timeout: empty answer with the cursor" "{\"data\":[],\"max_index\":$latest,\"messages\":[],\"more\":false}" "$BODY"
check "timeout: after about a second" 1 "$(calc "${META#* } >= 0.9 && ${META#* } < 2")"

# wait above 60 is clamped, not refused
poll_bg g "index=$latest&wait=100000"
check_true "wait=100000 is held" held_is 1
curl -s "$BASE/send/msg?text=clamped" >/dev/null
poll_wait g
check "wait=100000 clamped and woken" '["clamped"]' "$(jget .data)"

# tail with wait in an empty room holds until the first message
poll_bg h "tail=5&wait=20&room=fresh"
check_true "tail on an empty room is held" held_is 1
curl -s "$BASE/send/msg?text=hello+fresh&room=fresh" >/dev/null
poll_wait h
check "tail long-poll woken" '["hello fresh"]' "$(jget .data)"

# limit applies to a woken long-poll; more says the rest waits
latest=$(curl -s "$BASE/get/msg?tail=1&room=batch" | jq .max_index)
poll_bg i "index=$latest&wait=20&room=batch&limit=2"
check_true "limit long-poll held" held_is 1
sqlite3 "$DB" "insert into messages(room,text) values('batch','b1'),('batch','b2'),('batch','b3')"
poll_wait i
check "woken with limit 2" '["b1","b2"]' "$(jget .data)"
check "more true after a limited wake-up" true "$(jget .more)"

# A client that goes away is released within a second
curl -s -m 0.5 "$BASE/get/msg?index=1000000&wait=30&room=gone" >/dev/null
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
curl -s -m 0.5 "$BASE/get/msg?index=$latest&wait=30" >/dev/null
check_true "a disconnected client is released within a second" held_is 0
# Many clients gone at once (one process killed): more than the watcher
# takes from its epoll set in one call; all released, and the parking lot
# keeps working.
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
python3 - "${BASE#http://}" "$latest" <<'PY' &
import socket, sys, time
host, port = sys.argv[1].split(":")
socks = []
for _ in range(500):
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET /get/msg?index={sys.argv[2]}&wait=30 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
time.sleep(60)
PY
many=$!
check_true "500 long-polls held" held_is 500
kill -9 "$many"; wait "$many" 2>/dev/null
check_true "500 clients gone at once: all released" held_is 0
poll_bg many "index=$latest&wait=1"
poll_wait many
check "a long-poll after them still expires on time" 1 "$(calc "${META#* } >= 0.9 && ${META#* } < 3")"

# Several waiters with different cursors in one room
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
poll_bg j "index=$latest&wait=20"
poll_bg k "index=$latest&wait=20"
poll_bg l "index=$latest&wait=20&limit=1"
check_true "three held" held_is 3
curl -s "$BASE/send/msg?text=fan" >/dev/null
poll_wait j; a=$BODY; poll_wait k; b=$BODY; poll_wait l
check "same cursor, same answer" "$a" "$b"
check "fan-out to every waiter" '["fan"]' "$(jget .data)"

# A waiter taken out for a change that had nothing for it still expires on
# time (rows in more rooms than the watcher tracks one by one)
latest=$(curl -s "$BASE/get/msg?tail=1&room=r0" | jq .max_index)
poll_bg m "index=$latest&wait=2&room=r0"
check_true "waiter in r0 held" held_is 1
sqlite3 "$DB" "with recursive n(i) as (select 1 union all select i + 1 from n where i < 70)
               insert into messages(room, text) select 'many' || i, 'x' from n"
poll_wait m
check "it expires after its 2 s, not later" 1 "$(calc "${META#* } >= 1.9 && ${META#* } < 3.5")"
check "with an empty answer" '[]' "$(jget .data)"

# Rows written by another process wake a held long-poll without waiting for
# the timer probe (inotify on the database's folder): it probes every 10 s here
DB=""
stack_up slowprobe --probe-ms 10000 || { finish; exit 1; }
for i in 1 2 3; do
    latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
    poll_bg n "index=$latest&wait=30"
    check_true "held with a 10 s probe ($i)" held_is 1
    sleep 0.1
    sqlite3 "$DB" "insert into messages(room,text) values('lobby','cli $i')"
    poll_wait n
    check "woken by the insert ($i)" "[\"cli $i\"]" "$(jget .data)"
    check "well before the next timer probe ($i)" 1 "$(calc "${META#* } < 2.5")"
done

finish
