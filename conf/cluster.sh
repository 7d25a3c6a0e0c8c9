#!/usr/bin/env bash
# cluster.sh - several nodes on one private PostgreSQL, in the foreground
# (SPEC section 9); `make cluster [NODES=2] [PORT=8080]` runs it.
#
#   conf/cluster.sh run DIR   start PostgreSQL under DIR/pg, then NODES nodes:
#                             node k in DIR/node<k>, nginx on PORT+10k, its
#                             chat-ws on PORT+10k+1 (and the unix socket
#                             nginx uses), each supervised by conf/stack.sh
#                             run; Ctrl-C stops the nodes, then PostgreSQL
#
# Environment: NODES (default 2), PORT (default 8080), BIN_DIR (default
# build/release), PG_BIN (default /usr/lib/postgresql/15/bin), FCGI_FLAGS,
# WS_FLAGS and SCHED (as for conf/stack.sh).
#
# PostgreSQL listens on a unix socket only (listen_addresses = ''), in its
# own folder closed to other users, with trust authentication for whoever
# can open that folder: Debian's own cluster, if any, is left alone. As
# root it runs as the postgres user (PostgreSQL refuses root); when that
# user cannot enter DIR (a checkout under a closed home folder) or the
# socket's path would be longer than a unix address allows, its data and
# socket go to a folder under the system's temporary directory instead,
# linked from DIR/pg/data, and the script says so. It runs under its own
# postmaster, not the supervisor: `pg_ctl restart` works while the nodes
# run, and they reconnect by themselves.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
dir=${2:-}
[ "$cmd" = run ] && [ -n "$dir" ] || { sed -n '2,25p' "$0" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
nodes=${NODES:-2}
port=${PORT:-8080}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
case $nodes in ''|*[!0-9]*) echo "cluster.sh: NODES must be a number from 1 to 20" >&2; exit 2 ;; esac
[ "$nodes" -ge 1 ] && [ "$nodes" -le 20 ] || { echo "cluster.sh: NODES must be a number from 1 to 20" >&2; exit 2; }
[ -x "$pg_bin/initdb" ] || { echo "cluster.sh: no PostgreSQL 15 in $pg_bin (apt-get install postgresql-15)" >&2; exit 1; }

# as_pg CMD...: runs a PostgreSQL program as the user that owns the cluster
as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# ---- where PostgreSQL lives: DIR/pg, or a folder under the temporary directory ----
pg=$dir/pg
mkdir -p "$pg"
home=$pg
fits() { [ ${#1} -le 107 ]; }   # a socket path within the 107 bytes of a unix address
# The socket's folder is the one door to a trust-authenticated server: closed to others.
chmod 700 "$pg"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg"
    as_pg test -w "$pg" || home=""
fi
fits "$pg/.s.PGSQL.5432" || home=""
if [ -z "$home" ]; then
    home=${TMPDIR:-/tmp}/chat-pg-$(id -u)-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)
    mkdir -p "$home"
    [ "$(id -u)" = 0 ] && chown postgres "$home"
    chmod 700 "$home"
    if [ ! -L "$pg/data" ]; then
        [ -e "$pg/data" ] && { echo "cluster.sh: $pg/data exists and is not a link to $home/data" >&2; exit 1; }
        ln -s "$home/data" "$pg/data"
    fi
    echo "PostgreSQL cannot use $pg (the postgres user cannot enter a folder above it, or the socket's"
    echo "path would be too long): its data and socket are in $home, linked from $pg/data"
fi
data=$home/data
log=$home/server.log
[ "$home" = "$pg" ] || ln -sfn "$log" "$pg/server.log"

if [ ! -f "$data/PG_VERSION" ]; then
    echo "creating a PostgreSQL cluster in $data"
    as_pg "$pg_bin/initdb" -D "$data" -A trust -U chat -E UTF8 --locale=C >"$home/initdb.log" 2>&1 ||
        { echo "cluster.sh: initdb failed; see $home/initdb.log" >&2; tail -5 "$home/initdb.log" >&2; exit 1; }
fi
# The settings live in the data folder (chat.conf, which postgresql.conf
# includes), not on pg_ctl's command line, so that an operator's own
# `pg_ctl stop` then `pg_ctl start` keeps the socket where the nodes look.
conns=$((nodes * 20 + 20)); [ "$conns" -ge 100 ] || conns=100
grep -qx "include_if_exists = 'chat.conf'" "$data/postgresql.conf" ||
    echo "include_if_exists = 'chat.conf'" >> "$data/postgresql.conf"
cat > "$data/chat.conf" <<EOF_CONF
# written by conf/cluster.sh at each start (a change takes effect at the next start)
listen_addresses = ''
unix_socket_directories = '$home'
unix_socket_permissions = 0700
max_connections = $conns
EOF_CONF
[ "$(id -u)" = 0 ] && chown postgres "$data/chat.conf"
if as_pg "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "PostgreSQL is already running in $data (left by an earlier run?): using it"
else
    as_pg "$pg_bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null ||
        { echo "cluster.sh: PostgreSQL did not start; see $log" >&2; tail -5 "$log" >&2; exit 1; }
fi
host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/"))' "$home")
uri="postgresql:///chat?host=$host&user=chat"
if [ "$(psql -X -q -A -t "postgresql:///postgres?host=$host&user=chat" -c "select count(*) from pg_database where datname = 'chat'")" != 1 ]; then
    psql -X -q "postgresql:///postgres?host=$host&user=chat" -c 'CREATE DATABASE chat' >/dev/null
fi

# ---- the nodes, each supervised by conf/stack.sh run ----
pids=()
stopping=""
stop_all() {
    local rc=$?
    trap - EXIT INT TERM HUP
    [ -n "$stopping" ] && exit "$rc"
    stopping=1
    echo "stopping the nodes"
    # Each stack.sh run stops its node on TERM (on Ctrl-C it had the SIGINT already).
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    echo "stopping PostgreSQL"
    as_pg "$pg_bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 0' INT TERM HUP

for k in $(seq 0 $((nodes - 1))); do
    p=$((port + 10 * k))
    # The node's lines, prefixed with its name; the prefixer ignores Ctrl-C
    # so that the node's own "stopping" still has somewhere to go.
    PORT=$p WS_PORT=$((p + 1)) DB=$uri "$root/conf/stack.sh" run "$dir/node$k" \
        > >(trap '' INT; exec sed -u "s/^/node$k: /") 2>&1 &
    pids+=($!)
done
for k in $(seq 0 $((nodes - 1))); do
    p=$((port + 10 * k))
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$p/healthz" && break
        kill -0 "${pids[$k]}" 2>/dev/null || { echo "cluster.sh: node $k did not start; see $dir/node$k/logs" >&2; exit 1; }
        sleep 0.1
    done
done
echo
for k in $(seq 0 $((nodes - 1))); do
    echo "node $k: http://127.0.0.1:$((port + 10 * k))/  (logs in $dir/node$k/logs)"
done
echo "PostgreSQL: psql \"$uri\""
[ "$(id -u)" = 0 ] && pgc="runuser -u postgres -- $pg_bin/pg_ctl" || pgc="$pg_bin/pg_ctl"
echo "  (restart it with: $pgc -D $data -l $log restart; the nodes reconnect by themselves)"
echo "Ctrl-C stops the nodes and PostgreSQL; a process that dies is started again."
wait -n "${pids[@]}" || true
echo "cluster.sh: a node's supervisor exited" >&2
exit 1
