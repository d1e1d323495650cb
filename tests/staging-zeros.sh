#!/usr/bin/env bash
# staging-zeros.sh - all-zero blocks are data too: zeros written over the
# parent's data (whole aligned blocks, and an unaligned write that leaves a
# block all zero) are PUT to the new snapshot and read back as zeros (through
# the rw mount, the emulator's export and a fresh read-only mount); the new
# snapshot holds exactly the blocks written (a write across the end of the
# image writes only what fits, the size never changes).  And a commit with nothing
# written creates no snapshot and says so: `--commit` before any write, after
# a read-only use of the rw image, after a commit; unmounting a mount where
# nothing was written (StartSnapshot counter stays 0).
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
. "$top_srcdir/tests/staging-functions.sh"
set -u

requires_ebsfs
requires cmp
start_emulator --quiet
staging_watchdog 600

SIZE=$((1024 * 1024 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" "$SIZE" 3 || fail "make the source image"
snap0=$(emu_import "$src") || fail "import"
parent_blocks=" $(snap_info "$snap0" OwnBlockIndices) "
for b in 0 1 10 101; do
  [[ "$parent_blocks" == *" $b "* ]] || fail "test setup: block $b is not in the source snapshot"
done
[[ "$parent_blocks" == *" 500 "* ]] && fail "test setup: block 500 should be a hole of the source"

# expect_nothing_to_commit IMAGE: --commit says so, prints no id, calls nothing.
expect_nothing_to_commit() {
  emu_reset_counters
  commit_image "$1"
  [ "$COMMIT_RC" -eq 0 ] || { cat "$COMMIT_ERR" >&2; fail "$2: --commit exited $COMMIT_RC"; }
  [ -z "$COMMIT_OUT" ] || fail "$2: --commit printed '$COMMIT_OUT' on stdout"
  grep -qi 'nothing to commit' "$COMMIT_ERR" ||
    { cat "$COMMIT_ERR" >&2; fail "$2: --commit does not say 'nothing to commit'"; }
  [ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "$2: StartSnapshot was called"
  [ "$(emu_counter PutSnapshotBlock)" -eq 0 ] || fail "$2: PutSnapshotBlock was called"
}

# ---- a rw mount where nothing is written: no snapshot -------------------------------
mnt=$(mount_dir mnt-idle)
start_ebsfs "$mnt" -o "rw,staging_dir=$EMU_TMP/staging-idle" "$snap0"
img="$mnt/$snap0"
expect_nothing_to_commit "$img" "fresh mount"
# Opened read-write and read, never written.
to "$PYTHON3" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pread(fd, 1 << 20, 0); os.fsync(fd); os.close(fd)' "$img" || fail "open O_RDWR + read + fsync"
expect_nothing_to_commit "$img" "after reading"
emu_reset_counters
unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "idle rw mount: the daemon exited $rc at unmount"; }
check_ebsfs_log "$EBSFS_LOG"
grep -qi 'no snapshot created' "$EBSFS_LOG" ||
  { cat "$EBSFS_LOG" >&2; fail "idle rw mount: the log does not say 'nothing written, no snapshot created'"; }
grep -q 'committed snap-' "$EBSFS_LOG" && fail "idle rw mount: the log claims a commit"
[ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "idle rw mount: StartSnapshot was called at unmount"
[ "$(count_snapshots_of "$snap0")" -eq 0 ] || fail "idle rw mount left snapshots: $(snapshots_of "$snap0" | xargs)"

# ---- zeros over the parent's data ------------------------------------------------
mnt=$(mount_dir mnt)
start_ebsfs "$mnt" -o "rw,staging_dir=$EMU_TMP/staging" "$snap0"
img="$mnt/$snap0"
exp="$EMU_TMP/expected.img"
cp --sparse=always "$src" "$exp" || fail "cp"
write_both "$img" "$exp" 0 $((2 * BLOCK)) zero                   # blocks 0-1, aligned
write_both "$img" "$exp" $((101 * BLOCK)) "$BLOCK" zero          # block 101, aligned
write_both "$img" "$exp" $((10 * BLOCK + 1000)) 200000 zero      # block 10: now all zeros
write_both "$img" "$exp" $((500 * BLOCK)) "$BLOCK" zero          # block 500: zeros over a hole
write_both "$img" "$exp" $((300 * BLOCK + 7)) 1000 300           # block 300: some data
"$PYTHON3" - "$exp" <<'PY' || fail "test setup: blocks 0, 1, 10, 101 of the expected image are not all zeros"
import sys
B = 512 * 1024
with open(sys.argv[1], "rb") as f:
    for b in (0, 1, 10, 101):
        f.seek(b * B)
        if f.read(B) != bytes(B):
            sys.exit(1)
PY
# At the end of the image: a write across the end writes what fits (or is
# refused whole), one past the end writes nothing; the size never changes.
"$PYTHON3" - "$img" "$exp" "$SIZE" >"$EMU_TMP/endw" <<'PY' || fail "writes at the end of the image"
import errno, os, sys
img, exp, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(img, os.O_WRONLY)
try:
    n = os.pwrite(fd, b"\xee" * 200, size - 100)
except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EINVAL):
        raise
    n = 0
if n not in (0, 100):
    sys.exit("a 200-byte write 100 bytes before the end wrote %d bytes" % n)
try:
    m = os.pwrite(fd, b"\xee" * 10, size)
except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EINVAL):
        raise
    m = 0
if m != 0:
    sys.exit("a write at the end wrote %d bytes" % m)
os.fsync(fd)
os.close(fd)
with open(exp, "r+b") as f:
    f.seek(size - 100)
    f.write(b"\xee" * n)
if os.stat(img).st_size != size:
    sys.exit("the image is now %d bytes" % os.stat(img).st_size)
print(n)
PY
endw=$(cat "$EMU_TMP/endw")
echo "a write across the end wrote $endw of 200 bytes"
must="0 1 10 101 300"
[ "$endw" -gt 0 ] && must="$must 2047"
to cmp "$img" "$exp" || fail "the rw image does not read back the zeros written"

emu_reset_counters
commit_ok "$img"; snap1=$SNAP
puts=$(by_snapshot_count "$snap1" PutSnapshotBlock)
own=" $(snap_info "$snap1" OwnBlockIndices) "
echo "committed $snap1: PutSnapshotBlock $puts, blocks:$own"
for b in $must; do
  [[ "$own" == *" $b "* ]] || fail "block $b was written but not PUT to $snap1 (blocks:$own)"
done
for b in $own; do
  case " 0 1 10 101 300 500 2047 " in *" $b "*) ;; *) fail "block $b was PUT to $snap1 but never written";; esac
done
[ "$puts" -ge 5 ] || fail "PutSnapshotBlock counted $puts for $snap1, expected at least 5"
[ "$(snap_info "$snap1" ParentSnapshotId)" = "$snap0" ] || fail "$snap1 has the wrong parent"
check_export "$snap1" "$exp"
to cmp "$img" "$exp" || fail "after the commit the rw image differs"
expect_nothing_to_commit "$img" "after a commit"
emu_reset_counters
unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "the daemon exited $rc at unmount"; }
check_ebsfs_log "$EBSFS_LOG"
[ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "unmount after a commit with nothing new called StartSnapshot"
[ "$(count_snapshots_of "$snap0")" -eq 1 ] || fail "snapshots with parent $snap0: $(snapshots_of "$snap0" | xargs)"
check_ro_mount "$snap1" "$exp"
exit 0
