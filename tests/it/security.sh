#!/usr/bin/env bash
# security.sh - no API answer is something a browser would render as a page,
# every message is JSON-escaped, and no SQL is built from input: every
# statement is a literal prepared once in store.c (checked in the source).
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }

evil='<script>alert(1)</script><img src=x onerror=alert(2)> "q" \ </p>'
id=$(curl -s --data-urlencode "text=$evil" --data-urlencode "user=<b>bold</b>" "$BASE/send/msg" | jq .id)
req "$BASE/get/msg?index=$((id - 1))&limit=1"
check "markup round-trips as a JSON string" "$evil" "$(printf '%s' "$BODY" | jq -r '.data[0]')"
check "the raw answer escapes quotes and backslashes" 1 "$(grep -c '\\"q\\" \\\\ ' <<<"$BODY")"
for url in "/send/msg?text=ok" "/get/msg?index=0" "/get/msg?tail=5" "/send/msg" "/send/msg?text=%01" \
           "/get/msg?index=x" "/send/nope" "/get/msg/x" "/healthz" "/nothing/here" \
           "/send/msg?text=$(head -c 5000 /dev/zero | tr '\0' a)"; do
    req "$BASE$url"
    case $(header content-type) in
        application/json*) pass "JSON content type: ${url:0:40}" ;;
        *) fail "JSON content type: ${url:0:40}" "$(header content-type)" ;;
    esac
    check "nosniff: ${url:0:40}" nosniff "$(header x-content-type-options)"
    check "a JSON object: ${url:0:40}" object "$(printf '%s' "$BODY" | jq -r type 2>/dev/null)"
done
req -X DELETE "$BASE/get/msg"
check "405 is JSON" object "$(printf '%s' "$BODY" | jq -r type)"

# No SQL from input, by behaviour: strings that would change a statement
# built by pasting are stored verbatim in every field, and nothing else in
# the database changes.
tables="select group_concat(name) from (select name from sqlite_master order by name)"
on_sqlite || tables="select string_agg(relname, ',' order by relname) from pg_class where relnamespace = 'public'::regnamespace"
tables_before=$(sqlite3 "$DB" "$tables")
rows_before=$(sqlite3 "$DB" "select count(*) from messages")
inj="x'); DELETE FROM messages; --"
inj2='" OR 1=1; DROP TABLE messages; --'
req --data-urlencode "text=$inj" --data-urlencode "user=$inj2" --data-urlencode "cid=a.b-c_d" "$BASE/send/msg"
check "an injection attempt is stored as a message" 200 "$STATUS"
inj_id=$(printf '%s' "$BODY" | jq .id)
check "its text is stored verbatim" "$inj" "$(sqlite3 "$DB" "select text from messages where id = $inj_id")"
check "its user is stored verbatim" "$inj2" "$(sqlite3 "$DB" "select \"user\" from messages where id = $inj_id")"
req -H 'Content-Type: application/json' --data "{\"text\":\"$inj\",\"room\":\"r1\"}" "$BASE/send/msg"
check "the same in a JSON body" 200 "$STATUS"
req "$BASE/get/msg?room=lobby'--&index=0"
check "a quote in a room name is a 400, not SQL" 400 "$STATUS"
req "$BASE/get/msg?index=0%20OR%201=1"
check "SQL in a cursor is a 400" 400 "$STATUS"
check "no row was deleted" $((rows_before + 2)) "$(sqlite3 "$DB" "select count(*) from messages")"
check "no table was dropped or added" "$tables_before" \
    "$(sqlite3 "$DB" "$tables")"

# A lint, with its reason: only the store backends talk to the database, so
# that the rule "prepared statements with bound values only" has one place
# to be reviewed, and none of them formats SQL text from values.
backends=$(cd "$ROOT" && grep -rl -E '#include <(sqlite3|libpq-fe)\.h>' fcgi | sort | tr '\n' ' ')
case $backends in
    *store*) pass "the database headers are included by store files only: $backends" ;;
    *) fail "the database headers are included by store files only" "$backends" ;;
esac
check "no file but a store backend includes a database header" "" \
    "$(for f in $backends; do case $f in *store*) ;; *) echo "$f" ;; esac; done)"
check "no SQL formatting helpers anywhere" "" \
    "$(cd "$ROOT" && grep -rn -E 'sqlite3_(v?mprintf|snprintf|str_appendf)|PQescape|%q' fcgi)"
finish
