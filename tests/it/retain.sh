#!/usr/bin/env bash
# retain.sh - retention (SPEC section 6): off by default; by count per room
# and by age when configured, in batches; "pruned": true for a cursor older
# than what was kept; a database of the previous schema is upgraded.
. "$(dirname "$0")/../lib.sh"

# wait_rows N WHERE: waits (bounded) until the count matches
wait_rows() {
    local i
    for i in $(seq 1 100); do [ "$(rows "$2")" = "$1" ] && return 0; sleep 0.1; done
    return 1
}

stack_up count --retain-per-room 3 --retain-every 1 || { finish; exit 1; }
for i in $(seq 1 10); do curl -s -o /dev/null "$BASE/send/msg?text=a$i&room=a"; done
for i in 1 2; do curl -s -o /dev/null "$BASE/send/msg?text=b$i&room=b"; done
check_true "the last 3 of room a are kept" wait_rows 3 "where room='a'"
check "what is kept is the newest" "a8 a9 a10" "$(sqlite3 "$DB" "select group_concat(text, ' ') from (select text from messages where room='a' order by id) as t")"
check "a room under the limit is untouched" 2 "$(rows "where room='b'")"
req "$BASE/get/msg?room=a&index=0"
check "a cursor older than the kept messages: pruned" true "$(jget .pruned)"
check "and the kept messages" '["a8","a9","a10"]' "$(jget .data)"
first=$(sqlite3 "$DB" "select min(id) from messages where room='a'")
req "$BASE/get/msg?room=a&index=$first"
check "a cursor within the kept messages: no pruned" null "$(jget .pruned)"
req "$BASE/get/msg?room=b&index=0"
check "a room retention never touched: no pruned" null "$(jget .pruned)"
req "$BASE/get/msg?room=a&tail=10"
check "tail: no pruned" null "$(jget .pruned)"
check "retention is logged" 1 "$(grep -c 'retention deleted' "$STACK_DIR/logs/chat-fcgi.log" | awk '{print ($1 > 0)}')"

DB=""; stack_up age --retain-age 5s --retain-every 1 || { finish; exit 1; }
sqlite3 "$DB" "insert into messages(room, text, ts) values('old', 'stale', 1000), ('old', 'stale too', 2000)"
curl -s -o /dev/null "$BASE/send/msg?text=fresh&room=old"
check_true "messages older than the age are deleted" wait_rows 1 "where room='old'"
check "the fresh one is kept" fresh "$(sqlite3 "$DB" "select text from messages where room='old'")"
req "$BASE/get/msg?room=old&index=0"
check "pruned after deletion by age" true "$(jget .pruned)"

DB=""; stack_up none || { finish; exit 1; }
for i in $(seq 1 5); do curl -s -o /dev/null "$BASE/send/msg?text=k$i"; done
sleep 1.5
check "off by default: nothing deleted" 5 "$(rows)"
req "$BASE/get/msg?index=0"
check "off by default: no pruned" null "$(jget .pruned)"

# A database of schema version 1 (no pruned table) is upgraded in place
# (SQLite's; tests/it/pg.sh upgrades a PostgreSQL one)
on_sqlite || { finish; exit; }
old=$TMP/v1.db
sqlite3 "$old" "create table messages(id integer primary key autoincrement, room text not null,
  user text not null default '', text text not null, ts integer not null default 0, cid text);
  create index messages_room_id on messages(room, id);
  create unique index messages_room_cid on messages(room, cid);
  insert into messages(room, text) values('lobby', 'from v1'); pragma user_version = 1;"
DB=$old; stack_up upgraded --retain-per-room 5 || { finish; exit 1; }
req "$BASE/get/msg?index=0"
check "the v1 database is served" '["from v1"]' "$(jget .data)"
check "and upgraded to version 3" 3 "$(sqlite3 "$old" 'pragma user_version')"
check "with the pruned table" pruned "$(sqlite3 "$old" "select name from sqlite_schema where name='pruned'")"
check "with the (room, cid) index partial: rows without a cid are not in it" \
    "CREATE UNIQUE INDEX messages_room_cid ON messages(room, cid) WHERE cid IS NOT NULL" \
    "$(sqlite3 "$old" "select sql from sqlite_schema where name='messages_room_cid'")"
req "$BASE/send/msg?text=once&cid=c1"; first=$(jget .id)
req "$BASE/send/msg?text=twice&cid=c1"
check "a cid still stores once in the upgraded database" "$first true" "$(jget .id) $(jget .duplicate)"

finish
