#!/usr/bin/env bash
# mount-priority.sh - a reader never waits behind prefetches (http.h):
# - a read of a block nobody fetches yet goes out before the prefetches
#   queued ahead of it (the volume's head, queued at mount);
# - a read of a block that a prefetch has queued but not sent yet makes that
#   request go out next.
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

# And the bytes are the snapshot's.
emu_export "$snap" "$ref" --size $((1001 * blk)) >/dev/null || fail "export"
cmp <(dd if="$ref" bs=4096 count=1 skip=$((1000 * blk / 4096)) status=none) "$EMU_TMP/far" \
  || fail "block 1000 differs"
cmp <(dd if="$ref" bs=4096 count=1 skip=$((15 * blk / 4096)) status=none) "$EMU_TMP/b15" \
  || fail "block 15 differs"
stop_ebsfs "$mnt"
echo "PASS: readers go before prefetches"
