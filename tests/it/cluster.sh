#!/usr/bin/env bash
# cluster.sh - two and three nodes (each its own nginx, chat-fcgi and
# chat-ws) on one PostgreSQL that this suite starts and stops (SPEC section
# 9): a send on any node, or a psql insert, reaches long-polls and sockets
# on every node; concurrent senders on every node with followers on each
# see every message once, in id order; cid across nodes; waiters cost no
# database connection; then kill -9 of one node's processes, pg_ctl
# restart and PostgreSQL away for two seconds under load, with every
# message counted (tests/it/cluster.py).
. "$(dirname "$0")/../lib.sh"
pg_up || { finish; exit 1; }
CLUSTER=/usr/bin/python3
DB=$PG_URI
stack_up n0 || { finish; exit 1; }
n0=$BASE
stack_up n1 || { finish; exit 1; }
for group in fanout cid; do
    run_checks "$CLUSTER" "$ROOT/tests/it/cluster.py" "$group" "$DB" "$TMP/n0" "$TMP/n1"
done

stack_up n2 || { finish; exit 1; }
for group in fanout follow cid; do
    run_checks "$CLUSTER" "$ROOT/tests/it/cluster.py" "$group" "$DB" "$TMP/n0" "$TMP/n1" "$TMP/n2"
done

# Waiters never get a database connection each: 100 long-polls and 100
# sockets held on node 0 leave the number of connections as it was.
before=$(sqlite3 "$DB" "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()")
run_checks "$CLUSTER" - "$n0" "$before" "$DB" <<'PY'
import asyncio, sys, websockets
from checks import db_run, report
base, before, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
async def main():
    polls = []
    for _ in range(100):
        r, w = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
        w.write(b"GET /get/msg?room=idle&index=0&wait=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        polls.append(w)
    socks = [await websockets.connect("ws" + base[4:] + "/ws?room=idle") for _ in range(100)]
    await asyncio.sleep(1.5)
    now = int(db_run(db, "select count(*) from pg_stat_activity where datname = current_database()"
                         " and pid <> pg_backend_pid()")[0][0])
    report(now == before, f"200 waiters on node 0 add no database connection ({before} before, {now} with them)", now)
    for ws in socks:
        await ws.close()
    for w in polls:
        w.close()
asyncio.run(main())
PY

# Faults: node 2 is killed; PostgreSQL restarts and goes away for a while.
[ "$(id -u)" = 0 ] && PG_AS="runuser -u postgres --" || PG_AS=""
PG_AS=$PG_AS PG_CTL=$PG_BIN/pg_ctl PG_DATA=$PG_OWN/data PG_LOG=$PG_OWN/server.log PG_OPTS=$PG_OPTS \
    run_checks "$CLUSTER" "$ROOT/tests/it/cluster.py" faults "$DB" "$TMP/n0" "$TMP/n1" "$TMP/n2"
for n in n0 n1; do
    for p in chat-fcgi chat-ws; do
        check "$n's $p served through it all without a restart" 1 "$(grep -c ' info: listening on' "$TMP/$n/logs/$p.log")"
    done
done

finish
