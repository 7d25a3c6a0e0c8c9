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

# No SQL from input: only store.c talks to SQLite, and every statement it
# prepares or runs is a string literal (or the compiled-in schema).
check "only store.c includes sqlite3.h" "fcgi/store.c" "$(grep -l '#include <sqlite3\.h>' "$ROOT"/fcgi/*.c "$ROOT"/fcgi/*.h | sed "s|$ROOT/||")"
check "no SQL formatting helpers" "" "$(grep -n -E 'sqlite3_(v?mprintf|snprintf|str_appendf)|%q' "$ROOT/fcgi/store.c")"
check "sqlite3_exec runs only literals and the schema" "" \
    "$(grep -n 'sqlite3_exec(' "$ROOT/fcgi/store.c" | grep -v -E 'sqlite3_exec\(s->db, ("[^"]*"|schema_sql|pragmas),')"
check "pragmas holds only a literal choice" 1 "$(grep -c 'o->sync_full ? "FULL" : "NORMAL"' "$ROOT/fcgi/store.c")"
check "every prepared statement comes from the literal table" "" \
    "$(grep -n 'sqlite3_prepare' "$ROOT/fcgi/store.c" | grep -v -E 'stmt_sql\[i\]|"SELECT \(SELECT user_version')"
finish
