#!/usr/bin/env bash
# load.sh - 1,000 held long-polls and concurrent senders, through nginx.
. "$(dirname "$0")/../lib.sh"
stack_up main --max-held 1000 || { finish; exit 1; }

run_checks python3 "$ROOT/tests/it/clients.py" held "$BASE" 1000
req "$BASE/healthz"
check "no request left held" 0 "$(jget .held)"

before=$(rows)
run_checks python3 "$ROOT/tests/it/clients.py" senders "$BASE" 8 200
check "8 x 200 messages stored" $((before + 1600)) "$(rows)"
check "each stored exactly once" 1600 "$(sqlite3 "$DB" "select count(distinct text) from messages where text like 's%-%'")"
check "ids strictly increase with each sender's order" 0 "$(sqlite3 "$DB" "
    select count(*) from messages a join messages b
      on a.user = b.user and a.user like 'sender%' and a.id < b.id
     and cast(substr(a.text, instr(a.text,'-')+1) as int) > cast(substr(b.text, instr(b.text,'-')+1) as int)")"
on_sqlite && check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"

finish
