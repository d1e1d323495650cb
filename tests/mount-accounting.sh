#!/usr/bin/env bash
# mount-accounting.sh - what reads cost, counted by the emulator: holes cost
# no GetSnapshotBlock, a whole sequential read of N listed blocks costs N
# (readahead never fetches a block twice or a hole at all), re-reading
# cached data costs nothing, and concurrent readers of one block share one
# request.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd
start_emulator --quiet

B=$((512 * 1024))
src="$EMU_TMP/source.img"
# 1 GiB = 2048 blocks; data in blocks 0-7, 100, 1000-1015: 25 listed blocks.
"$PYTHON3" - "$src" <<'PY' || fail "make the source"
import random, sys
B = 512 * 1024
rnd = random.Random(3)
with open(sys.argv[1], "wb") as f:
    f.truncate(2048 * B)
    for b in list(range(0, 8)) + [100] + list(range(1000, 1016)):
        f.seek(b * B)
        f.write(rnd.randbytes(B))
PY
snap=$(emu_import "$src") || fail "import"
NLISTED=25

gets() { emu_counter GetSnapshotBlock; }

# Counted from the mount on: the mount itself queues the volume's first
# 8 MiB (blocks 0-15, of which 0-7 are listed here).
emu_reset_counters
mnt=$(mount_dir mnt)
start_ebsfs "$mnt" "$snap"
img="$mnt/$snap"

# Holes: the last 900 blocks, far from any data even with readahead.
dd if="$img" of=/dev/null bs=1M skip=$((1148 / 2)) iflag=direct status=none || fail "dd holes"
dd if="$img" of=/dev/null bs=1M skip=$((1148 / 2)) status=none || fail "dd holes (buffered)"
n=$(gets); [ "$n" -le 8 ] || fail "reading holes cost $((n - 8)) GetSnapshotBlock or more"

# The whole image, sequentially: each listed block exactly once since the
# mount (so the holes above cost none either).
dd if="$img" bs=1M status=none | cmp - "$src" || fail "whole image differs"
n=$(gets); [ "$n" -eq "$NLISTED" ] || fail "mount and sequential read of $NLISTED listed blocks cost $n GetSnapshotBlock"

# Again, bypassing the page cache (O_DIRECT): served from ebsfs's block cache.
emu_reset_counters
dd if="$img" bs=1M iflag=direct status=none | cmp - "$src" || fail "re-read differs"
n=$(gets); [ "$n" -eq 0 ] || fail "re-reading cached blocks cost $n GetSnapshotBlock"
# And through the page cache (keep_cache): not even a FUSE read.
dd if="$img" bs=1M status=none | cmp - "$src" || fail "buffered re-read differs"
n=$(gets); [ "$n" -eq 0 ] || fail "buffered re-read cost $n GetSnapshotBlock"
stop_ebsfs "$mnt"

# A fresh mount (empty cache) and 16 readers of block 100 at once: one fetch.
emu_config '{"latency_ms": 200}'
mnt2=$(mount_dir mnt2)
start_ebsfs "$mnt2" "$snap"
# The mount queues the head (blocks 0-7 here) before the image appears, but
# under load those GETs can reach the emulator after it does: let them land
# before counting, or they are taken for the readers' (CI once saw 8).
gets_settle
emu_reset_counters
pids=()
for i in $(seq 16); do
  dd if="$mnt2/$snap" of="$EMU_TMP/r$i" bs=4096 count=1 skip=$((100 * B / 4096 + i)) \
    iflag=direct status=none &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent reader failed"; done
for i in $(seq 16); do
  cmp "$EMU_TMP/r$i" <(dd if="$src" bs=4096 count=1 skip=$((100 * B / 4096 + i)) status=none) ||
    fail "concurrent reader $i got wrong bytes"
done
n=$(gets)
if [ "$n" -ne 1 ]; then
  # Retries and late head blocks look alike in the count: say which it was.
  emu_admin GET /counters >&2
  tail -n 20 "$EBSFS_LOG" >&2
  fail "16 concurrent readers of one block cost $n GetSnapshotBlock"
fi
stop_ebsfs "$mnt2"
