#!/usr/bin/env bash
# emulator-helpers.sh - the shell helpers every integration test relies on
# (tests/functions.sh) do what they say: skips exit 77, on_exit runs last-first,
# start_emulator sets up an AWS environment that reaches the emulator, the
# CLI works on the data dir while the server runs, and the admin helpers
# change, read and reset what they claim.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

# Skips and the cleanup chain, in subshells.
( requires no-such-command-ebsfs ) 2>/dev/null; [ $? -eq 77 ] || fail "requires did not skip"
out=$(bash -c ". '$top_srcdir/tests/functions.sh'; on_exit 'echo first'; on_exit 'echo second'; exit 3")
[ $? -eq 3 ] || fail "on_exit changed the exit status"
[ "$(echo $out)" = "second first" ] || fail "on_exit order: $out"

start_emulator
for v in EMU_URL EMU_ADMIN_URL EMU_DATA_DIR EMU_PID AWS_ENDPOINT_URL_EBS AWS_REGION; do
  [ -n "${!v:-}" ] || fail "$v is not set"
done
[ -z "${AWS_SESSION_TOKEN:-}" ] && [ -z "${AWS_PROFILE:-}" ] || fail "AWS_SESSION_TOKEN/AWS_PROFILE left set"
[ "$(emu_admin GET /health | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["ok"])')" = True ] ||
  fail "admin /health"

# Import while the server runs; the server serves it; export round-trips.
head -c 1500000 /dev/urandom >"$EMU_TMP/img"
sid=$(emu_import "$EMU_TMP/img") || fail "emu_import"
[[ $sid =~ ^snap-[0-9a-f]+$ ]] || fail "emu_import printed '$sid'"
emu_admin GET /snapshots | grep -q "\"$sid\"" || fail "server does not see the imported snapshot"
emu_export "$sid" "$EMU_TMP/out" --size 1500000 || fail "emu_export"
cmp "$EMU_TMP/img" "$EMU_TMP/out" || fail "export differs from import"
syn=$(emu_synth --size-gib 2 --every 4) || fail "emu_synth"
emu list | grep -q "^$syn	completed	2 GiB" || fail "emu list"

# Admin helpers, driven by a signed request made without botocore.
get_list() {
  PYTHONPATH="$top_srcdir/tests/emulator" "$PYTHON3" - "$EMU_URL/snapshots/$1/blocks?maxResults=100" <<'PY'
import os, sys, urllib.error, urllib.request
from ebsemu.sigv4 import sign
url = sys.argv[1]
h = sign("GET", url, {}, b"", os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], "us-east-1")
try:
    urllib.request.urlopen(urllib.request.Request(url, headers=h), timeout=10).read()
    print(200)
except urllib.error.HTTPError as e:
    print(e.code)
PY
}
emu_reset_counters || fail "emu_reset_counters"
[ "$(get_list "$syn")" = 200 ] || fail "signed list request"
[ "$(emu_counter ListSnapshotBlocks)" = 1 ] || fail "counter is not 1"
emu_faults '[{"op": "ListSnapshotBlocks", "kind": "503", "count": 1}]' || fail "emu_faults"
[ "$(get_list "$syn")" = 503 ] || fail "fault did not fire"
[ "$(get_list "$syn")" = 200 ] || fail "count 1 fired twice"
emu_faults '[{"kind": "500"}]'
emu_clear_faults || fail "emu_clear_faults"
[ "$(get_list "$syn")" = 200 ] || fail "faults not cleared"
emu_faults '[{"kind": "no-such-kind"}]' 2>/dev/null && fail "a bad fault rule was accepted"
emu_config '{"latency_ms": 300}' || fail "emu_config"
t0=$(date +%s%N); get_list "$syn" >/dev/null; t1=$(date +%s%N)
[ $(( (t1 - t0) / 1000000 )) -ge 300 ] || fail "latency not applied"
emu_config '{"latency_ms": 0}'
[ "$(emu_counter ListSnapshotBlocks)" = 5 ] || fail "counter is not 5"
emu_reset_counters
[ "$(emu_counter ListSnapshotBlocks)" = 0 ] || fail "counters not reset"

pid=$EMU_PID
stop_emulator
_running "$pid" && fail "stop_emulator left the emulator running"
echo "PASS: emulator shell helpers"
