#!/usr/bin/env bash
# pg.sh - the PostgreSQL backend (SPEC section 9) on one node, against a
# real PostgreSQL 15 that this suite starts and stops: first the contract
# suites again (each stack on its own database of this server), then what
# is PostgreSQL's own: the schema and its upgrade, ids in commit order with
# the interleaving forced (tests/it/pg_order.py), sql/inspect.sql in psql,
# a writer held past the busy timeout, a read-only database, a restart
# (503 JSON with Retry-After meanwhile, then every process reconnects), and
# databases the programs cannot use at start.
. "$(dirname "$0")/../lib.sh"
pg_up || { finish; exit 1; }

# ---- the contract suites, on PostgreSQL ----
for s in ${PG_SUITES:-send get longpoll ws retain security load}; do
    out=$(TEST_PG=$PG_HOST "$ROOT/tests/it/$s.sh" 2>&1)
    line=$(printf '%s\n' "$out" | grep -E "^$s: [0-9]+ passed, [0-9]+ failed$" | tail -1)
    printf '%s\n' "$out" | grep -v -E "^$s: [0-9]+ passed, [0-9]+ failed$" | sed 's/^/  /'
    if [ -z "$line" ]; then
        fail "$s on PostgreSQL ran to its end"
        continue
    fi
    p=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed.*/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    echo "  $s on PostgreSQL: $p passed, $f failed"
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
done

# ---- the schema ----
DB=$(pg_db node) && WS_FLAGS="--busy-ms 500" stack_up node --busy-ms 500 || { finish; exit 1; }
check "the programs created the schema, version 2" 2 "$(sqlite3 "$DB" 'select version from schema_version')"
check "messages has the columns of sql/schema.sql" "id,room,user,text,ts,cid" \
    "$(sqlite3 "$DB" "select string_agg(column_name, ',' order by ordinal_position) from information_schema.columns where table_name = 'messages'")"
check "its indexes: (room, id), unique (room, cid)" \
    "messages_pkey:CREATE UNIQUE INDEX messages_pkey ON public.messages USING btree (id),messages_room_cid:CREATE UNIQUE INDEX messages_room_cid ON public.messages USING btree (room, cid),messages_room_id:CREATE INDEX messages_room_id ON public.messages USING btree (room, id)" \
    "$(sqlite3 "$DB" "select string_agg(indexname || ':' || indexdef, ',' order by indexname) from pg_indexes where tablename = 'messages'")"
req "$BASE/send/msg?text=first&user=ann"
check "a send is stored" 200 "$STATUS"
first=$(jget .id)
check "with \"user\" (quoted: unquoted it is the role)" "ann|chat" "$(sqlite3 "$DB" "select \"user\", user from messages where id = $first")"
check "ts by the database's clock, in ms" 1 "$(sqlite3 "$DB" "select count(*) from messages where id = $first and abs(ts - extract(epoch from now()) * 1000) < 60000")"
check_true "sql/schema-pg.sql applied again by hand changes nothing" \
    psql -X -q -v ON_ERROR_STOP=1 "$DB" -c 'set client_min_messages = warning' -f "$ROOT/sql/schema-pg.sql"
check "the rows are kept" "1|first" "$(sqlite3 "$DB" "select count(*), min(text) from messages")"
check "the counter is kept" "$first" "$(sqlite3 "$DB" "select last_value from messages_id_seq")"
req "$BASE/send/msg?text=second"
check "ids go on after it" $((first + 1)) "$(jget .id)"

# A database from a newer schema is refused; an older one is upgraded in place
newer=$(pg_db newer)
psql -X -q -v ON_ERROR_STOP=1 "$newer" -c 'set client_min_messages = warning' -f "$ROOT/sql/schema-pg.sql" -c 'update schema_version set version = 99'
"$BIN_DIR/chat-fcgi" --db "$newer" --listen "$TMP/newer.sock" 2>"$TMP/err"
check "a database from a newer version is refused" 1 $?
check_true "with a clear message" grep -q "newer than this program" "$TMP/err"
older=$(pg_db older)
psql -X -q -v ON_ERROR_STOP=1 "$older" -c 'set client_min_messages = warning' -f "$ROOT/sql/schema-pg.sql" \
    -c "insert into messages(room, text) values ('lobby', 'from before')" \
    -c 'drop table pruned' -c 'drop trigger messages_notify on messages' -c 'update schema_version set version = 0'
