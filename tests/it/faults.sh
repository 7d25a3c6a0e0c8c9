#!/usr/bin/env bash
# faults.sh - SIGKILL of chat-fcgi and chat-ws, nginx reload and restart, a
# database locked past the busy timeout, all while messages flow on every
# transport; every acknowledged message must be stored once and reach every
# subscriber once, in order (tests/it/faults.py).
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }
run_checks /usr/bin/python3 "$ROOT/tests/it/faults.py" "$BASE" "$STACK_DIR" "$BIN_DIR"
finish
