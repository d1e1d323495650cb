#!/usr/bin/env bash
# mount-faults.sh - the service misbehaves, the data does not: with 5xx,
# throttles, connection resets, short and corrupted bodies injected at
# random, dd still returns exactly the source bytes.  A block that fails
# every time gives EIO to the reads that need it - never wrong data - while
# the rest of the image reads fine, and it reads once the fault is gone.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd cmp
start_emulator --quiet
EBSFS_ALLOW_WARNINGS=1

SIZE=$((1024 * 1024 * 1024))
B=$((512 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" "$SIZE" 11 || fail "make the source image"
snap=$(emu_import "$src") || fail "import"

# Each kind hits its own listed block twice, then lets it through: every
# kind surely fires, and no block needs more than 3 of its attempts.  A
# light random layer on top hits any block now and then.
emu_faults '[
  {"op": "GetSnapshotBlock", "kind": "500", "block_index": 0, "count": 2},
  {"op": "GetSnapshotBlock", "kind": "503", "block_index": 1, "count": 2},
  {"op": "GetSnapshotBlock", "kind": "throttle", "block_index": 2, "count": 2},
  {"op": "GetSnapshotBlock", "kind": "reset", "block_index": 100, "count": 2},
  {"op": "GetSnapshotBlock", "kind": "short", "block_index": 101, "count": 2},
  {"op": "GetSnapshotBlock", "kind": "corrupt", "block_index": 102, "count": 2},
  {"op": "GetSnapshotBlock", "kind": "500", "probability": 0.03},
  {"op": "GetSnapshotBlock", "kind": "corrupt", "probability": 0.03},
  {"op": "ListSnapshotBlocks", "kind": "503", "count": 1, "skip": 1}
]'
mnt=$(mount_dir mnt)
start_ebsfs "$mnt" "$snap"
img="$mnt/$snap"
dd if="$img" bs=1M iflag=direct status=none | cmp - "$src" || fail "dd with faults differs"
# Small random reads too (a different path: no readahead).
"$PYTHON3" - "$img" "$src" <<'PY' || fail "random reads with faults differ"
import os, random, sys
fi, fs = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT), os.open(sys.argv[2], os.O_RDONLY)
rnd = random.Random(4)
size = os.fstat(fs).st_size
for _ in range(300):
    off, n = rnd.randrange(0, size), rnd.choice([1, 4096, 100000])
    if os.pread(fi, n, off) != os.pread(fs, n, off):
        sys.exit(f"{off}+{n} differs")
PY
fired=$(emu_admin GET /faults | "$PYTHON3" -c '
import json, sys
print(sum(1 for r in json.load(sys.stdin) if "block_index" in r and r.get("fired", 0) == 2))')
[ "$fired" -eq 6 ] || fail "only $fired of the 6 targeted faults fired twice"
emu_clear_faults
stop_ebsfs "$mnt"

# Block 100 fails every time (fresh mount: nothing cached).
bad=100
emu_faults "{\"op\": \"GetSnapshotBlock\", \"kind\": \"500\", \"block_index\": $bad}"
mnt2=$(mount_dir mnt2)
start_ebsfs "$mnt2" "$snap"
img="$mnt2/$snap"
if out=$(dd if="$img" of=/dev/null bs=4096 count=1 skip=$((bad * B / 4096 + 3)) iflag=direct 2>&1); then
  fail "reading the failing block succeeded"
fi
echo "$out" | grep -q "Input/output error" || fail "the failing block gave: $out"
# Everything else still reads right, also in the same 1 MiB around it.
dd if="$img" bs=1M count=50 iflag=direct status=none | cmp - <(head -c $((50 << 20)) "$src") ||
  fail "blocks before the failing one"
dd if="$img" bs=$B skip=$((bad + 1)) count=100 iflag=direct status=none |
  cmp - <(dd if="$src" bs=$B skip=$((bad + 1)) count=100 status=none) || fail "blocks after the failing one"
# The failure was not cached: once the service recovers, the block reads.
emu_clear_faults
dd if="$img" bs=$B skip=$bad count=1 iflag=direct status=none |
  cmp - <(dd if="$src" bs=$B skip=$bad count=1 status=none) || fail "the block after recovery"
stop_ebsfs "$mnt2"