: > "$TMP/older.log"
timeout 10 "$BIN_DIR/chat-ws" --db "$older" --listen "127.0.0.1:$(free_port)" >> "$TMP/older.log" 2>&1 &
opid=$!
for _ in $(seq 1 100); do grep -q listening "$TMP/older.log" && break; sleep 0.1; done
kill "$opid" 2>/dev/null; wait "$opid" 2>/dev/null
check_true "an older schema is upgraded, and says so" grep -q "upgraded the schema" "$TMP/older.log"
check "to version 2, the rows kept" "2|from before" "$(sqlite3 "$older" 'select version, (select text from messages) from schema_version')"
check "with what was missing" "pruned|messages_notify" "$(sqlite3 "$older" "select to_regclass('pruned'), (select tgname from pg_trigger where tgname = 'messages_notify')")"

# Version 1 kept the counter in a row (message_ids), incremented per row;
# version 2 has a sequence behind an advisory lock. The upgrade sets the
# sequence past the counter, and leaves a view of that name for nodes of
# version 1 still running.
v1_db() {   # a database as version 1 left it: rows 1 and 2, its counter at 40
    psql -X -q -v ON_ERROR_STOP=1 "$1" -c 'set client_min_messages = warning' -f "$ROOT/sql/schema-pg.sql" \
        -c "insert into messages(room, text) values ('lobby', 'v1 a'), ('lobby', 'v1 b')" \
        -c 'drop view message_ids' -c 'drop sequence messages_id_seq' \
        -c 'create table message_ids (one boolean primary key default true check (one), last bigint not null)' \
        -c 'insert into message_ids (last) values (40)' \
        -c "create or replace function messages_next_id() returns trigger language plpgsql as \$\$ begin update message_ids set last = last + 1 returning last into new.id; return new; end \$\$" \
        -c 'update schema_version set version = 1'
}
v1=$(pg_db v1)
v1_db "$v1"
check "a version 1 database: ids from its counter row" 41 \
    "$(psql -X -q -A -t "$v1" -c "insert into messages(room, text) values ('lobby', 'v1 c') returning id")"
"$BIN_DIR/chat-fcgi" --db "$v1" --listen "$TMP/v1.sock" > "$TMP/v1.log" 2>&1 &
v1pid=$!
for _ in $(seq 1 100); do grep -q listening "$TMP/v1.log" && break; sleep 0.1; done
kill "$v1pid" 2>/dev/null; wait "$v1pid" 2>/dev/null
check_true "is upgraded, and says so" grep -q "upgraded the schema" "$TMP/v1.log"
check "to version 2, message_ids now a view" "2|v" \
    "$(sqlite3 "$v1" "select version, (select relkind from pg_class where relname = 'message_ids') from schema_version")"
check "its ids go on after the counter's" 42 \
    "$(psql -X -q -A -t "$v1" -c "insert into messages(room, text) values ('lobby', 'v2 a') returning id")"
check "a node of version 1 reads the last id from the view" 42 "$(sqlite3 "$v1" "select last from message_ids")"
check_true "sql/schema-pg.sql applied again leaves the sequence where it is" \
    psql -X -q -v ON_ERROR_STOP=1 "$v1" -c 'set client_min_messages = warning' -f "$ROOT/sql/schema-pg.sql"
check "so the next id is the next one" 43 \
    "$(psql -X -q -A -t "$v1" -c "insert into messages(room, text) values ('lobby', 'v2 b') returning id")"
# Applied by hand statement by statement (no -1) while another session
# inserts: the switch is one transaction, so no id is taken twice
v1b=$(pg_db v1b)
v1_db "$v1b"
for i in $(seq 1 4000); do echo "insert into messages(room, text) values ('lobby', 'loop $i') returning id;"; done > "$TMP/loop.sql"
psql -X -q -A -t -v ON_ERROR_STOP=1 "$v1b" -f "$TMP/loop.sql" > "$TMP/loop.out" 2>&1 &
loop=$!
sleep 0.1
psql -X -q -v ON_ERROR_STOP=1 "$v1b" -c 'set client_min_messages = warning' -f "$ROOT/sql/schema-pg.sql" > "$TMP/up.out" 2>&1
up=$?
kill -0 "$loop" 2>/dev/null
check "applied without -1 while another session inserts" "0|0" "$up|$?"
wait "$loop"
check "that session's 4,000 inserts all stored" 0 $?
check "their ids increase from the counter's, none taken twice" "4000|41|1" \
    "$(awk 'BEGIN { ok = 1 } { if (NR == 1) first = $1; if ($1 + 0 <= prev) ok = 0; prev = $1 + 0 } END { print NR "|" first "|" ok }' "$TMP/loop.out")"
