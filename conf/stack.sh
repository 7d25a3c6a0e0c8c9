#!/usr/bin/env bash
# stack.sh - start, run or stop the whole system (chat-fcgi behind a private
# nginx) with its state in one folder. Used by `make run` and by the tests.
#
#   conf/stack.sh run DIR     start in the foreground; Ctrl-C stops everything
#   conf/stack.sh start DIR   start in the background; pids in DIR/*.pid
#   conf/stack.sh stop DIR    stop what `start` started
#
# Environment: PORT (default 8080), WS_PORT (chat-ws, default PORT+1),
# BIN_DIR (default build/release), FCGI_FLAGS and WS_FLAGS (extra flags of
# chat-fcgi and chat-ws), FCGI_WRAP and WS_WRAP (a command to run each under,
# e.g. valgrind), DB (default DIR/chat.db).
# DIR holds chat.db, fcgi.sock, nginx/ (generated config), logs/ and tmp/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
port=${PORT:-8080}
ws_port=${WS_PORT:-$((port + 1))}
bin=${BIN_DIR:-build/release}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
db=${DB:-$dir/chat.db}
sock=$dir/fcgi.sock
nginx=$(command -v nginx || echo /usr/sbin/nginx)

# Waits up to 10 s for a condition; returns 1 when it never holds.
wait_for() {
    for _ in $(seq 1 200); do
        if eval "$1"; then return 0; fi
        sleep 0.05
    done
    return 1
}

# alive PID: running (a zombie whose parent has not reaped it is not)
alive() {
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

stop_pid() {   # stop_pid PIDFILE: TERM, then KILL after 10 s
    local f=$dir/$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for "! alive $pid" || kill -KILL "$pid" 2>/dev/null || true
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
        -e "s|@SOCK@|$sock|g" -e "s|@WSPORT@|$ws_port|g" -e "s|@USER@|$user|g" -e "s|@NOFILE@|$nofile|g" \
        "$root/conf/nginx/nginx-run.conf.in" > "$dir/nginx/nginx.conf"
}

start_fcgi() {
    # shellcheck disable=SC2086
    ${FCGI_WRAP:-} "$bin/chat-fcgi" --db "$db" --listen "$sock" ${FCGI_FLAGS:-} >>"$dir/logs/chat-fcgi.log" 2>&1 </dev/null &
    echo $! > "$dir/chat-fcgi.pid"
    wait_for "[ -S '$sock' ]" || wait_for "[ -S '$sock' ]" || { echo "chat-fcgi did not start; see $dir/logs/chat-fcgi.log" >&2; tail -5 "$dir/logs/chat-fcgi.log" >&2; return 1; }
}

start_ws() {
    # shellcheck disable=SC2086
    ${WS_WRAP:-} "$bin/chat-ws" --db "$db" --listen "127.0.0.1:$ws_port" ${WS_FLAGS:-} >>"$dir/logs/chat-ws.log" 2>&1 </dev/null &
    echo $! > "$dir/chat-ws.pid"
    wait_for "grep -q listening '$dir/logs/chat-ws.log'" || wait_for "grep -q listening '$dir/logs/chat-ws.log'" || { echo "chat-ws did not start; see $dir/logs/chat-ws.log" >&2; tail -5 "$dir/logs/chat-ws.log" >&2; return 1; }
}

start_nginx() {
    "$nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/logs/nginx-error.log" >>"$dir/logs/nginx-error.log" 2>&1 </dev/null &
    echo $! > "$dir/nginx.run.pid"
    wait_for "curl -s -o /dev/null http://127.0.0.1:$port/healthz" || { echo "nginx did not start; see $dir/logs/nginx-error.log" >&2; tail -5 "$dir/logs/nginx-error.log" >&2; return 1; }
}

start() {
    write_nginx_conf
    start_fcgi
    start_ws
    start_nginx
}

stop() {
    stop_pid nginx.run.pid
    stop_pid chat-ws.pid
    stop_pid chat-fcgi.pid
}

case $cmd in
start) start ;;
stop)  stop ;;
run)
    trap 'echo; echo "stopping"; stop; exit 0' INT TERM
    start || { stop; exit 1; }
    echo "chat is running on http://127.0.0.1:$port/  (database $db; logs in $dir/logs)"
    echo "Ctrl-C stops it."
    tail -n 0 -F "$dir/logs/chat-fcgi.log" "$dir/logs/chat-ws.log" "$dir/logs/nginx-error.log" &
    tail_pid=$!
    trap 'echo; echo "stopping"; kill $tail_pid 2>/dev/null; stop; exit 0' INT TERM
    wait "$(cat "$dir/chat-fcgi.pid")" || true
    kill $tail_pid 2>/dev/null || true
    stop
    ;;
*) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
