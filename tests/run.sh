#!/usr/bin/env bash
# run.sh - every test suite; the last line is "N passed, N failed" over all
# of them, and the exit status is non-zero on any failure.
#
#   BIN_DIR=build/release tests/run.sh [SUITE...]   (default: all suites)
# Suites: unit (cmocka), tests/it/*.sh against a real nginx, fuzz (libFuzzer
# targets, briefly), then e2e (the page in headless Chromium).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-build/release}
case $BIN_DIR in /*) ;; *) BIN_DIR=$ROOT/$BIN_DIR ;; esac
export BIN_DIR
# Sanitizer builds: stop at the first report, and say where it came from.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(unit $(cd "$ROOT/tests/it" && ls *.sh | sed 's/\.sh$//') fuzz e2e)

for suite in "${suites[@]}"; do
    echo "== $suite"
    if [ "$suite" = unit ]; then
        out=$("$BIN_DIR/test_unit" 2>&1)
        rc=$?
        p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p')
        f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p')
        p=${p:-0}; f=${f:-0}
        [ $rc -ne 0 ] && [ "$f" = 0 ] && f=1
        [ "$f" != 0 ] && printf '%s\n' "$out" | grep -E 'FAIL|ERROR|error' | head -20
        echo "unit: $p passed, $f failed"
    else
        script=$ROOT/tests/it/$suite.sh
        [ "$suite" = e2e ] && script=$ROOT/tests/e2e/e2e.sh
        [ "$suite" = fuzz ] && script=$ROOT/tests/fuzz/fuzz.sh
        out=$("$script" 2>&1)
        rc=$?
        printf '%s\n' "$out" | grep -v -E '^[a-z0-9_-]+: [0-9]+ passed, [0-9]+ failed$'
        line=$(printf '%s\n' "$out" | grep -E '^[a-z0-9_-]+: [0-9]+ passed, [0-9]+ failed$' | tail -1)
        p=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed.*/\1/p')
        f=$(printf '%s' "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
        p=${p:-0}; f=${f:-0}
        if [ -z "$line" ] || { [ $rc -ne 0 ] && [ "$f" = 0 ]; }; then
            echo "$suite: ended without its count (exit $rc)"
            f=$((f + 1))
        fi
        echo "$suite: $p passed, $f failed"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
