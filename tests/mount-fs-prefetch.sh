#!/usr/bin/env bash
# mount-fs-prefetch.sh - filesystem-aware prefetch (-o fs_prefetch, on by
# default), counted by the emulator on a real ext4 image:
# - right after the mount, ebsfs has fetched every directory by itself: the
#   reads a loop mount would make of them cost no GetSnapshotBlock, where with
#   fs_prefetch=off they do;
# - a read of a large file's first page brings in the rest of the file: its
#   other blocks then cost none;
# - readahead in a stream that began at that file stops at its end (the next
#   file's blocks are not fetched), but a stream that began before it (dd of
#   the volume) runs on into the next file.
# Hints never change data: the image still reads back byte for byte.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd
requires mkfs.ext4
requires debugfs
start_emulator --quiet

tree="$EMU_TMP/tree"
img="$EMU_TMP/fs.img"
mkdir -p "$tree"/d0 "$tree"/d1/sub "$tree"/d2 "$tree"/d3 || fail "mkdir"
"$PYTHON3" - "$tree" <<'PY' || fail "make the tree"
import os, random, sys
rnd = random.Random(7)
top = sys.argv[1]
for d in ("d0", "d1", "d1/sub", "d2", "d3"):
    for i in range(40):
        with open(os.path.join(top, d, "small%02d.txt" % i), "wb") as f:
            f.write(rnd.randbytes(rnd.randint(100, 9000)))
for name in ("big.bin", "next.bin"):
    with open(os.path.join(top, "d2", name), "wb") as f:
        f.write(rnd.randbytes(6 * 1024 * 1024 + 12345))
PY
truncate -s 1G "$img" || fail "truncate"
mkfs.ext4 -q -F -b 4096 -d "$tree" "$img" || fail "mkfs.ext4 -d"
snap=$(emu_import "$img") || fail "import"

# EBS blocks (512 KiB) holding PATH's data, from debugfs's list of 4 KiB blocks.
ebs_blocks() {
  debugfs -R "blocks $1" "$img" 2>/dev/null | tr ' ' '\n' |
    awk 'NF { print int($1 * 4096 / 524288) }' | sort -un
}
dir_blocks=$(for d in / /d0 /d1 /d1/sub /d2 /d3; do ebs_blocks "$d"; done | sort -un)
first_block() { debugfs -R "blocks $1" "$img" 2>/dev/null | awk '{ print $1 }'; }
# The two large files, in their order on disk: A, then B right after it.
a=/d2/big.bin b=/d2/next.bin
[ "$(first_block $a)" -lt "$(first_block $b)" ] || { a=/d2/next.bin b=/d2/big.bin; }
big_blocks=$(ebs_blocks $a)
big_first=$(first_block $a)
big_size=$((6 * 1024 * 1024 + 12345))
next_blocks=$(ebs_blocks $b)
[ -n "$dir_blocks" ] && [ -n "$big_blocks" ] && [ -n "$big_first" ] && [ -n "$next_blocks" ] ||
  fail "debugfs found no blocks"
echo "directories in EBS blocks: $(echo $dir_blocks); $a: $(echo $big_blocks); $b: $(echo $next_blocks)"
big_last=$(echo $big_blocks | tr ' ' '\n' | tail -1)
next_last=$(echo $next_blocks | tr ' ' '\n' | tail -1)
# The checks of readahead past A need B's data just past A's end plus 1 MiB.
[ "$next_last" -gt $((big_last + 2)) ] && [ "$next_last" -le $((big_last + 16)) ] ||
  fail "mkfs.ext4 did not put $b right after $a: the readahead checks cannot fail"

gets() { emu_counter GetSnapshotBlock; }
# Wait until LOG has a line matching PATTERN, then until the fetches stop.
settle() {
  wait_log "$1" "$2"
  gets_settle
}
# read_blocks IMAGE BLOCKS...: 4 KiB of each 512 KiB block, bypassing the
# page cache.  Not the whole block: a whole-block read starts a readahead
# window, whose requests for the blocks after it would be counted too.
read_blocks() {
  local image=$1 b; shift
  for b in "$@"; do
    dd if="$image" of=/dev/null bs=4096 skip=$((b * 128)) count=1 iflag=direct status=none ||
      fail "read block $b"
  done
}

