#!/usr/bin/env bash
# emulator-semantics.sh - the emulator behaves like EBS: lineage, changed
# blocks, ClientToken idempotency, Timeout, token expiry and binding, pages,
# validation, fault injection, latency, rate limiting, counters, import/export,
# a 16 TiB synthetic snapshot, session tokens, and data that survives a restart.
# Driven by botocore (tests/emulator/test_semantics.py); skips without it.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

requires timeout
"$PYTHON3" -c 'import botocore' 2>/dev/null || skip "botocore is not importable by $PYTHON3"
start_emulator --quiet --credentials 'AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' \
  --credentials ASIATEST:sekrit:tok3n
suite="$top_srcdir/tests/emulator/test_semantics.py"
timeout 300 "$PYTHON3" "$suite" || fail "semantics suite"

# Persistence: what was written (and a pending snapshot) survives a restart.
timeout 30 "$PYTHON3" "$suite" prepare "$EMU_TMP/state.json" || fail "prepare"
restart_emulator --quiet
timeout 30 "$PYTHON3" "$suite" verify "$EMU_TMP/state.json" || fail "verify after restart"
echo "PASS: emulator semantics"
