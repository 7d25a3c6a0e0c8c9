#!/usr/bin/env bash
# readme.sh - runs the curl and sqlite3 examples of README.md against a real
# stack, so the documentation cannot drift from the program: every example
# aimed at `make run` (port 8080, var/chat.db) must run and exit 0, and the
# follow-a-room loop must print every message sent while it runs.
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }
cd "$ROOT" || exit 1

# The shell blocks of the README, continuation lines joined, one command a line.
python3 - "$ROOT/README.md" > "$TMP/examples" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r"```sh\n(.*?)```", text, re.S):
    if "while :" in block:
        continue                       # the follow loop: run on its own below
    for cmd in block.replace("\\\n", " ").splitlines():
        cmd = cmd.strip()
        if re.match(r"^(curl|sqlite3|uptime)\b", cmd) and ("127.0.0.1:8080" in cmd or "var/chat.db" in cmd):
            print(cmd)
PY
count=$(wc -l < "$TMP/examples")
check_true "the README has curl and sqlite3 examples ($count)" test "$count" -ge 15
n=0
while IFS= read -r cmd; do
    n=$((n + 1))
    real=${cmd//http:\/\/127.0.0.1:8080/$BASE}
    real=${real//var\/chat.db/$DB}
    case $cmd in
        # A stream never ends by itself (Ctrl-C in the README): read it for a while.
        "curl -N "*) out=$(timeout 2 bash -c "$real" 2>&1); rc=$?
                     if [ $rc = 124 ] && [[ $out == *"event: ready"* ]]; then rc=0; fi ;;
        *) out=$(bash -c "$real" 2>&1); rc=$? ;;
    esac
    if [ $rc = 0 ] && [ -n "$out" ] || { [ $rc = 0 ] && [[ $cmd == sqlite3*insert* ]]; }; then
        pass "README example $n runs: ${cmd:0:60}"
    else
        fail "README example $n runs: ${cmd:0:60}" "exit $rc: ${out:0:200}"
    fi
    case $cmd in
        *wait=30*) ;;
        curl*) case $out in *'"error"'*) [[ $cmd == *a%01b* || $cmd == *"/ws?room=bad%20room"* ]] || fail "README example $n: no error" "$out" ;; esac ;;
    esac
done < "$TMP/examples"

# The follow loop prints every message sent while it runs, once
loop=$(python3 -c '
import re, sys
text = open(sys.argv[1]).read()
print(next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "while :" in b))' README.md)
loop=${loop//http:\/\/127.0.0.1:8080/$BASE}
loop=${loop//wait=55/wait=2}
timeout 6 bash -c "$loop" > "$TMP/follow.out" 2>&1 &
fpid=$!
sleep 0.5
for i in 1 2 3 4 5; do curl -s -o /dev/null "$BASE/send/msg?text=followed+$i&user=f&room=dev"; sleep 0.3; done
sleep 1
kill $fpid 2>/dev/null; wait $fpid 2>/dev/null
for i in 1 2 3 4 5; do
    check "the follow loop printed message $i once" 1 "$(grep -c "^f: followed $i\$" "$TMP/follow.out")"
done

finish
