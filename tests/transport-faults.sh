#!/usr/bin/env bash
# transport-faults.sh - the transport under fire.  Injected 5xx, throttles,
# connection resets, short and corrupted bodies are retried until the data
# is right (and the counters show the retries); AccessDenied and validation
# errors are not retried and come back with the service's Message and
# Reason; a stalled server hits the stall timeout instead of hanging; a
# server-side rate limit is met by slowing down; and a run with more than
# 100 requests in flight against a 50 ms server completes.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

TOOL="$top_builddir/src/ebs_tool"
[ -x "$TOOL" ] || fail "$TOOL is not built"
start_emulator --quiet
T="$EMU_TMP/t"
mkdir -p "$T"

syn=$(emu_synth --size-gib 1 --every 8 --seed 3) || fail "emu_synth"     # 256 blocks
emu_export "$syn" "$T/expected" || fail "export"
stat_of() { sed -n "s/.*stats .*\b$1=\([0-9]*\).*/\1/p" "$2"; }

# read_under FAULTS NAME: read every block with those faults on; the image must
# be exactly right and the client must have retried.
read_under() {
  emu_faults "$1"
  emu_reset_counters
  # 20 attempts: at a 40% fault rate, 8 attempts would still lose one of
  # 256 blocks in ~10% of runs (0.4^8 x 256); 0.4^20 x 256 is ~3e-6.
  "$TOOL" --in-flight 16 --max-attempts 20 --stats read "$syn" "$T/img" 2>"$T/$2.err" ||
    { cat "$T/$2.err"; fail "$2: read failed"; }
  emu_clear_faults
  cmp -s "$T/img" "$T/expected" || fail "$2: the image read under faults is wrong"
  local retries gets
  retries=$(stat_of retries "$T/$2.err")
  gets=$(emu_counter GetSnapshotBlock)
  [ "$retries" -gt 0 ] || fail "$2: no retries counted ($(grep stats "$T/$2.err"))"
  # Every request the client counted reached the server, list included.
  [ "$(stat_of requests "$T/$2.err")" -eq "$(( gets + $(emu_counter ListSnapshotBlocks) ))" ] ||
    fail "$2: client counted $(stat_of requests "$T/$2.err") requests, server saw $gets GETs"
  echo "$2: OK, $retries retries for 256 blocks"
}

read_under '[{"op":"GetSnapshotBlock","kind":"503","probability":0.3},
             {"op":"GetSnapshotBlock","kind":"500","probability":0.1},
             {"op":"ListSnapshotBlocks","kind":"503","count":2}]' 5xx
read_under '[{"op":"GetSnapshotBlock","kind":"throttle","probability":0.3},
             {"op":"GetSnapshotBlock","kind":"throttling","probability":0.1}]' throttle
[ "$(stat_of throttles "$T/throttle.err")" -gt 0 ] || fail "throttles not counted"
read_under '[{"op":"GetSnapshotBlock","kind":"reset","probability":0.15},
             {"op":"GetSnapshotBlock","kind":"short","probability":0.15}]' reset
read_under '[{"op":"GetSnapshotBlock","kind":"corrupt","probability":0.3}]' corrupt

# ---- final answers are not retried, and say why ------------------------------------
tok=$("$TOOL" list "$syn" | awk '$1=="block" && $2==8 {print $3}')
emu_faults '{"op":"GetSnapshotBlock","kind":"403"}'
emu_reset_counters
"$TOOL" get "$syn" 8 "$tok" "$T/x" 2>"$T/err" && fail "AccessDenied was not an error"
grep -q "AccessDeniedException (UNAUTHORIZED_ACCOUNT): Access denied (injected). \[HTTP 403, request id " "$T/err" ||
  fail "AccessDenied not reported with its message and reason: $(cat "$T/err")"
[ "$(emu_counter GetSnapshotBlock)" = 1 ] || fail "AccessDenied was retried"
emu_faults '{"op":"GetSnapshotBlock","kind":"error","status":400,"code":"ValidationException","reason":"INVALID_BLOCK_TOKEN","message":"Token expired (injected)"}'
emu_reset_counters
"$TOOL" get "$syn" 8 "$tok" "$T/x" 2>"$T/err" && fail "ValidationException was not an error"
grep -q "ValidationException (INVALID_BLOCK_TOKEN): Token expired (injected)" "$T/err" ||
  fail "ValidationException not reported: $(cat "$T/err")"
[ "$(emu_counter GetSnapshotBlock)" = 1 ] || fail "ValidationException was retried"

