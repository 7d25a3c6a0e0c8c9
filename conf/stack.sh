#!/usr/bin/env bash
# stack.sh - start, run or stop the whole system (chat-fcgi behind a private
# nginx) with its state in one folder. Used by `make run` and by the tests.
#
#   conf/stack.sh run DIR     start in the foreground and supervise (a process
#                             that dies is started again); Ctrl-C stops all
#   conf/stack.sh start DIR   start in the background; pids in DIR/*.pid
#   conf/stack.sh stop DIR    stop what `start` started
#
# Environment: PORT (default 8080), WS_PORT (chat-ws's own TCP port, for
# direct use: default PORT+1), BIN_DIR (default build/release), FCGI_FLAGS
# and WS_FLAGS (extra flags of chat-fcgi and chat-ws), FCGI_WRAP and WS_WRAP
# (a command to run each under, e.g. valgrind), DB (default DIR/chat.db),
# SCHED (batch, the default: chat-fcgi and nginx run under the SCHED_BATCH
# policy, see below; other: the default policy).
# DIR holds chat.db, fcgi.sock (chat-fcgi's), ws.sock (chat-ws's, which
# nginx uses), nginx/ (generated config), logs/ and tmp/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,17p' "$0" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
port=${PORT:-8080}
ws_port=${WS_PORT:-$((port + 1))}
bin=${BIN_DIR:-build/release}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
db=${DB:-$dir/chat.db}
sock=$dir/fcgi.sock
ws_sock=$dir/ws.sock
# chat-fcgi and nginx under SCHED_BATCH (sched(7)): a thread one of them
# wakes does not take the CPU from the one that woke it, so each goes on
# with the requests it has before the switch. Sends through both, by hand
# (wrk -t2 -c16 -d6s on /send/msg, three alternations, README "Scheduling"):
# 45.4k to 46.6k a second against 38.2k to 39.3k. Latencies of the fan-outs
# and wake-ups did not move. It needs no privilege; where it is refused,
# the default policy.
sched=""
case ${SCHED:-batch} in
batch)
    if chrt --batch 0 true 2>/dev/null; then
        sched="chrt --batch 0"
    else
        echo "stack.sh: chrt --batch refused here; chat-fcgi and nginx run under the default policy" >&2
    fi ;;
other) ;;
*) echo "stack.sh: SCHED must be batch or other, not '$SCHED'" >&2; exit 2 ;;
esac
nginx=$(command -v nginx || echo /usr/sbin/nginx)

# Waits up to 10 s for a condition; returns 1 when it never holds.
wait_for() {
    for _ in $(seq 1 200); do
        if eval "$1"; then return 0; fi
        sleep 0.05
    done
    return 1
}

# alive PID: running (a zombie whose parent has not reaped it is not). No
# fork: the supervisor calls it for each process five times a second.
alive() {
    local key value
    while read -r key value; do
        if [ "$key" = State: ]; then [[ $value != [ZX]* ]]; return $?; fi   # $?: a bare return in a trap gives the trap's status
    done 2>/dev/null < "/proc/$1/status"
    return 1
}

# The three processes, each by NAME: its pid file and its log.
NAMES="chat-fcgi chat-ws nginx"
declare -A PIDFILE=([chat-fcgi]=$dir/chat-fcgi.pid [chat-ws]=$dir/chat-ws.pid [nginx]=$dir/nginx.run.pid)
declare -A LOG=([chat-fcgi]=$dir/logs/chat-fcgi.log [chat-ws]=$dir/logs/chat-ws.log [nginx]=$dir/logs/nginx-error.log)

# group_alive PGID: a process of that group is still running. Each process is
# started in a session of its own, so its group is its pid: nginx's workers
# are in it, and outlive a master killed with SIGKILL.
group_alive() {
    local p
    for p in $(pgrep -g "$1" 2>/dev/null); do
        if alive "$p"; then return 0; fi
    done
    return 1
}

