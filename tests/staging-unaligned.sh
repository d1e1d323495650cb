#!/usr/bin/env bash
# staging-unaligned.sh - -o rw: writes at unaligned offsets and lengths,
# across block boundaries, into holes and up to the last byte (from Python
# and from dd conv=notrunc) read back at once through the mount; `ebsfs
# --commit` makes a snapshot whose content (emulator export and a fresh
# read-only mount) equals the expected image byte for byte, and whose
# ListChangedBlocks against the source is exactly the blocks written.  A
# second --commit has nothing to commit; unmounting then exits 0 and removes
# the staging directory; --commit refuses a read-only image and a plain file.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd cmp
EBS_TOOL="$top_builddir/src/ebs_tool"
[ -x "$EBS_TOOL" ] || skip "$EBS_TOOL is not built"
start_emulator --quiet

B=$((512 * 1024))
SIZE=$((1024 * 1024 * 1024))
src="$EMU_TMP/source.img"
exp="$EMU_TMP/expected.img"
make_sparse_source "$src" "$SIZE" 3 || fail "make the source image"
snap=$(emu_import "$src") || fail "import"
cp --sparse=always "$src" "$exp" || fail "copy the source"

mnt=$(mount_dir mnt)
staging="$EMU_TMP/staging"
idfile="$EMU_TMP/new-id"
start_ebsfs "$mnt" -o "rw,staging_dir=$staging,snapshot_id_file=$idfile,description=unaligned test" "$snap"
img="$mnt/$snap"
[ "$(stat -c %a "$img")" = 644 ] || fail "mode $(stat -c %a "$img"), expected 644"
[ "$(stat -c %a "$staging")" = 700 ] || fail "staging dir mode $(stat -c %a "$staging")"
for f in "$staging"/*; do
  [ "$(stat -c %a "$f")" = 600 ] || fail "$f mode $(stat -c %a "$f")"
done

# Writes from Python: the same bytes go to the expected image; the blocks
# touched are printed, one per line.
written="$EMU_TMP/written"
"$PYTHON3" - "$img" "$exp" "$SIZE" >"$written" <<'PY' || fail "writes through the mount"
import os, random, sys
img, exp, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
B = 512 * 1024
rnd = random.Random(11)
cases = [
    (1, 1),                           # one byte inside data (block 0)
    (B - 3, 7),                       # across the 0/1 boundary
    (5 * B + 123, 2 * B + 1000),      # spans blocks 5..7, in a hole
    (10 * B + 1234 + 17, 4000),       # inside a partial block of the source
    (20 * B - 100, 300),              # across a boundary the source straddles
    (40 * B, B),                      # one whole aligned block in a hole
    (100 * B + 1, B - 2),             # almost a whole block over data
    (size - 5, 5),                    # the last bytes
    (size - B - 10, 20),              # across the last boundary
]
cases += [(rnd.randrange(0, size - 3 * B), rnd.randrange(1, 3 * B)) for _ in range(12)]
fi = os.open(img, os.O_WRONLY)
fe = os.open(exp, os.O_WRONLY)
blocks = set()
for off, n in cases:
    data = rnd.randbytes(n)
    if os.pwrite(fi, data, off) != n:
        sys.exit(f"short write at {off}+{n}")
    os.pwrite(fe, data, off)
    blocks.update(range(off // B, (off + n - 1) // B + 1))
# Zeros written over the source's data are written blocks too.
zeros = bytes(B)
os.pwrite(fi, zeros, 2 * B)
os.pwrite(fe, zeros, 2 * B)
blocks.add(2)
# A rewrite of a block already written.
os.pwrite(fi, b"again", B - 3)
os.pwrite(fe, b"again", B - 3)
os.fsync(fi)
os.close(fi)
os.close(fe)
for b in sorted(blocks):
    print(b)
PY

# dd conv=notrunc at unaligned byte offsets, through the page cache.
head -c $((3 * B + 777)) /dev/urandom >"$EMU_TMP/dd.bin"
for off in $((60 * B + 999)) $((300 * B - 4097)); do
  dd if="$EMU_TMP/dd.bin" of="$img" bs=65536 oflag=seek_bytes seek=$off conv=notrunc,fsync status=none ||
    fail "dd into the image at $off"
  dd if="$EMU_TMP/dd.bin" of="$exp" bs=65536 oflag=seek_bytes seek=$off conv=notrunc status=none ||
    fail "dd into the expected image"
  n=$(stat -c %s "$EMU_TMP/dd.bin")
  seq $((off / B)) $(((off + n - 1) / B)) >>"$written"
done
sort -n -u "$written" -o "$written"

# Reads see the staged data at once (O_DIRECT: not the page cache's copy).
dd if="$img" bs=1M iflag=direct status=none | cmp - "$exp" || fail "the mount does not read back what was written"
[ "$(stat -c %s "$img")" -eq "$SIZE" ] || fail "the image changed size"

# Commit now; the mount stays.
new=$("$EBSFS" --commit "$img") || fail "ebsfs --commit failed"
case "$new" in snap-*) ;; *) fail "--commit printed '$new', not a snapshot ID" ;; esac
[ "$(cat "$idfile")" = "$new" ] || fail "snapshot_id_file has '$(cat "$idfile")', expected $new"
grep -q "committed $new" "$EBSFS_LOG" || fail "no 'committed $new' in the log"

emu_export "$new" "$EMU_TMP/export.img" || fail "export $new"
cmp "$EMU_TMP/export.img" "$exp" || fail "the new snapshot (emulator export) differs from the expected image"
rm -f "$EMU_TMP/export.img"

"$EBS_TOOL" changed "$new" --first "$snap" --all >"$EMU_TMP/changed" || fail "ListChangedBlocks"
awk '$1 == "changed" { print $2 }' "$EMU_TMP/changed" | sort -n -u >"$EMU_TMP/changed.idx"
diff "$EMU_TMP/changed.idx" "$written" >&2 ||
  fail "ListChangedBlocks($snap, $new) is not exactly the written blocks (< changed, > written)"
[ -s "$written" ] || fail "no written blocks recorded"

# Nothing written since: nothing to commit, nothing on stdout.
out=$("$EBSFS" --commit "$img" 2>"$EMU_TMP/commit2.err") || fail "second --commit failed"
[ -z "$out" ] || fail "second --commit printed '$out'"
grep -q "nothing to commit" "$EMU_TMP/commit2.err" || fail "second --commit did not say 'nothing to commit'"

stop_ebsfs "$mnt"
grep -q "nothing written" "$EBSFS_LOG" || fail "unmount did not say nothing was written"
[ ! -e "$staging" ] || fail "the staging directory of a committed session is still there"

# A fresh read-only mount of the new snapshot reads the expected image.
mnt2=$(mount_dir mnt2)
start_ebsfs "$mnt2" "$new"
dd if="$mnt2/$new" bs=1M status=none | cmp - "$exp" || fail "a read-only mount of $new differs"
# --commit refuses what is not a writable ebsfs image.
for f in "$mnt2/$new" "$exp"; do
  out=$("$EBSFS" --commit "$f" 2>"$EMU_TMP/commit3.err") && fail "--commit $f succeeded"
  [ -z "$out" ] || fail "--commit $f printed '$out'"
  grep -q "not a writable ebsfs image" "$EMU_TMP/commit3.err" || fail "--commit $f: $(cat "$EMU_TMP/commit3.err")"
done
stop_ebsfs "$mnt2"
