# lib.sh - shared helpers of the shell test suites (sourced, not run).
#
# A suite sources this file, calls stack_up to get its own nginx + chat-fcgi
# on free loopback ports in a temporary folder, runs checks, and ends with
# `finish`, which prints "N passed, N failed" and stops what it started.

set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${BIN_DIR:-build/release}
case $BIN_DIR in /*) ;; *) BIN_DIR=$ROOT/$BIN_DIR ;; esac
export BIN_DIR
# The Python clients share tests/it/checks.py.
export PYTHONPATH=$ROOT/tests/it${PYTHONPATH:+:$PYTHONPATH}
SUITE=$(basename "$0" .sh)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/chat-$SUITE.XXXXXX")
PASSED=0
FAILED=0
STACKS=()

pass() { PASSED=$((PASSED + 1)); [ -n "${VERBOSE:-}" ] && echo "  ok   $1"; return 0; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $SUITE: $1"; [ -n "${2:-}" ] && echo "       $2"; return 0; }

# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected [$2], got [${3:0:300}]"; fi
}
# check_true NAME COMMAND...: passes when the command succeeds
check_true() {
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi
}

# calc EXPR: evaluates an arithmetic or comparison expression with awk (1/0)
calc() { awk "BEGIN { print ($1) ? 1 : 0 }"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stack_up NAME [chat-fcgi flags...]: starts a stack in $TMP/NAME; sets
# $BASE (http://127.0.0.1:PORT) and $DB; a second call starts a second stack
# (set DB first to share a database).
stack_up() {
    local name=$1; shift
    local port ws_port; port=$(free_port); ws_port=$(free_port)
    if [ -n "${TEST_PG:-}" ] && [ -z "${DB:-}" ]; then pg_stack_db "$name" || return 1; fi
    STACKS+=("$TMP/$name")
    PORT=$port WS_PORT=$ws_port FCGI_FLAGS="$*" DB=${DB:-$TMP/$name/chat.db} \
        "$ROOT/conf/stack.sh" start "$TMP/$name" || { fail "stack $name starts"; return 1; }
    BASE=http://127.0.0.1:$port
    WS_BASE=ws://127.0.0.1:$port/ws
    DB=${DB:-$TMP/$name/chat.db}
    STACK_DIR=$TMP/$name
}

# nginx_conf_head DIR WORKERS CONNECTIONS: the top of a test's own nginx.conf,
# up to the opening of its http block, with logs and temporary files under DIR
# (root keeps its identity so that workers reach the sockets under DIR); the
# suite writes the rest of the http block and its closing brace.
nginx_conf_head() {
    local d=$1
    [ "$(id -u)" = 0 ] && echo "user root;"
    printf 'worker_processes %s;\npid %s/nginx.pid;\nerror_log %s/logs/error.log warn;\ndaemon off;\n' "$2" "$d" "$d"
    printf 'events { worker_connections %s; }\nhttp {\n    access_log %s/logs/access.log;\n' "$3" "$d"
    for t in client_body fastcgi proxy uwsgi scgi; do
        printf '    %s_temp_path %s/tmp/%s;\n' "$t" "$d" "${t#client_}"
    done
}

stack_down_all() {
    local s
    for s in "${STACKS[@]}"; do "$ROOT/conf/stack.sh" stop "$s" >/dev/null 2>&1 || true; done
    pg_down
}

# ---- PostgreSQL (SPEC section 9) ----
# pg_up starts a private PostgreSQL 15 for the suite in $TMP/pg: initdb, a
# unix socket only, as the postgres user when root (PostgreSQL refuses
# root; $TMP is opened to it); it sets PG_HOST (the socket folder) and
# PG_URI (database chat). pg_down stops it (stack_down_all does). pg_db
# NAME creates a database and prints its URI.
# TEST_PG runs a suite on PostgreSQL: "1" starts the suite's own server, a
# socket folder uses that server (tests/it/pg.sh); each stack_up without a
# DB then gets a new database, and sqlite3 "$DB" "SQL" runs SQL in psql
# with the sqlite3 CLI's output (values joined by |, no header).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_HOST=""
PG_OWN=""
pg_as() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
pg_up() {
    local dir=$TMP/pg
    [ -x "$PG_BIN/initdb" ] || { fail "PostgreSQL 15 is installed" "no $PG_BIN/initdb"; return 1; }
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chmod 755 "$TMP" && chown postgres "$dir" || return 1; fi
    pg_as "$PG_BIN/initdb" -D "$dir/data" -A trust -U chat -E UTF8 --locale=C --no-sync >"$TMP/initdb.log" 2>&1 ||
        { fail "initdb" "$(tail -3 "$TMP/initdb.log")"; return 1; }
    PG_HOST=$dir
    PG_OWN=$dir
    PG_OPTS="-c listen_addresses='' -c unix_socket_directories='$dir' -c max_connections=300"
    pg_start || return 1
    PG_URI=$(pg_db chat)
    [ -n "$PG_URI" ]
}
# pg_start, pg_stop, pg_restart: the suite's server (pg_ctl -m fast: sessions are ended)
pg_start() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_OWN/data" -l "$PG_OWN/server.log" -w -t 60 -o "$PG_OPTS" start >/dev/null ||
        { fail "PostgreSQL starts" "$(tail -3 "$PG_OWN/server.log")"; return 1; }
}
pg_stop() { pg_as "$PG_BIN/pg_ctl" -D "$PG_OWN/data" -m fast -w -t 60 stop >/dev/null; }
pg_restart() { pg_as "$PG_BIN/pg_ctl" -D "$PG_OWN/data" -l "$PG_OWN/server.log" -m fast -w -t 60 restart >/dev/null; }
pg_down() {
    [ -n "$PG_OWN" ] || return 0
    pg_stop 2>/dev/null
    PG_OWN=""
}
pg_db() {
    local uri="postgresql:///$1?host=$PG_HOST&user=chat"
    psql -X -q -v ON_ERROR_STOP=1 "postgresql:///postgres?host=$PG_HOST&user=chat" \
        -c "CREATE DATABASE \"$1\"" >/dev/null || { fail "database $1 created"; return 1; }
    # The SQLite functions the suites' own checks use (not the program's).
    psql -X -q -v ON_ERROR_STOP=1 "$uri" >/dev/null <<'SQL' || { fail "database $1 prepared"; return 1; }
CREATE FUNCTION instr(text, text) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT strpos($1, $2)';
CREATE FUNCTION group_concat_step(text, text, text) RETURNS text LANGUAGE sql IMMUTABLE
    AS 'SELECT CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2 ELSE $1 || $3 || $2 END';
CREATE AGGREGATE group_concat(text, text) (SFUNC = group_concat_step, STYPE = text);
SQL
    echo "$uri"
}
# pg_stack_db NAME: sets DB to a new database for a stack, on TEST_PG's server
pg_stack_db() {
    if [ -z "$PG_HOST" ]; then
        if [ "$TEST_PG" = 1 ]; then pg_up || return 1; else PG_HOST=$TEST_PG; fi
    fi
    DB=$(pg_db "$(printf '%s_%s_%s' "$SUITE" "$1" "$RANDOM" | tr -c 'a-z0-9_' '_' | cut -c1-60)")
}
sqlite3() {
    case ${1:-} in
        postgres://*|postgresql://*) local db=$1; shift
            psql -X -q -A -t -F '|' -v ON_ERROR_STOP=1 "$db" -c "$*" ;;
        *) command sqlite3 "$@" ;;
    esac
}
# on_sqlite: the suite's database is SQLite (checks of SQLite itself)
on_sqlite() { case ${DB:-} in postgres://*|postgresql://*) return 1 ;; esac; }

# req [curl args...]: one request; sets STATUS, BODY and HEADERS (lower-cased).
req() {
    STATUS=$(curl -s -m 20 -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "$@")
    BODY=$(cat "$TMP/body")
    HEADERS=$(tr 'A-Z' 'a-z' < "$TMP/headers" | tr -d '\r')
}

# req_timed URL...: req, and ELAPSED_MS set to how long it took
req_timed() {
    local t0; t0=$(date +%s%N)
    req "$@"
    ELAPSED_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# jget FILTER: applies a jq filter to BODY
jget() { printf '%s' "$BODY" | jq -c "$1" 2>/dev/null; }

# header NAME: the value of a response header of the last req (lower-cased name)
header() { printf '%s\n' "$HEADERS" | sed -n "s/^$1: //p" | head -1; }

# check_error NAME STATUS: the last answer is a JSON error with that status
check_error() {
    check "$1: status" "$2" "$STATUS"
    check "$1: JSON error" "true" "$(jget '.error | type == "string" and length > 0')"
    case $(header content-type) in application/json*) pass "$1: content type" ;;
        *) fail "$1: content type" "got $(header content-type)" ;; esac
    check "$1: no-store" "no-store" "$(header cache-control)"
}

# rows [WHERE]: number of stored messages
rows() { sqlite3 "$DB" "select count(*) from messages ${1:-}"; }

finish() {
    local left
    stack_down_all
    # Nothing may outlive its suite: a server left running is a failure (and is stopped).
    for _ in $(seq 1 50); do   # a process stopped a moment ago may still be exiting
        left=$(pgrep -f -- "$TMP/" | grep -v -x -e "$$" -e "$BASHPID" | tr '\n' ' ')
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        fail "every process the suite started has stopped" "$(ps -o pid=,args= -p ${left// /,} 2>/dev/null | head -5)"
        kill -KILL $left 2>/dev/null
    fi
    # Any sanitizer report in a server log is a failure of the suite.
    if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$TMP"/*/logs/chat-*.log >/dev/null 2>&1; then
        fail "no sanitizer report in server logs" "$(grep -h -A5 -E 'Sanitizer|runtime error' "$TMP"/*/logs/chat-*.log | head -20)"
    fi
    echo "$SUITE: $PASSED passed, $FAILED failed"
    if [ "$FAILED" = 0 ] && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; else echo "  (state kept in $TMP)"; fi
    [ "$FAILED" = 0 ]
}
trap stack_down_all EXIT

# run_checks COMMAND...: runs a command that prints "PASS name" / "FAIL name:
# detail" lines and counts them.
run_checks() {
    local line
    while IFS= read -r line; do
        case $line in
            "PASS "*) pass "${line#PASS }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            "INFO "*) echo "  ${line#INFO }" ;;
            *) echo "  $line" ;;
        esac
    done < <("$@" 2>&1)
}
