#!/usr/bin/env bash
# mount-small-files.sh - reading ahead of a copy of many small files
# (-o fs_prefetch, on by default), counted by the emulator on a real ext4
# image whose small files fill several 512 KiB blocks:
# - a read in one small file alone queues nothing more;
# - reads beginning in small files in two different blocks near each other
#   (a copy under way) queue the other blocks holding small files' data
#   around them: reading those files then costs no GetSnapshotBlock, where
#   with fs_prefetch=off it does;
# - that window also queues the next blocks of small files past it, however
#   far (the next directory, past the large file): the copy finds them in;
# - no block is fetched twice, and no block without small files' data (the
#   large file beside them) is queued by it, nor by the readahead of a
#   stream through the small files;
# - while that copy goes on, the first read in small files elsewhere (another
#   directory, past the large file) queues the window there at once;
# - a copy of the tree through a read-only loop mount of the image is
#   identical to the source.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd mkfs.ext4 debugfs diff
start_emulator --quiet

tree="$EMU_TMP/tree"
img="$EMU_TMP/fs.img"
mkdir -p "$tree/many" "$tree/other" "$EMU_TMP/far" || fail "mkdir"
"$PYTHON3" - "$tree" <<'PY' || fail "make the tree"
import os, random, sys
rnd = random.Random(11)
top = sys.argv[1]
for i in range(300):                    # 3.5 MiB: 7 or more 512 KiB blocks
    with open(os.path.join(top, "many", "f%03d" % i), "wb") as f:
        f.write(rnd.randbytes(12 * 1024))
with open(os.path.join(top, "other", "large.bin"), "wb") as f:
    f.write(rnd.randbytes(12 * 1024 * 1024))
for i in range(60):
    with open(os.path.join(top, "..", "far", "g%02d" % i), "wb") as f:
        f.write(rnd.randbytes(12 * 1024))
PY
truncate -s 1G "$img" || fail "truncate"
mkfs.ext4 -q -F -b 4096 -d "$tree" "$img" || fail "mkfs.ext4 -d"
# The far directory is written afterwards, so that its data lies past the
# large file's whatever order mkfs.ext4 -d took the others in.
{ echo "mkdir far"; for f in "$EMU_TMP"/far/g*; do echo "write $f far/${f##*/}"; done; } \
  >"$EMU_TMP/far.cmds"
debugfs -w -f "$EMU_TMP/far.cmds" "$img" >/dev/null 2>&1 || fail "debugfs write"
mkdir -p "$tree/far" && cp "$EMU_TMP"/far/g* "$tree/far/" || fail "cp far"
snap=$(emu_import "$img") || fail "import"

# FILE's 4 KiB filesystem blocks, and the 512 KiB EBS blocks holding them.
fs_blocks() { debugfs -R "blocks $1" "$img" 2>/dev/null | tr ' ' '\n' | awk 'NF'; }
ebs_blocks() { fs_blocks "$1" | awk '{ print int($1 * 4096 / 524288) }' | sort -un; }

# Each small file whose data lies in one EBS block: "EBS-block first-fs-block name".
one_block_files() {
  local f b
  for f in "$@"; do
    b=$(ebs_blocks "$f")
    [ "$(echo "$b" | wc -l)" -eq 1 ] && echo "$b $(fs_blocks "$f" | head -1) $f"
  done | sort -n
}
files=$(one_block_files $(seq -f /many/f%03g 0 299))
far_files=$(one_block_files $(seq -f /far/g%02g 0 59))
small_blocks=$(echo "$files" | awk '{ print $1 }' | sort -un)
large_blocks=$(ebs_blocks /other/large.bin)
[ "$(echo "$small_blocks" | wc -l)" -ge 5 ] || fail "the small files fill too few blocks: $small_blocks"
echo "small files in EBS blocks: $(echo $small_blocks); the large file in: $(echo $large_blocks)"
x=$(echo "$small_blocks" | sed -n 1p)          # the first block of small files
y=$(echo "$small_blocks" | sed -n 2p)          # the next one
[ $((y - x)) -le 16 ] || fail "blocks $x and $y are not near each other"
# A block of the far directory's small files more than a window away from both.
far=$(echo "$far_files" | awk -v x="$x" -v y="$y" '$1 > y + 16 && $1 > x + 16 { print $1; exit }')
[ -n "$far" ] || fail "no far small file more than 16 blocks past $y: $(echo $far_files | head -c 200)"
far_first=$(echo "$far_files" | awk -v b="$far" '$1 == b { print $2; exit }')
# One file from each block of small files within 16 blocks of y.
window=$(echo "$files" | awk -v y="$y" '$1 >= y - 16 && $1 <= y + 16 && !seen[$1]++ { print $2 }')
first_in() { echo "$files" | awk -v b="$1" '$1 == b { print $2; exit }'; }

gets() { emu_counter GetSnapshotBlock; }
# read_fs_blocks IMAGE FS-BLOCK...: 4 KiB at each, bypassing the page cache.
read_fs_blocks() {
  local image=$1 b; shift
  for b in "$@"; do
    dd if="$image" of=/dev/null bs=4096 skip="$b" count=1 iflag=direct status=none ||
      fail "read fs block $b"
  done
}

