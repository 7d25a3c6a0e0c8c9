#!/usr/bin/env bash
# e2e.sh - the page in headless Chromium (Debian's chromium, driven by
# playwright-core from npm) on every transport; screenshots land in
# tests/e2e/artifacts/.
. "$(dirname "$0")/../lib.sh"
E2E=$ROOT/tests/e2e

if [ ! -d "$E2E/node_modules/playwright-core" ]; then
    (cd "$E2E" && npm install --no-audit --no-fund --silent) || { fail "npm install playwright-core"; finish; exit 1; }
fi
# A second stack whose chat-ws refuses the page's Origin: the page must stop and say why.
DB="" WS_FLAGS="--origin http://elsewhere.example" stack_up refused || { finish; exit 1; }
REFUSED_BASE=$BASE
DB=""
stack_up main || { finish; exit 1; }
run_checks node "$E2E/e2e.js" "$BASE" "$DB" "$STACK_DIR" "$BIN_DIR" "$E2E/artifacts" "$REFUSED_BASE"
finish
