#!/usr/bin/env bash
# transport-ops.sh - all six EBS operations through the C client (ebs_tool)
# against the emulator: paged listing with NextToken, GetSnapshotBlock with
# its checksum, async reads of a whole snapshot, start/put/complete with the
# LINEAR checksum then reading it back, ListChangedBlocks across a lineage,
# and service errors reported with their Message and Reason, unretried.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

TOOL="$top_builddir/src/ebs_tool"
[ -x "$TOOL" ] || fail "$TOOL is not built"
start_emulator --quiet
T="$EMU_TMP/t"
mkdir -p "$T"

# ---- ListSnapshotBlocks: pages of 100 with NextToken ------------------------------
syn=$(emu_synth --size-gib 1 --every 3 --seed 7) || fail "emu_synth"
"$TOOL" list "$syn" --all --max-results 100 >"$T/list" || fail "list --all"
grep -qx "pages 7" "$T/list" || fail "expected 7 pages of 100: $(grep pages "$T/list")"
grep -qx "blocks 683" "$T/list" || fail "expected 683 blocks: $(grep '^blocks' "$T/list")"
grep -qx "volume-size 1" "$T/list" || fail "volume size"
grep -qx "block-size 524288" "$T/list" || fail "block size"
awk '$1=="block" && $2 % 3 != 0 {bad=1} END {exit bad}' "$T/list" || fail "unexpected block index"
[ "$(awk '$1=="block" {print $2}' "$T/list" | sort -n | uniq | wc -l)" = 683 ] || fail "duplicate blocks across pages"
emu_reset_counters
# One page at a time: the printed NextToken (base64 with + / =) gets the next page.
"$TOOL" list "$syn" --max-results 100 >"$T/p1" || fail "list page 1"
next=$(awk '$1=="next" {print $2}' "$T/p1")
[ -n "$next" ] || fail "page 1 has no NextToken"
"$TOOL" list "$syn" --max-results 100 --page-token "$next" >"$T/p2" || fail "list with pageToken"
[ "$(awk '$1=="block" {print $2; exit}' "$T/p2")" = 300 ] || fail "page 2 does not start at block 300"
"$TOOL" list "$syn" --max-results 100 --start 1500 >"$T/p3" || fail "list with startingBlockIndex"
[ "$(awk '$1=="block" {print $2; exit}' "$T/p3")" = 1500 ] || fail "startingBlockIndex 1500 not honoured"
[ "$(emu_counter ListSnapshotBlocks)" = 3 ] || fail "3 list calls expected, emulator saw $(emu_counter ListSnapshotBlocks)"

# ---- GetSnapshotBlock: the bytes are the block ------------------------------------------
tok=$(awk '$1=="block" && $2==3 {print $3}' "$T/list")
"$TOOL" get "$syn" 3 "$tok" "$T/b3" || fail "get block 3"
"$PYTHON3" "$EMULATOR" synth-block --seed 7 --index 3 >"$T/b3.expected" || fail "synth-block"
cmp "$T/b3" "$T/b3.expected" || fail "block 3 differs from the emulator's"
# A token for another block is the service's ValidationException, reported, not retried.
emu_reset_counters
"$TOOL" get "$syn" 6 "$tok" "$T/x" 2>"$T/err" && fail "a wrong block token was accepted"
grep -q "ValidationException (INVALID_BLOCK_TOKEN)" "$T/err" || fail "error not typed: $(cat "$T/err")"
[ "$(emu_counter GetSnapshotBlock)" = 1 ] || fail "a ValidationException was retried"

# ---- read: every block, asynchronously, equals the emulator's export ---------------------
emu_reset_counters
"$TOOL" --in-flight 32 --stats read "$syn" "$T/img" 2>"$T/read.err" || { cat "$T/read.err"; fail "read"; }
[ "$(emu_counter GetSnapshotBlock)" = 683 ] || fail "read sent $(emu_counter GetSnapshotBlock) GETs for 683 blocks"
emu_export "$syn" "$T/img.expected" || fail "export"
cmp "$T/img" "$T/img.expected" || fail "async read differs from the export"
grep -q "stats requests=684 retries=0" "$T/read.err" || fail "stats: $(grep stats "$T/read.err")"

# ---- StartSnapshot / PutSnapshotBlock / CompleteSnapshot, then read back --------------------
out=$("$TOOL" start --size 1 --description "transport test" --client-token tok-1) || fail "start"
read -r snap status <<<"$out"
[[ $snap =~ ^snap-[0-9a-f]+$ ]] && [ "$status" = pending ] || fail "start printed '$out'"
# The same ClientToken returns the same snapshot (what a retried StartSnapshot relies on).
[ "$("$TOOL" start --size 1 --description "transport test" --client-token tok-1 | cut -d' ' -f1)" = "$snap" ] ||
  fail "ClientToken idempotency"
