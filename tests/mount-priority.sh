#!/usr/bin/env bash
# mount-priority.sh - a reader never waits behind prefetches (http.h):
# - a read of a block nobody fetches yet goes out before the prefetches
#   queued ahead of it (the volume's head, queued at mount);
# - a read of a block that a prefetch has queued but not sent yet makes that
#   request go out next;
# - unmounting cancels the prefetches still waiting for their turn;
# - with max_requests=4, prefetches leave a slot to readers, and unmounting
#   cancels the prefetches still waiting for an answer.
# Paced at 2 requests/s, the head's 16 blocks take 7.5 s to go out; the
# emulator's counter says how many went before each read was answered
# (17 and 16 without priority).  Requests counted, not time.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd cmp
start_emulator --quiet

snap=$(emu_synth --size-gib 1 --every 1) || fail "emu_synth"
mnt=$(mount_dir mnt)
img="$mnt/$snap"
ref="$EMU_TMP/ref"
blk=$((512 * 1024))

start_ebsfs "$mnt" -o "endpoint=$EMU_URL,rate_limit=2,fs_prefetch=off" "$snap"

# An unrelated block, far from the head: one GET, ahead of the head's.
dd if="$img" of="$EMU_TMP/far" bs=4096 count=1 skip=$((1000 * blk / 4096)) status=none \
  || fail "read block 1000"
gets=$(emu_counter GetSnapshotBlock)
echo "block 1000 answered after $gets GetSnapshotBlock"
[ "$gets" -le 5 ] || fail "block 1000 waited behind the head's prefetches ($gets GETs before it)"

# A block of the head, queued at mount and not sent yet: promoted.
dd if="$img" of="$EMU_TMP/b15" bs=4096 count=1 skip=$((15 * blk / 4096)) status=none \
  || fail "read block 15"
gets=$(emu_counter GetSnapshotBlock)
echo "block 15 answered after $gets GetSnapshotBlock"
[ "$gets" -le 7 ] || fail "block 15 waited for its turn among the head's ($gets GETs)"

# Unmounting cancels the head's prefetches still waiting for their turn:
# waiting for them would take all 16 (17 GETs with block 1000's).
stop_ebsfs "$mnt"
gets=$(emu_counter GetSnapshotBlock)
echo "$gets GetSnapshotBlock when ebsfs had exited"
[ "$gets" -lt 17 ] || fail "ebsfs sent every queued prefetch before exiting ($gets GETs)"

# And the bytes are the snapshot's.
emu_export "$snap" "$ref" --size $((1001 * blk)) >/dev/null || fail "export"
cmp <(dd if="$ref" bs=4096 count=1 skip=$((1000 * blk / 4096)) status=none) "$EMU_TMP/far" \
  || fail "block 1000 differs"
cmp <(dd if="$ref" bs=4096 count=1 skip=$((15 * blk / 4096)) status=none) "$EMU_TMP/b15" \
  || fail "block 15 differs"

# With few slots, prefetches still leave one to readers.  max_requests=4 and
# the head's blocks held 60 s by the emulator: the prefetches may take 3
# slots, so a far block is answered at once (it would wait the 60 s for a
# slot were all 4 theirs).  And the unmount cancels them: stop_ebsfs fails
# if ebsfs still runs 20 s after it (waiting would take 60 s per wave).
rules=$("$PYTHON3" -c 'import json; print(json.dumps([{"op": "GetSnapshotBlock",
  "kind": "delay", "delay_ms": 60000, "block_index": i} for i in range(16)]))')
emu_faults "$rules" || fail "emu_faults"
start_ebsfs "$mnt" -o "endpoint=$EMU_URL,max_requests=4,fs_prefetch=off" "$snap"
wait_held=0
for _ in $(seq 100); do
  [ "$(emu_counter GetSnapshotBlock)" -ge 3 ] && { wait_held=1; break; }
  sleep 0.1
done
[ "$wait_held" = 1 ] || fail "the head's prefetches did not start"
timeout 10 dd if="$img" of="$EMU_TMP/far2" bs=4096 count=1 skip=$((2000 * blk / 4096)) \
  status=none || fail "block 2000 waited for a slot held by a prefetch (max_requests=4)"
emu_export "$snap" "$ref" --size $((2001 * blk)) >/dev/null || fail "export"
cmp <(dd if="$ref" bs=4096 count=1 skip=$((2000 * blk / 4096)) status=none) "$EMU_TMP/far2" \
  || fail "block 2000 differs"
echo "block 2000 answered while 3 prefetches were held"
emu_clear_faults
stop_ebsfs "$mnt"
echo "ebsfs exited with 3 prefetches still held by the emulator"
echo "PASS: readers go before prefetches"
