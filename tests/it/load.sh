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

# The WAL is checkpointed while sends go on (a thread of chat-fcgi does it,
# beside the commits): 4,800 sends of 4,000 bytes write over 40 MB of WAL
# pages. Most must be in the database file by the end, and the WAL must
# have started over (its header's checkpoint sequence number, bytes 12 to
# 15, goes up each time) rather than grown.
walseq() { od -An -tu4 --endian=big -j12 -N4 "$DB-wal" | tr -d ' '; }
if on_sqlite; then
    before=$(rows)
    seq0=$(walseq)
    run_checks python3 "$ROOT/tests/it/clients.py" senders "$BASE" 8 600 4000
    check "8 x 600 long messages stored" $((before + 4800)) "$(rows)"
    check_true "checkpoints copied them to the database file (over 8 MB)" test "$(stat -c %s "$DB")" -gt 8000000
    check_true "the WAL started over" test "$(walseq)" -gt "$seq0"
    check "integrity_check after the checkpoints" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
fi

finish
