#!/usr/bin/env bash
# mount-seek.sh - SEEK_DATA / SEEK_HOLE answer from the snapshot's block map
# (512 KiB granularity: a listed block is data, an unlisted one a hole, the
# end of the image a hole), and cp --sparse=always makes a sparse,
# identical copy without fetching more than the listed blocks.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires cp cmp
start_emulator --quiet

B=$((512 * 1024))
src="$EMU_TMP/source.img"
"$PYTHON3" - "$src" <<'PY' || fail "make the source"
import random, sys
B = 512 * 1024
rnd = random.Random(9)
with open(sys.argv[1], "wb") as f:
    f.truncate(2048 * B)
    for b in list(range(0, 8)) + [100] + list(range(1000, 1016)):
        f.seek(b * B)
        f.write(rnd.randbytes(B))
    f.seek(1500 * B + 4096)             # a block with data only in its middle
    f.write(rnd.randbytes(1000))
PY
snap=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt)
start_ebsfs "$mnt" "$snap"
img="$mnt/$snap"

"$PYTHON3" - "$img" <<'PY' || fail "SEEK_DATA/SEEK_HOLE"
import errno, os, sys
B = 512 * 1024
size = 2048 * B
fd = os.open(sys.argv[1], os.O_RDONLY)
bad = 0
def check(off, whence, want):
    global bad
    name = "SEEK_DATA" if whence == os.SEEK_DATA else "SEEK_HOLE"
    try:
        got = os.lseek(fd, off, whence)
    except OSError as e:
        got = "ENXIO" if e.errno == errno.ENXIO else f"errno {e.errno}"
    if got != want:
        print(f"lseek({off}, {name}) = {got}, expected {want}", file=sys.stderr)
        bad += 1
D, H = os.SEEK_DATA, os.SEEK_HOLE
check(0, D, 0);            check(0, H, 8 * B)
check(3 * B + 7, D, 3 * B + 7); check(3 * B + 7, H, 8 * B)
check(8 * B, D, 100 * B);  check(8 * B, H, 8 * B)
check(100 * B + 1, H, 101 * B)
check(101 * B, D, 1000 * B)
check(1000 * B + 5, H, 1016 * B)
check(1016 * B, D, 1500 * B); check(1500 * B, H, 1501 * B)
check(1501 * B, D, "ENXIO")
check(1501 * B, H, 1501 * B)
check(size - 1, H, size - 1)
check(size - 1, D, "ENXIO")
check(size, D, "ENXIO");   check(size, H, "ENXIO")
check(size + B, H, "ENXIO")
sys.exit(1 if bad else 0)
PY

emu_reset_counters
cp --sparse=always "$img" "$EMU_TMP/copy.img" || fail "cp --sparse=always"
cmp "$EMU_TMP/copy.img" "$src" || fail "the copy differs"
alloc=$(( $(stat -c %b "$EMU_TMP/copy.img") * $(stat -c %B "$EMU_TMP/copy.img") ))
[ "$alloc" -le $(( 27 * B )) ] || fail "the copy is not sparse: $alloc bytes allocated"
n=$(emu_counter GetSnapshotBlock)
[ "$n" -le 26 ] || fail "cp fetched $n blocks, the snapshot lists 26"
stop_ebsfs "$mnt"
