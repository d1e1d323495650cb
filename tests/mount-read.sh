#!/usr/bin/env bash
# mount-read.sh - a snapshot of random data with holes reads back
# byte-identical through the mount: the whole image with dd at several block
# sizes (through the page cache and with O_DIRECT, which sends each read
# to ebsfs as asked), unaligned offsets and lengths, the last bytes and
# reads past the end.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd cmp
start_emulator --quiet

SIZE=$((1024 * 1024 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" "$SIZE" 1 || fail "make the source image"
snap=$(emu_import "$src") || fail "import"
# A space in the mountpoint: /proc/self/mountinfo escapes it (\040), and
# ebsfs must still find its own mount there to widen the kernel's readahead.
mnt=$(mount_dir "mnt dir")
start_ebsfs "$mnt" "$snap"
img="$mnt/$snap"
if [ "$(id -u)" = 0 ] && [ -d /sys/class/bdi ]; then
  ra=$(cat "/sys/class/bdi/$(mountpoint -d "$mnt")/read_ahead_kb") || fail "no bdi for $mnt"
  [ "$ra" = 1024 ] || fail "kernel readahead of the mount is ${ra} KiB, expected 1024"
fi

[ -f "$img" ] || fail "$img is missing"
[ "$(stat -c %s "$img")" -eq "$SIZE" ] || fail "size $(stat -c %s "$img"), expected $SIZE"
[ "$(ls "$mnt")" = "$snap" ] || fail "directory lists: $(ls "$mnt")"

# Whole image, O_DIRECT (each read reaches ebsfs at that size) and buffered.
for bs in 65536 1M 4M; do
  dd if="$img" bs=$bs iflag=direct status=none | cmp - "$src" ||
    fail "dd bs=$bs iflag=direct differs"
done
for bs in 131072 3M 1000000; do
  dd if="$img" bs=$bs status=none | cmp - "$src" || fail "dd bs=$bs differs"
done
# Small block sizes cost a request each: the first and last 64 MiB.
for bs in 512 4096; do
  n=$((64 * 1024 * 1024 / bs)); last=$((SIZE / bs - n))
  dd if="$img" bs=$bs count=$n iflag=direct status=none |
    cmp - <(dd if="$src" bs=$bs count=$n status=none) || fail "dd bs=$bs head differs"
  dd if="$img" bs=$bs skip=$last iflag=direct status=none |
    cmp - <(dd if="$src" bs=$bs skip=$last status=none) || fail "dd bs=$bs tail differs"
done

# Unaligned offsets and lengths, block boundaries, the end of the image.
"$PYTHON3" - "$img" "$src" "$SIZE" <<'PY' || fail "unaligned reads differ"
import os, random, sys
img, src, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
B = 512 * 1024
rnd = random.Random(7)
cases = [(0, 1), (1, 4095), (B - 1, 2), (B - 3, B + 7), (10 * B + 1000, 200000),
         (20 * B - 4097, 8194), (size - 1, 1), (size - 100, 100), (size - 4096 - 5, 4101),
         (size - 3 * B - 11, 3 * B + 11)]
cases += [(rnd.randrange(0, size), rnd.randrange(1, 3 * B)) for _ in range(200)]
flags = [os.O_RDONLY, os.O_RDONLY | os.O_DIRECT]
fs = os.open(src, os.O_RDONLY)
bad = 0
for fl in flags:
    fi = os.open(img, fl)
    for off, n in cases:
        n = min(n, size - off)
        a = os.pread(fi, n, off)
        b = os.pread(fs, n, off)
        if a != b:
            print(f"differs at {off}+{n} (flags {fl:#o}): got {len(a)} bytes", file=sys.stderr)
            bad += 1
    # At and past the end: 0 bytes, and a read across the end is clipped.
    for off in (size, size + 1, size + B):
        if os.pread(fi, 4096, off) != b"":
            print(f"read at {off} past the end returned data", file=sys.stderr)
            bad += 1
    if len(os.pread(fi, 8192, size - 10)) != 10:
        print("read across the end is not clipped", file=sys.stderr)
        bad += 1
    os.close(fi)
sys.exit(1 if bad else 0)
PY

stop_ebsfs "$mnt"
