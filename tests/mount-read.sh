#!/usr/bin/env bash
# mount-read.sh - a snapshot of random data with holes reads back
# byte-identical through the mount: the whole image with dd at several block
# sizes (buffered, and with O_DIRECT, which sends each read to ebsfs as
# asked), unaligned offsets and lengths, the last bytes and reads past the
# end.  The image is opened for direct I/O by default; the same checks then
# run again with -o kernel_cache (the kernel's page cache), where a shared
# mmap works too.
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

# Unaligned offsets and lengths, block boundaries, the end of the image; then
# mmap: MAP_PRIVATE reads right in both modes, MAP_SHARED needs kernel_cache
# (the kernel refuses it on a direct-I/O file with ENODEV).
check_preads() {
"$PYTHON3" - "$img" "$src" "$SIZE" "$1" <<'PY' || fail "unaligned reads differ ($1)"
import errno, mmap, os, random, sys
img, src, size, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
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
fi = os.open(img, os.O_RDONLY)
want = os.pread(fs, 3 * B, B)
for access in (mmap.ACCESS_COPY, mmap.ACCESS_READ):
    try:
        m = mmap.mmap(fi, 3 * B, access=access, offset=B)
    except OSError as e:
        if access == mmap.ACCESS_READ and mode == "direct" and e.errno == errno.ENODEV:
            continue
        print(f"mmap (access {access}, {mode}): {e}", file=sys.stderr)
        bad += 1
        continue
    if access == mmap.ACCESS_READ and mode == "direct":
        print("a shared mmap of a direct-I/O image worked: is it still opened so?",
              file=sys.stderr)
        bad += 1
    if m[:] != want:
        print(f"mmap (access {access}, {mode}) differs", file=sys.stderr)
        bad += 1
    m.close()
os.close(fi)
sys.exit(1 if bad else 0)
PY
}
check_preads direct

stop_ebsfs "$mnt"

# The page-cache mode: buffered and O_DIRECT dd, the same preads, and mmap.
start_ebsfs "$mnt" -o kernel_cache "$snap"
for flag in direct fullblock; do
  dd if="$img" bs=1M iflag=$flag status=none | cmp - "$src" ||
    fail "dd bs=1M iflag=$flag differs (kernel_cache)"
done
check_preads kernel_cache
stop_ebsfs "$mnt"