stop_pid() {   # stop_pid NAME: TERM to it and its group, then KILL after 10 s
    local f=${PIDFILE[$1]} pid
    [ -f "$f" ] || return 0
    pid=$(< "$f")   # a pid file written without a newline (by a test) reads too
    if alive "$pid" || group_alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        wait_for "! alive $pid && ! group_alive $pid" ||
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

write_nginx_conf() {
    local user="" nofile
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
    # Workers must reach the socket in DIR: as root they keep root's identity.
    [ "$(id -u)" = 0 ] && user="user root;"
    mkdir -p "$dir/nginx/snippets" "$dir/logs" "$dir/tmp"
    cp "$root"/conf/nginx/chat-locations.conf "$root"/conf/nginx/chat-errors.conf "$root"/conf/nginx/chat-fastcgi.conf \
       "$root"/conf/nginx/chat-page-headers.conf "$dir/nginx/snippets/"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@HTDOCS@|$root/htdocs|g" \
        -e "s|@SOCK@|$sock|g" -e "s|@WSSOCK@|$ws_sock|g" -e "s|@WSPORT@|127.0.0.1:$ws_port|g" -e "s|@USER@|$user|g" -e "s|@NOFILE@|$nofile|g" \
        "$root/conf/nginx/nginx-run.conf.in" > "$dir/nginx/nginx.conf"
}

# spawn NAME: starts it in the background, in a session of its own (Ctrl-C
# reaches only this script, which stops the three in order), its output
# appended to its log; its pid in $! and in its pid file. The same command
# every time.
spawn() {
    local log=${LOG[$1]}
    case $1 in
    chat-fcgi)
        # A socket left by a killed chat-fcgi must not pass for a ready one
        # (chat-fcgi would replace it anyway).
        if [ -S "$sock" ]; then rm -f "$sock"; fi
        # shellcheck disable=SC2086
        setsid $sched ${FCGI_WRAP:-} "$bin/chat-fcgi" --db "$db" --listen "$sock" ${FCGI_FLAGS:-} >>"$log" 2>&1 </dev/null &
        ;;
    chat-ws)
        # No rate limit (SPEC section 7: the production site's nginx has
        # them; tests and benchmarks come from one address). WS_FLAGS may
        # set one: the last --max-sends counts.
        # shellcheck disable=SC2086
        setsid ${WS_WRAP:-} "$bin/chat-ws" --db "$db" --listen "$ws_sock" --listen "127.0.0.1:$ws_port" --max-sends 0 ${WS_FLAGS:-} \
            >>"$log" 2>&1 </dev/null &
        ;;
    nginx)
        # shellcheck disable=SC2086
        setsid $sched "$nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$log" >>"$log" 2>&1 </dev/null &
        ;;
    esac
    echo $! > "${PIDFILE[$1]}"
}

# started NAME CONDITION N: waits up to N x 10 s for CONDITION, and says why
# not when it never holds or NAME dies first.
started() {
    local pid _
    read -r pid < "${PIDFILE[$1]}"
    for _ in $(seq 1 "$3"); do
        if wait_for "! alive $pid || $2"; then break; fi
    done
    if alive "$pid" && eval "$2"; then return 0; fi
    echo "$1 did not start; see ${LOG[$1]}" >&2
    tail -5 "${LOG[$1]}" >&2
    return 1
}

# port_free PORT: nothing listens on 127.0.0.1:PORT. nginx listens with
# reuseport, so a second nginx (another make run) would share the port, and
# another server's answer would pass for ours: asked before starting.
port_free() {
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is not in use
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# preflight: before anything is touched, refuses a folder whose stack still
# runs (another `run` or `start` in it: a pid file names a live process;
# starting over it would take its sockets and config) and ports in use.
preflight() {
    local name pid p
    for name in $NAMES; do
        [ -f "${PIDFILE[$name]}" ] || continue
        pid=$(< "${PIDFILE[$name]}")
        if alive "$pid"; then
            echo "a stack already runs in $dir ($name, pid $pid): stop it, or give another folder" >&2
            return 1
        fi
    done
    for p in "$port" "$ws_port"; do
        port_free "$p" || { echo "port $p is in use (another make run? PORT= picks another)" >&2; return 1; }
    done
}

start() {
    local n
    write_nginx_conf
    spawn chat-fcgi
    started chat-fcgi "[ -S '$sock' ]" 2 || return 1
    # chat-ws is ready when its log gains a "listening" line.
    n=$(grep -c listening "$dir/logs/chat-ws.log" 2>/dev/null || true)
    spawn chat-ws
    started chat-ws "[ \$(grep -c listening '$dir/logs/chat-ws.log') -gt ${n:-0} ]" 2 || return 1
    spawn nginx
    started nginx "curl -s -m 2 -o /dev/null http://127.0.0.1:$port/healthz" 1
}

stop() {
    stop_pid nginx
    stop_pid chat-ws
    stop_pid chat-fcgi
}

# say NAME TEXT: a line in NAME's log, in the programs' format; the terminal
# of `run` shows it through its tail of the logs.
say() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) stack.sh warn: $2" >> "${LOG[$1]}"
}