head -c 524288 /dev/urandom >"$T/w0"
head -c 524288 /dev/zero >"$T/w5"          # all zeros: written, so sent
head -c 524288 /dev/urandom >"$T/w9"
d0=$("$TOOL" put "$snap" 0 "$T/w0" --progress 10) || fail "put 0"
d5=$("$TOOL" put "$snap" 5 "$T/w5") || fail "put 5"
d9=$("$TOOL" put "$snap" 9 "$T/w9") || fail "put 9"
[ "$d0" = "$(openssl dgst -sha256 -binary "$T/w0" | base64)" ] || fail "put printed the wrong digest"
# A wrong count is refused by the service, reported with its Reason, not retried.
emu_reset_counters
"$TOOL" complete "$snap" 2 "$d0" "$d5" "$d9" 2>"$T/err" && fail "a wrong ChangedBlocksCount was accepted"
grep -q "ValidationException (INVALID_PARAMETER_VALUE)" "$T/err" || fail "not typed: $(cat "$T/err")"
[ "$(emu_counter CompleteSnapshot)" = 1 ] || fail "a ValidationException was retried"
# A wrong LINEAR checksum (digests out of order) is refused too.
"$TOOL" complete "$snap" 3 "$d5" "$d0" "$d9" 2>"$T/err" && fail "a wrong LINEAR checksum was accepted"
[ "$("$TOOL" complete "$snap" 3 "$d0" "$d5" "$d9")" = completed ] || fail "complete"
"$TOOL" list "$snap" >"$T/l" || fail "list the new snapshot"
[ "$(awk '$1=="block" {printf "%s ", $2}' "$T/l")" = "0 5 9 " ] || fail "blocks: $(grep block "$T/l")"
tok9=$(awk '$1=="block" && $2==9 {print $3}' "$T/l")
"$TOOL" get "$snap" 9 "$tok9" "$T/r9" && cmp "$T/r9" "$T/w9" || fail "block 9 read back differs"

# ---- upload (async PUTs + LINEAR) of an image, and read back ------------------------------
head -c $((3 * 524288 + 1000)) /dev/urandom >"$T/up"
out=$("$TOOL" --in-flight 4 upload "$T/up") || fail "upload"
read -r up status <<<"$out"
[ "$status" = completed ] || fail "upload printed '$out'"
emu_export "$up" "$T/up.back" --size $((3 * 524288 + 1000)) || fail "export"
cmp "$T/up" "$T/up.back" || fail "uploaded image differs"

# ---- ListChangedBlocks across a lineage ---------------------------------------------------------
out=$("$TOOL" start --size 1 --parent "$snap") || fail "start child"
child=${out%% *}
"$TOOL" put "$child" 5 "$T/w0" >/dev/null || fail "put child 5"
"$TOOL" put "$child" 12 "$T/w9" >/dev/null || fail "put child 12"
[ "$("$TOOL" complete "$child" 2)" = completed ] || fail "complete child (no checksum)"
"$TOOL" changed "$child" --first "$snap" >"$T/c" || fail "changed"
[ "$(awk '$1=="changed" {printf "%s ", $2}' "$T/c")" = "5 12 " ] || fail "changed: $(cat "$T/c")"
awk '$1=="changed" && $2==5 && ($3=="-" || $4=="-") {exit 1}' "$T/c" || fail "block 5 needs both tokens"
awk '$1=="changed" && $2==12 && ($3!="-" || $4=="-") {exit 1}' "$T/c" || fail "block 12 exists only in the child"
"$TOOL" changed "$child" >"$T/c2" || fail "changed without first"
[ "$(awk '$1=="changed" {printf "%s ", $2}' "$T/c2")" = "0 5 9 12 " ] || fail "changed (all): $(cat "$T/c2")"
# Unrelated snapshots: the service's reason comes through.
"$TOOL" changed "$child" --first "$syn" 2>"$T/err" && fail "unrelated snapshots accepted"
grep -q "UNRELATED_SNAPSHOTS" "$T/err" || fail "not typed: $(cat "$T/err")"
# Paging across empty pages: a big synthetic parent, a child with one late block.
out=$("$TOOL" start --size 1 --parent "$syn") || fail "start child of synth"
c2=${out%% *}
"$TOOL" put "$c2" 2040 "$T/w0" >/dev/null || fail "put"
[ "$("$TOOL" complete "$c2" 1)" = completed ] || fail "complete"
"$TOOL" changed "$c2" --first "$syn" --all --max-results 100 >"$T/c3" || fail "changed --all"
[ "$(awk '$1=="changed" {printf "%s ", $2}' "$T/c3")" = "2040 " ] || fail "changed pages: $(cat "$T/c3")"
[ "$(awk '$1=="pages" {print $2}' "$T/c3")" -gt 1 ] || fail "expected several (empty) pages"

# ---- session credentials: X-Amz-Security-Token is sent and signed -----------------------------
restart_emulator --quiet --credentials "AKIDEXAMPLE:$AWS_SECRET_ACCESS_KEY:FwoGZXIvSessionTok+/="
export AWS_SESSION_TOKEN='FwoGZXIvSessionTok+/='
"$TOOL" list "$snap" >"$T/l2" 2>"$T/err" || fail "list with a session token: $(cat "$T/err")"
[ "$(awk '$1=="block" {printf "%s ", $2}' "$T/l2")" = "0 5 9 " ] || fail "session-token list"
AWS_SESSION_TOKEN='WrongSessionTokenValue' "$TOOL" list "$snap" 2>"$T/err.tok" && fail "a wrong session token was accepted"
grep -q "UnrecognizedClientException" "$T/err.tok" || fail "wrong token not typed: $(cat "$T/err.tok")"
! grep -qF -e WrongSessionTokenValue -e "$AWS_SESSION_TOKEN" "$T/err.tok" || fail "a session token leaked into an error"
unset AWS_SESSION_TOKEN

# ---- nothing secret in any output ------------------------------------------------------------
! grep -rqF -e "$AWS_SECRET_ACCESS_KEY" "$T" || fail "the secret key leaked into output"
echo "transport-ops: all six operations OK"