# One insert of many rows: ids in order, one lock for all (version 1 rewrote
# its counter row once a row, so this took seconds)
check "a bulk insert of 20,000 rows by psql" "20000|44|20043" \
    "$(timeout 20 psql -X -q -A -t "$v1" -c "with i as (insert into messages(room, text) select 'bulk', 'row ' || g from generate_series(1, 20000) g returning id, text) select count(*), min(id), max(id) from i where text = 'row ' || (id - 43)")"

# ---- ids in commit order, the interleaving forced ----
run_checks /usr/bin/python3 "$ROOT/tests/it/pg_order.py" "$DB" "$BASE"

# ---- inspection with psql: the same sql/inspect.sql as sqlite3 ----
sqlite3 "$DB" "insert into messages(room, \"user\", text) values ('ops', 'op', 'two' || chr(10) || 'lines')"
psql -X -v ON_ERROR_STOP=1 "$DB" -f "$ROOT/sql/inspect.sql" > "$TMP/inspect.out" 2>&1
check "sql/inspect.sql runs in psql" 0 $?
check_true "the latest messages, line breaks as spaces" grep -E -q "\| ops +\| op +\| 20[0-9-]+ [0-9:.]+ \| two lines" "$TMP/inspect.out"
check_true "per-room counts" grep -E -q "^ ops +\| +1 \|" "$TMP/inspect.out"
check_true "per minute" grep -E -q "^ 20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} \| +[0-9]+" "$TMP/inspect.out"
lite=$TMP/inspect.db
command sqlite3 "$lite" < "$ROOT/sql/schema.sql" >/dev/null
command sqlite3 "$lite" "insert into messages(room, user, text) values ('ops', 'op', 'two' || char(10) || 'lines')"
command sqlite3 -header -column "$lite" < "$ROOT/sql/inspect.sql" > "$TMP/inspect-lite.out" 2>&1
check "and in sqlite3" 0 $?
check_true "with the same rows" grep -q "ops *op *20[0-9-]* [0-9:.]* *two lines" "$TMP/inspect-lite.out"

# ---- a writer that holds the counter past the busy timeout ----
coproc LOCKER { psql -X -q -A -t "$DB"; }
echo "begin; insert into messages(room, text) values ('ops', 'held'); select 'locked';" >&"${LOCKER[1]}"
read -r -t 10 locked <&"${LOCKER[0]}"
check "a psql session holds the counter" locked "${locked:-}"
req_timed "$BASE/send/msg?text=while+locked"
check_error "a send while the counter is held past --busy-ms" 503
check "with Retry-After" 1 "$(header retry-after)"
check "after the busy timeout, not much later" 1 "$(( ELAPSED_MS >= 400 && ELAPSED_MS < 5000 ))"
# Several at once: the committer's drain refuses batch after batch, and
# must not be left holding the lock (checked after the release below)
held_pids=()
for i in 1 2 3 4 5 6; do
    curl -s -o /dev/null -w '%{http_code}\n' "$BASE/send/msg?text=while+locked+$i" >> "$TMP/locked.codes" &
    held_pids+=($!)
done
wait "${held_pids[@]}"
check "six sends at once while it is held: each refused" "503 503 503 503 503 503" "$(sort "$TMP/locked.codes" | paste -sd' ')"
echo "rollback;" >&"${LOCKER[1]}"
exec {LOCKER[1]}>&-
wait "$LOCKER_PID" 2>/dev/null
req "$BASE/send/msg?text=after+the+lock"
check "released: sends are stored again" 200 "$STATUS"
check "no session holds the id lock once the sends are answered (a node waits for its turn in a transaction)" 0 \
    "$(psql -X -A -t "$DB" -c "select count(*) from pg_locks where locktype = 'advisory' and objid = 7243582")"
check "nothing of the refused sends was stored" 0 "$(rows "where text like 'while locked%'")"

