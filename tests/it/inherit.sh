#!/usr/bin/env bash
# inherit.sh - chat-fcgi on a socket it inherited, as systemd passes it
# (LISTEN_FDS=1, fd 3) and as spawn-fcgi does (fd 0): the socket belongs to
# its holder, so a stop leaves it working and a restart on it loses no
# connection attempt (SPEC section 7). tests/it/fcgi_raw.py is the holder.
. "$(dirname "$0")/../lib.sh"
FCGI=$BIN_DIR/chat-fcgi
mkdir -p "$TMP/run/logs"

for mode in fd3 fd0; do
    run_checks python3 "$ROOT/tests/it/fcgi_raw.py" inherit "$mode" "$FCGI" "$TMP/run/chat.db" \
        "$TMP/run/logs/chat-fcgi.log" "$TMP/run"
done
check "integrity_check" ok "$(sqlite3 "$TMP/run/chat.db" 'pragma integrity_check')"
finish
