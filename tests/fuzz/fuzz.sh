#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer targets (clang, ASan+UBSan) and runs each
# from its committed seed corpus for FUZZ_SECONDS (default 15). Any crash,
# leak or sanitizer report fails. `make fuzz` runs them longer.
. "$(dirname "$0")/../lib.sh"
secs=${FUZZ_SECONDS:-15}
make -s -C "$ROOT" fuzz-build >"$TMP/build.log" 2>&1
check "the fuzz targets build" 0 $?
[ -s "$TMP/build.log" ] && tail -5 "$TMP/build.log"
for t in query json ws; do
    mkdir -p "$TMP/corpus-$t"
    # ASan, not libFuzzer's bare "deadly signal", reports an abort or illegal
    # instruction (a failed check, a json-c assert), with its stack.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:handle_abort=1:handle_sigill=1 \
    "$ROOT/build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$TMP/crash-$t-" "$TMP/corpus-$t" "$ROOT/tests/fuzz/corpus/$t" >"$TMP/fuzz-$t.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/fuzz-$t.log")
    check "fuzz_$t: ${runs:-0} inputs in ${secs} s, no crash, leak or sanitizer report" 0 $rc
    if [ $rc != 0 ]; then
        # What failed and on which input, so that a CI log alone is enough to reproduce it.
        # The seed replays the run: fuzz_T -seed=N -runs=INPUTS with the same corpora.
        grep -m8 -E 'INFO: Seed|ERROR|SUMMARY|runtime error|check failed|Assertion|aborts|terminate called|\*\*\*' "$TMP/fuzz-$t.log"
        grep -m12 -E '^ +#[0-9]+ ' "$TMP/fuzz-$t.log"
        for a in "$TMP"/crash-$t-*; do
            [ -f "$a" ] && python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); print("  input (%d bytes): %r" % (len(d), d[:600]))' "$a"
        done
    fi
done
finish