# ---- PostgreSQL restarted: 503 JSON meanwhile, then every process reconnects ----
latest=$(curl -s "$BASE/get/msg?tail=1" | jq .max_index)
/usr/bin/python3 - "$BASE" "$latest" > "$TMP/restart-ws.out" 2>&1 <<'PY' &
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?index=" + sys.argv[2]) as ws:
        print("open", flush=True)
        m = json.loads(await asyncio.wait_for(ws.recv(), 40))
        print("got " + m.get("text", ""), flush=True)
asyncio.run(main())
PY
wspid=$!
/usr/bin/python3 - "$BASE" "$TMP/go" > "$TMP/ws-down.out" 2>&1 <<'PY' &
import asyncio, json, os, sys, websockets
async def main():
    async with websockets.connect("ws" + sys.argv[1][4:] + "/ws?room=down") as ws:
        print("open", flush=True)
        for _ in range(400):
            if os.path.exists(sys.argv[2]):
                break
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"text": "ws while down"}))
        print(await asyncio.wait_for(ws.recv(), 10), flush=True)
asyncio.run(main())
PY
spid=$!
curl -s -m 60 -o "$TMP/held.body" "$BASE/get/msg?index=$latest&wait=50" &
hpid=$!
for _ in $(seq 1 100); do grep -q open "$TMP/restart-ws.out" && grep -q open "$TMP/ws-down.out" &&
    [ "$(curl -s "$BASE/healthz" | jq .held)" = 1 ] && break; sleep 0.1; done
pg_stop
req "$BASE/send/msg?text=while+down"
check_error "PostgreSQL down: a send" 503
check "PostgreSQL down: Retry-After" 1 "$(header retry-after)"
req "$BASE/get/msg?index=0"
check_error "PostgreSQL down: a read" 503
req "$BASE/healthz"
check_error "PostgreSQL down: /healthz" 503
# Long-polls beside the held one: refused at once, not held (nor held for ever)
lines0=$(wc -l < "$STACK_DIR/logs/chat-fcgi.log")
req_timed "$BASE/get/msg?index=0&wait=3"
check_error "PostgreSQL down: a long-poll behind the latest id" 503
check "with Retry-After" 1 "$(header retry-after)"
check "at once, not after its wait" 1 "$(( ELAPSED_MS < 2000 ))"
req "$BASE/get/msg?index=$latest&wait=2"
check_error "PostgreSQL down: a long-poll at the latest id (its wait may pass first)" 503
check "with Retry-After" 1 "$(header retry-after)"
req "$BASE/events?index=0"
check "PostgreSQL down: an event stream is a 200 stream" "200 text/event-stream" "$STATUS $(header content-type)"
check "holding a retry: line" 1 "$(printf '%s\n' "$BODY" | grep -c '^retry: [0-9][0-9]*$')"
check "and one error event with code 503" "error 503" \
    "$(printf '%s\n' "$BODY" | sed -n 's/^event: //p') $(printf '%s\n' "$BODY" | sed -n 's/^data: //p' | jq .code)"
check "the outage is logged in a few lines, not a line a read" 1 \
    "$(( $(wc -l < "$STACK_DIR/logs/chat-fcgi.log") - lines0 < 20 ))"
touch "$TMP/go"
wait "$spid"
check "PostgreSQL down: a WebSocket send gets a 503 error frame" 503 "$(tail -1 "$TMP/ws-down.out" | jq .code 2>/dev/null)"
sleep 1
pg_start
ok=0
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/send/msg?text=back+again")" = 200 ] && { ok=1; break; }
    sleep 0.1
done
check "PostgreSQL back: sends are stored again within 10 s" 1 "$ok"
wait "$hpid"
check "a long-poll held across the restart gets the message" '["back again"]' "$(jq -c .data "$TMP/held.body")"
wait "$wspid"
check "a socket open across the restart gets it" "got back again" "$(grep got "$TMP/restart-ws.out")"
for _ in $(seq 1 50); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200 ] && break; sleep 0.1; done
allok=1
for _ in $(seq 1 12); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200 ] || allok=0; done
check "every worker reconnected (/healthz 200 on each)" 1 "$allok"
check_true "chat-fcgi logged the outage" grep -q "database unavailable.*retrying with back-off" "$STACK_DIR/logs/chat-fcgi.log"
check_true "and its end" grep -q "database connection restored" "$STACK_DIR/logs/chat-fcgi.log"
check "no 'while down' row" 0 "$(rows "where text like '%while down'")"
# pg_ctl restart, as an operator would: the next requests are served
pg_restart
req "$BASE/send/msg?text=after+pg_ctl+restart"
check "after pg_ctl restart the next send is served" 200 "$STATUS"
req "$BASE/get/msg?tail=1"
check "and the next read" '["after pg_ctl restart"]' "$(jget .data)"