# 1. Default (fs_prefetch=on).
mnt=$(mount_dir on)
start_ebsfs "$mnt" -o debug=readahead "$snap"
wait_log "$EBSFS_LOG" "layout: 1 ext4 filesystem.*small files in [1-9][0-9]* blocks"
gets_settle
emu_reset_counters

# One small file read alone: its block, nothing more.
read_fs_blocks "$mnt/$snap" "$(first_in "$x")"
gets_settle
n=$(gets); [ "$n" -le 1 ] || { cat "$EBSFS_LOG" >&2; fail "one small file's read cost $n GetSnapshotBlock"; }
grep -q "small files read near" "$EBSFS_LOG" && fail "one small file's read set off a window"

# A second one, in the next block: the window around it is queued, and the
# small files past it: the far directory's first file costs no request.
# And while that copy goes on, one read there sets off a window there.
read_fs_blocks "$mnt/$snap" "$(first_in "$y")"
wait_log "$EBSFS_LOG" "small files read near block $y: queuing"
gets_settle
n0=$(gets)
read_fs_blocks "$mnt/$snap" "$far_first"
n=$(gets); [ "$n" -eq "$n0" ] ||
  { cat "$EBSFS_LOG" >&2; fail "the far directory's first file cost $((n - n0)) GetSnapshotBlock after the window near $y"; }
wait_log "$EBSFS_LOG" "small files read near block $far: queuing"
gets_settle
# Each block once at most, and only blocks of small files: x, then those of
# the two windows.
n=$(gets)
nwin=$( { echo "$files"; echo "$far_files"; } |
        awk -v y="$y" -v f="$far" '($1 >= y - 16 && $1 <= y + 16) || ($1 >= f - 16 && $1 <= f + 16) { print $1 }' |
        sort -un | wc -l)
[ "$n" -le $((nwin + 1)) ] ||
  fail "the windows' $nwin blocks cost $n GetSnapshotBlock (more than their small files' blocks)"
emu_reset_counters
read_fs_blocks "$mnt/$snap" $window
n=$(gets); [ "$n" -eq 0 ] ||
  { cat "$EBSFS_LOG" >&2; fail "small files near block $y cost $n GetSnapshotBlock after the window"; }
read_fs_blocks "$mnt/$snap" $(echo "$far_files" | awk -v b="$far" '$1 >= b - 16 && $1 <= b + 16 && !seen[$1]++ { print $2 }')
n=$(gets); [ "$n" -eq 0 ] || fail "the far small files cost $n GetSnapshotBlock after their window"
# The large file's blocks were not queued (those not shared with small files):
# neither by the window, nor by the readahead of a stream through the small
# files up to them (one dd, sequential).
only_large=$(comm -23 <(echo "$large_blocks" | sort) <(echo "$small_blocks" | sort) |
             sort -n | awk -v y="$y" '$1 >= y - 16 && $1 <= y + 16' | head -1)
if [ -n "$only_large" ]; then
  # Up to the large file's first block: a read at its start queues its data
  # (a file read from its start), which is not what is checked here.
  large_first=$(echo "$large_blocks" | head -1)
  dd if="$mnt/$snap" of=/dev/null bs=128K skip=$((x * 4)) count=$(((large_first - x) * 4)) \
    iflag=direct status=none || fail "read blocks $x to $((large_first - 1))"
  gets_settle
  emu_reset_counters
  dd if="$mnt/$snap" of=/dev/null bs=4096 skip=$((only_large * 128 + 1)) count=1 iflag=direct \
    status=none || fail "read block $only_large"
  n=$(gets); [ "$n" -ge 1 ] || { cat "$EBSFS_LOG" >&2; fail "block $only_large (large file only) was queued by the window or a stream"; }
fi
cmp "$mnt/$snap" "$img" || fail "the image differs from the source"

# A copy of the tree through a loop mount: the same files.
if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null 2>&1 && losetup -f >/dev/null 2>&1; then
  fs=$(mount_dir fs)
  loop_mount "$mnt/$snap" "$fs" "ro,noload"
  mkdir -p "$EMU_TMP/copy" || fail "mkdir"
  cp -a "$fs/many" "$fs/far" "$fs/other" "$EMU_TMP/copy/" || fail "cp -a through the loop mount"
  diff -r "$tree" "$EMU_TMP/copy" || fail "the copy differs from the source"
  umount "$fs" || fail "umount $fs"
else
  echo "no loop device or not root: the loop-mounted copy is not checked"
fi
stop_ebsfs "$mnt"

# 2. fs_prefetch=off: the same reads cost requests (so the checks above can fail).
mnt=$(mount_dir off)
start_ebsfs "$mnt" -o fs_prefetch=off "$snap"
read_fs_blocks "$mnt/$snap" "$(first_in "$x")" "$(first_in "$y")"
gets_settle
emu_reset_counters
read_fs_blocks "$mnt/$snap" $window
n=$(gets); [ "$n" -gt 0 ] || fail "with fs_prefetch=off the small files cost no request: test cannot fail"
stop_ebsfs "$mnt"
exit 0