# ---- a throttle storm that never ends: bounded attempts, then EAGAIN ------------------------
emu_faults '{"op":"GetSnapshotBlock","kind":"throttle"}'
emu_reset_counters
"$TOOL" --max-attempts 4 get "$syn" 8 "$tok" "$T/x" 2>"$T/err" && fail "endless throttling succeeded"
grep -q "RequestThrottledException (ACCOUNT_THROTTLED).*4 attempts" "$T/err" ||
  fail "gave up without saying so: $(cat "$T/err")"
[ "$(emu_counter GetSnapshotBlock)" = 4 ] || fail "expected 4 attempts, server saw $(emu_counter GetSnapshotBlock)"
# The retry budget bounds the time as well as the attempts.
start=$(date +%s)
"$TOOL" --max-attempts 100 --retry-budget-ms 3000 get "$syn" 8 "$tok" "$T/x" 2>"$T/err" &&
  fail "endless throttling succeeded"
[ $(( $(date +%s) - start )) -le 20 ] || fail "the retry budget of 3 s did not bound the retries"
emu_clear_faults

# ---- a stalled server times out instead of hanging ------------------------------------------
emu_config '{"stall_s": 120}'
emu_faults '{"op":"GetSnapshotBlock","kind":"stall"}'
emu_reset_counters
start=$(date +%s)
timeout 100 "$TOOL" --stall-timeout-ms 2000 --max-attempts 2 get "$syn" 8 "$tok" "$T/x" 2>"$T/err"
rc=$?
[ $rc -ne 124 ] || fail "the client hung on a stalled server"
[ $rc -eq 1 ] || fail "stalled: exit $rc: $(cat "$T/err")"
grep -qi "timed out" "$T/err" || fail "stall not reported as a timeout: $(cat "$T/err")"
[ "$(emu_counter GetSnapshotBlock)" = 2 ] || fail "a stall should be retried once here"
[ $(( $(date +%s) - start )) -le 60 ] || fail "the stall timeout took far too long"
# One stall then normal service: the retry gets the block.
emu_faults '{"op":"GetSnapshotBlock","kind":"stall","count":1}'
"$TOOL" --stall-timeout-ms 2000 get "$syn" 8 "$tok" "$T/x" 2>"$T/err" || fail "no recovery after a stall: $(cat "$T/err")"
cmp -s "$T/x" <(dd if="$T/expected" bs=524288 skip=8 count=1 2>/dev/null) || fail "block after a stall is wrong"
emu_clear_faults
emu_config '{"stall_s": 60}'

# ---- connection refused: bounded, typed -------------------------------------------------------
"$TOOL" --endpoint http://127.0.0.1:1 --max-attempts 2 list "$syn" 2>"$T/err" && fail "port 1 answered"
grep -q "Connection refused\|connect" "$T/err" || fail "refused connection not reported: $(cat "$T/err")"

# ---- the server's rate limit: throttled, the client slows down, everything arrives -------
emu_config '{"rate_limit": 40}'
emu_reset_counters
"$TOOL" --in-flight 64 --rate 1000 --stats read "$syn" "$T/img" 2>"$T/rl.err" ||
  { cat "$T/rl.err"; fail "read against a rate-limited server"; }
cmp -s "$T/img" "$T/expected" || fail "rate-limited read is wrong"
echo "rate limit 40/s: server throttled $(emu_admin GET /counters | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["throttled"])') requests, $(grep '^read' "$T/rl.err")"
[ "$(stat_of throttles "$T/rl.err")" -gt 0 ] || fail "the emulator's limit was never hit"
emu_config '{"rate_limit": 1000}'

# ---- 100+ requests in flight against a 50 ms server ------------------------------------------
full=$(emu_synth --size-gib 1 --every 2 --seed 9) || fail "emu_synth"     # 1024 blocks
emu_config '{"latency_ms": 50}'
emu_reset_counters
"$TOOL" --in-flight 128 --stats read "$full" "$T/full" 2>"$T/full.err" ||
  { cat "$T/full.err"; fail "128-in-flight read"; }
emu_config '{"latency_ms": 0}'
emu_export "$full" "$T/full.expected" || fail "export"
cmp -s "$T/full" "$T/full.expected" || fail "128-in-flight read is wrong"
[ "$(emu_counter GetSnapshotBlock)" -ge 1024 ] || fail "not every block was fetched"
echo "128 in flight, 50 ms latency: $(grep '^read' "$T/full.err"); $(grep stats "$T/full.err")"
echo "transport-faults: OK"