# 1. Default (fs_prefetch=on): directories are in before anyone asks.
mnt=$(mount_dir on)
emu_reset_counters
start_ebsfs "$mnt" -o debug=readahead "$snap"
settle "$EBSFS_LOG" "layout: 1 ext4 filesystem"
grep -E "layout: 1 ext4 filesystem\(s\), [0-9]+ inodes read, [1-9][0-9]* directory ranges" \
  "$EBSFS_LOG" >/dev/null || { cat "$EBSFS_LOG" >&2; fail "the layout found no directory"; }
emu_reset_counters
read_blocks "$mnt/$snap" $dir_blocks
n=$(gets); [ "$n" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "reading the directories after the mount cost $n GetSnapshotBlock"; }

# 2. The first page of A brings in the rest of it.
dd if="$mnt/$snap" of=/dev/null bs=4096 skip="$big_first" count=1 iflag=direct status=none ||
  fail "read $a's first page"
settle "$EBSFS_LOG" "first read of the file at $((big_first * 4096))"
emu_reset_counters
read_blocks "$mnt/$snap" $big_blocks
n=$(gets); [ "$n" -eq 0 ] || fail "$a's other blocks cost $n GetSnapshotBlock after its first page"

# 3. A stream that began at A (a file read from its start) stops at A's end
# plus the kernel's 1 MiB: everything it reaches was queued by the first read.
# It reads on into that 1 MiB, as the kernel's readahead does (B begins
# there: the window must still be A's).
emu_reset_counters
dd if="$mnt/$snap" of=/dev/null bs=128K iflag=direct,skip_bytes,count_bytes \
  skip=$((big_first * 4096)) count=$((big_size + 1024 * 1024 - 128 * 1024)) status=none ||
  fail "read $a"
sleep 1
n=$(gets); [ "$n" -eq 0 ] || fail "reading $a from its start cost $n GetSnapshotBlock (readahead into $b)"

# 4. A stream that began before A runs on into B: dd of the volume is not
# clipped.  The 2 MiB before A are read (cached) first, so that every request
# counted below is readahead past A.
start=$((big_first * 4096 - 2 * 1024 * 1024))
dd if="$mnt/$snap" of=/dev/null bs=128K iflag=direct,skip_bytes,count_bytes \
  skip=$start count=$((2 * 1024 * 1024)) status=none || fail "read before $a"
sleep 1
emu_reset_counters
dd if="$mnt/$snap" of=/dev/null bs=128K iflag=direct,skip_bytes,count_bytes \
  skip=$start count=$((2 * 1024 * 1024 + big_size)) status=none || fail "read through $a"
sleep 1
n=$(gets); [ "$n" -gt 0 ] || fail "a stream begun before $a did not read ahead into $b"

# Same bytes as the source, whatever was prefetched.
cmp "$mnt/$snap" "$img" || fail "the image differs from the source"
stop_ebsfs "$mnt"

# 5. fs_prefetch=off: the same reads do cost requests (so the checks above
# can fail), and nothing is parsed.
mnt=$(mount_dir off)
emu_reset_counters
start_ebsfs "$mnt" -o debug=readahead,fs_prefetch=off "$snap"
dd if="$mnt/$snap" of=/dev/null bs=4096 count=1 iflag=direct status=none || fail "read block 0"
sleep 1
emu_reset_counters
read_blocks "$mnt/$snap" $dir_blocks
n=$(gets); [ "$n" -gt 0 ] || fail "with fs_prefetch=off the directories cost no request: test cannot fail"
dd if="$mnt/$snap" of=/dev/null bs=4096 skip="$big_first" count=1 iflag=direct status=none ||
  fail "read $a's first page"
sleep 1
emu_reset_counters
read_blocks "$mnt/$snap" $big_blocks
n=$(gets); [ "$n" -gt 0 ] || fail "with fs_prefetch=off $a cost no request: test cannot fail"
grep -q "layout:" "$EBSFS_LOG" && fail "fs_prefetch=off still parsed the layout"
stop_ebsfs "$mnt"

# 6. A bad value is refused with a clear message.
out=$("$EBSFS" -f -o fs_prefetch=maybe "$snap" "$(mount_dir bad)" 2>&1) && fail "fs_prefetch=maybe accepted"
echo "$out" | grep -q "bad fs_prefetch 'maybe'" || fail "unclear message: $out"
exit 0