# supervise: the loop of `run`, as systemd would do it. Every 0.2 s, a process
# that has exited is logged and started again with the same command after a
# delay: 0.5 s, doubled each time it dies again within STABLE_MS of its start,
# up to 30 s. The others keep serving meanwhile. nginx's master keeps its pid
# across a reload (SIGHUP), so only its exit counts; the workers of a master
# that died are stopped before a new one starts.
STABLE_MS=10000
supervise() {
    local -A pid since delay due
    local name st why now
    now_ms
    for name in $NAMES; do
        read -r "pid[$name]" < "${PIDFILE[$name]}"; since[$name]=$now; delay[$name]=0; due[$name]=0
    done
    while :; do
        now_ms
        for name in $NAMES; do
            if [ "${due[$name]}" != 0 ]; then          # waiting to start again
                if [ "$now" -ge "${due[$name]}" ]; then
                    spawn "$name"
                    pid[$name]=$!; since[$name]=$now; due[$name]=0
                    say "$name" "$name started again (pid ${pid[$name]})"
                fi
            elif ! alive "${pid[$name]}"; then
                st=0; wait "${pid[$name]}" || st=$?
                if [ "$st" -gt 128 ]; then why="signal $((st - 128))"; else why="status $st"; fi
                if [ "${delay[$name]}" = 0 ] || [ $((now - ${since[$name]})) -ge $STABLE_MS ]; then
                    delay[$name]=500
                else
                    delay[$name]=$(( ${delay[$name]} * 2 > 30000 ? 30000 : ${delay[$name]} * 2 ))
                fi
                due[$name]=$(( now + ${delay[$name]} ))
                say "$name" "$name exited ($why); restarting in $(seconds "${delay[$name]}") s"
                stop_pid "$name"                    # what is left of its group
            fi
        done
        sleep 0.2
    done
}
now_ms() { now=$(( ${EPOCHREALTIME//[.,]/} / 1000 )); }   # sets now (no fork)
seconds() { if [ $(($1 % 1000)) = 0 ]; then echo $(($1 / 1000)); else echo "$(($1 / 1000)).$(($1 % 1000 / 100))"; fi; }

# run: start, show the logs, supervise; Ctrl-C, SIGTERM or SIGHUP (the
# terminal closed) stops all and exits 0, and so does any way out of here.
tail_pid=
stopped() {
    local rc=$?
    trap - EXIT INT TERM HUP
    echo; echo "stopping"
    if [ -n "$tail_pid" ]; then kill "$tail_pid" 2>/dev/null || true; fi
    stop
    if [ "$rc" != 0 ] && [ -n "$tail_pid" ]; then tail -3 "$dir/logs/stack.log" >&2 2>/dev/null || true; fi
    exit "$rc"
}
run() {
    preflight || exit 1
    trap stopped EXIT
    trap 'exit 0' INT TERM HUP
    start || exit 1
    echo "chat is running on http://127.0.0.1:$port/  (database $db; logs in $dir/logs)"
    echo "Ctrl-C stops it; a process that dies is started again."
    tail -n 0 -F "$dir/logs/chat-fcgi.log" "$dir/logs/chat-ws.log" "$dir/logs/nginx-error.log" &
    tail_pid=$!
    # bash's own notice of a child killed by a signal goes to stack.log: the
    # loop says it in the process's log.
    supervise 2>>"$dir/logs/stack.log"
}

case $cmd in
start) preflight && start ;;
stop)  stop ;;
run)   run ;;
*) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
