#!/usr/bin/env bash
# faults.sh - SIGKILL of chat-fcgi and chat-ws, nginx reload and restart, a
# database locked past the busy timeout, all while messages flow on every
# transport; every acknowledged message must be stored once and reach every
# subscriber once, in order (tests/it/faults.py).
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }
run_checks /usr/bin/python3 "$ROOT/tests/it/faults.py" "$BASE" "$STACK_DIR" "$BIN_DIR"

# A full filesystem: the database on a small tmpfs, filled, then freed
mnt=$TMP/fs
mkdir -p "$mnt"
if mount -t tmpfs -o size=4m tmpfs "$mnt" 2>/dev/null; then
    DB=$mnt/chat.db; stack_up full || { umount "$mnt"; finish; exit 1; }
    curl -s -o /dev/null "$BASE/send/msg?text=before"
    dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null
    big=$(head -c 3000 /dev/zero | tr '\0' f)
    : > "$TMP/full.codes"
    for i in $(seq 1 60); do
        curl -s -o "$TMP/full.body" -D "$TMP/full.head" -w '%{http_code}\n' "$BASE/send/msg?text=full$i+$big" >> "$TMP/full.codes"
        grep -q '^HTTP/1.1 503' "$TMP/full.head" && cp "$TMP/full.body" "$TMP/full.503" && cp "$TMP/full.head" "$TMP/full.503head"
    done
    check_true "a full disk: sends are refused" grep -q '^503$' "$TMP/full.codes"
    check "never a 500 or another status" "" "$(grep -v -E '^(200|503)$' "$TMP/full.codes" | sort -u | tr '\n' ' ')"
    check "the refusal is JSON" true "$(jq -r '.error | length > 0' "$TMP/full.503" 2>/dev/null)"
    check_true "with Retry-After" grep -qi '^retry-after: 1' "$TMP/full.503head"
    rm -f "$mnt/filler"
    req "$BASE/send/msg?text=after+freeing"
    check "space freed: sends are stored again" 200 "$STATUS"
    check "every 200 was stored once" "$(( $(grep -c '^200$' "$TMP/full.codes") + 2 ))" "$(rows "where text like 'full%' or text in ('before', 'after freeing')")"
    check "integrity_check after a full disk" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
    "$ROOT/conf/stack.sh" stop "$TMP/full" >/dev/null 2>&1
    umount "$mnt"
else
    echo "  (no tmpfs mount here: the full-disk case is skipped)"
fi
finish