# ---- a read-only database: /healthz says so, sends are refused with 503 ----
"$ROOT/conf/stack.sh" stop "$STACK_DIR" >/dev/null
sqlite3 "$DB" "alter database \"$(sqlite3 "$DB" 'select current_database()')\" set default_transaction_read_only = on"
DB=$DB stack_up readonly || { finish; exit 1; }
req "$BASE/healthz"
check_error "read-only: /healthz" 503
req "$BASE/send/msg?text=read+only"
check_error "read-only: a send" 503
req "$BASE/get/msg?tail=1"
check "read-only: reads still work" 200 "$STATUS"

# ---- a password in the URI never shows in a log ----
# (trust authentication: the server ignores the passwords, the programs must not show them)
"$ROOT/conf/stack.sh" stop "$STACK_DIR" >/dev/null
pwdb=$(pg_db pw_uri) || { finish; exit 1; }
pwdb=${pwdb#postgresql:///}
DB="postgresql://chat:Uri-S3cret-pw@/${pwdb%%\?*}?host=$PG_HOST&password=Query-S3cret-pw" stack_up pwuri ||
    { finish; exit 1; }
req "$BASE/send/msg?text=with+a+password"
check "a stack on a URI with passwords serves" 200 "$STATUS"
# (the start-up line may follow the socket by a moment)
for _ in $(seq 1 50); do grep -q listening "$STACK_DIR/logs/chat-fcgi.log" && break; sleep 0.1; done
check_true "chat-fcgi's start-up line shows the URI masked" grep -q 'database postgresql://chat:\*\*\*@/.*password=\*\*\*' "$STACK_DIR/logs/chat-fcgi.log"
check_true "and chat-ws's" grep -q 'database postgresql://chat:\*\*\*@/.*password=\*\*\*' "$STACK_DIR/logs/chat-ws.log"
"$BIN_DIR/chat-fcgi" --db "postgresql://chat:Bad%zzS3cret-pw@/x?host=$PG_HOST" --listen "$TMP/n.sock" 2>"$TMP/err-pw"
check "a URI libpq refuses exits 1" 1 $?
"$BIN_DIR/chat-ws" --db "postgresql://chat:Bad%zzS3cret-pw@/x?host=$PG_HOST" --listen "127.0.0.1:$(free_port)" 2>>"$TMP/err-pw"
"$BIN_DIR/chat-ws" --db "postgresql:///nosuchdb?host=$PG_HOST&user=chat&password=Query-S3cret-pw" --listen "127.0.0.1:$(free_port)" 2>>"$TMP/err-pw"
"$BIN_DIR/chat-fcgi" "postgresql://chat:Uri-S3cret-pw@/x" 2>>"$TMP/err-pw"
check_true "with libpq's message, the password it echoes masked" grep -q 'percent-encoded token: "\*\*\*"' "$TMP/err-pw"
check "no password in any log line of either program" 0 \
    "$(cat "$STACK_DIR"/logs/chat-fcgi.log "$STACK_DIR"/logs/chat-ws.log "$TMP/err-pw" | grep -c 'S3cret')"

# ---- databases the programs cannot use ----
"$BIN_DIR/chat-fcgi" --db "postgresql:///nosuchdb?host=$PG_HOST&user=chat" --listen "$TMP/n.sock" 2>"$TMP/err"
check "an unknown database exits 1" 1 $?
check_true "and says why" grep -q 'cannot connect to the database.*nosuchdb' "$TMP/err"
"$BIN_DIR/chat-ws" --db "postgresql:///chat?host=$TMP/nowhere&user=chat" --listen "127.0.0.1:$(free_port)" 2>"$TMP/err"
check "no server there: chat-ws exits 1" 1 $?
check_true "and says why" grep -q 'cannot connect to the database' "$TMP/err"

finish
