#!/usr/bin/env bash
# run.sh - every benchmark, as `make bench` runs them (never part of make test).
# Installs what the load clients need (wrk, Nchan, Node with the ws package), then
# prints the figures the README's tables come from. BIN_DIR as for make.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

need=""
command -v wrk >/dev/null || need="$need wrk"
command -v npm >/dev/null || need="$need nodejs npm"
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || need="$need libnginx-mod-nchan"
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || { echo "missing:$need; run as root: apt-get install -y$need"; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
# Node and the ws package only for the older clients (`nchan.py --client node`,
# and the comparison of client designs below).
[ -d "$here/node_modules/ws" ] || (cd "$here" && npm install --no-audit --no-fund --silent)

# Side by side with Nchan: W0-W8, the README's main table (about 15 minutes)
python3 "$here/nchan.py"
# The load client measures the server: Nchan's W3 and W4 from several client
# designs, with each client's CPU (about 2 minutes)
python3 "$here/nchan.py" --check-clients

# Details: wake-up and probe rate with 1,000 long-polls held; WebSocket
# memory split between nginx and chat-ws
python3 "$here/wakeup.py" 200
python3 "$here/ws_fanout.py" 1000 20 10

# Two nodes on one PostgreSQL beside one node on SQLite (about 8 minutes)
python3 "$here/cluster.py"

# Send throughput, each durability setting
for sync in normal full; do
    # Two free ports, each asked of the system (the one after a free port may be taken).
    read -r port ws_port < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    state=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench-send.XXXXXX")
    PORT=$port WS_PORT=$ws_port FCGI_FLAGS="--sync $sync" conf/stack.sh start "$state"
    echo "send throughput, --sync $sync (wrk -t2 -c16 -d8s GET /send/msg):"
    wrk -t2 -c16 -d8s "http://127.0.0.1:$port/send/msg?text=hello+world" | grep -E 'Latency|Requests/sec|Non-2xx' | sed 's/^/  /'
    conf/stack.sh stop "$state"
    rm -rf "$state"
done
