#!/usr/bin/env bash
# staging-ext4.sh - the restore use case of the write mode: an ext4 snapshot
# mounted with -o rw, its file system loop-mounted read-write and changed
# (files created, modified, renamed, truncated, deleted), `ebsfs --commit`,
# then a second round on the same mount committed by unmounting.  Each new
# snapshot has the right parent, holds every block that changed, exports and
# reads back (fresh read-only mount) byte for byte as the rw image was, passes
# `e2fsck -fn`, and its tree equals the expected one.  The source snapshot is
# untouched; -o snapshot_id_file follows each commit; a commit with nothing
# new says "nothing to commit"; the staging data is gone after unmounting.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
. "$top_srcdir/tests/staging-functions.sh"
set -u

requires_ebsfs
requires_loop
requires mkfs.ext4 e2fsck losetup diff cmp cp find
start_emulator --quiet
staging_watchdog 900

SIZE=$((1024 * 1024 * 1024))
tree="$EMU_TMP/tree"
mkdir -p "$tree/etc" "$tree/data" "$tree/docs/sub" || fail "mkdir"
head -c 3000000 /dev/urandom >"$tree/data/big.bin"
head -c 700000 /dev/urandom >"$tree/data/delete-me.bin"
head -c 2000000 /dev/urandom >"$tree/data/shrink.bin"
head -c 8388608 /dev/urandom >"$EMU_TMP/rand8m"
head -c 100000 /dev/urandom >"$EMU_TMP/rand100k"
printf '127.0.0.1 localhost\n' >"$tree/etc/hosts.txt"
printf 'restore me\n' >"$tree/docs/readme.txt"
for i in $(seq 1 50); do echo "file $i" >"$tree/docs/sub/f$i"; done
: >"$tree/docs/empty"

src="$EMU_TMP/source.img"
truncate -s "$SIZE" "$src" || fail "truncate"
mkfs.ext4 -q -F -d "$tree" "$src" >/dev/null || fail "mkfs.ext4 -d"
snap0=$(emu_import "$src") || fail "import"

# The changes, applied to the mounted file system and to the expected tree.
mutate1() {
  local r=$1
  echo "appended line" >>"$r/etc/hosts.txt" &&
  dd if="$EMU_TMP/rand100k" of="$r/data/big.bin" bs=1 seek=1234567 conv=notrunc status=none &&
  rm "$r/data/delete-me.bin" &&
  mkdir -p "$r/new/deep/er" &&
  cp "$EMU_TMP/rand8m" "$r/new/deep/er/eight.bin" &&
  mv "$r/docs/readme.txt" "$r/docs/README" &&
  truncate -s 1000 "$r/data/shrink.bin" &&
  ln -s ../docs/README "$r/new/link" &&
  rm "$r"/docs/sub/f1? &&
  chmod 0600 "$r/docs/empty"
}
mutate2() {
  local r=$1
  echo "round two" >"$r/round2.txt" &&
  rm -r "$r/new/deep" &&
  printf 'X' | dd of="$r/etc/hosts.txt" bs=1 seek=3 conv=notrunc status=none
}
# same_tree A B: same names, types, modes, sizes, link targets and contents.
same_tree() {
  local a b
  a=$(cd "$1" && find . -path ./lost+found -prune -o -printf '%p %y %m %s %l\n' | sort)
  b=$(cd "$2" && find . -path ./lost+found -prune -o -printf '%p %y %m %s %l\n' | sort)
  [ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; return 1; }
  to diff -r --no-dereference -x lost+found "$1" "$2"
}
# changed_blocks A B: indices of the 512 KiB blocks where A and B differ.
changed_blocks() {
  to "$PYTHON3" - "$1" "$2" <<'PY'
import sys
B = 512 * 1024
with open(sys.argv[1], "rb") as a, open(sys.argv[2], "rb") as b:
    i = 0
    while True:
        x, y = a.read(B), b.read(B)
        if not x and not y:
            break
        if x != y:
            print(i)
        i += 1
PY
}
# check_holds SNAP BASE EXPECTED: every block where EXPECTED differs from
# BASE was written to SNAP (the PUT set contains the changed set).
check_holds() {
  local own missing=() i
  own=" $(snap_info "$1" OwnBlockIndices) "
  for i in $(changed_blocks "$2" "$3"); do
    [[ "$own" == *" $i "* ]] || missing+=("$i")
  done
  [ ${#missing[@]} -eq 0 ] || fail "snapshot $1 lacks changed blocks: ${missing[*]}"
}
# check_fs SNAP TREE: a read-only mount of SNAP holds a clean ext4 whose tree is TREE.
check_fs() {
  local m d pid=$EBSFS_PID log=$EBSFS_LOG
  m=$(mount_dir "ro-fs-$1")
  d=$(mount_dir "ro-fs-$1.d")
  start_ebsfs "$m" "$1"
  to e2fsck -fn "$m/$1" >"$EMU_TMP/e2fsck-$1.log" 2>&1 ||
    { cat "$EMU_TMP/e2fsck-$1.log" >&2; fail "e2fsck -fn on snapshot $1 is not clean"; }
  loop_mount "$m/$1" "$d" ro
  same_tree "$2" "$d" || fail "the tree in snapshot $1 differs from $2"
  to umount "$d" || fail "umount $d"
  stop_ebsfs "$m"
  EBSFS_PID=$pid EBSFS_LOG=$log
}

mnt=$(mount_dir mnt)
fs=$(mount_dir fs)
stg="$EMU_TMP/staging"
idfile="$EMU_TMP/new-id"
start_ebsfs "$mnt" -o "rw,staging_dir=$stg,snapshot_id_file=$idfile" "$snap0"
img="$mnt/$snap0"
[ -f "$img" ] || fail "$img is missing"
[ "$(stat -c %a "$img")" = 644 ] || fail "rw image has mode $(stat -c %a "$img"), expected 644"
[ "$(stat -c %s "$img")" -eq "$SIZE" ] || fail "rw image is $(stat -c %s "$img") bytes"
[ -w "$img" ] || fail "rw image is not writable"
to cmp "$img" "$src" || fail "before any write the rw image differs from the source"

# ---- round 1: change the file system, --commit --------------------------------
fs_mount "$img" "$fs"
same_tree "$tree" "$fs" || fail "the mounted file system differs from the source tree"
exp1="$EMU_TMP/tree1"
cp -a "$tree" "$exp1" || fail "cp -a"
mutate1 "$fs" || fail "change the mounted file system"
mutate1 "$exp1" || fail "change the expected tree"
same_tree "$exp1" "$fs" || fail "the rw file system does not show the changes"
fs_umount "$img" "$fs"
check_staging_modes "$stg"

img1="$EMU_TMP/expected1.img"
to cp --sparse=always "$img" "$img1" || fail "copy the rw image"
cmp -s "$img1" "$src" && fail "the rw image equals the source after the changes"

commit_ok "$img"; snap1=$SNAP
echo "round 1: committed $snap1 ($(snap_info "$snap1" OwnBlocks) blocks)"
[ "$snap1" != "$snap0" ] || fail "--commit printed the source snapshot id"
[ "$(snap_info "$snap1" Status)" = completed ] || fail "$snap1 is $(snap_info "$snap1" Status)"
[ "$(snap_info "$snap1" ParentSnapshotId)" = "$snap0" ] ||
  fail "$snap1 has parent '$(snap_info "$snap1" ParentSnapshotId)', expected $snap0"
[ "$(count_snapshots_of "$snap0")" -eq 1 ] || fail "snapshots with parent $snap0: $(snapshots_of "$snap0" | xargs)"
[ "$(cat "$idfile" 2>/dev/null)" = "$snap1" ] || fail "snapshot_id_file holds '$(cat "$idfile" 2>/dev/null)', expected $snap1"
[ "$(tail -c 1 "$idfile" | od -An -c | tr -d ' ')" = '\n' ] || fail "snapshot_id_file does not end with a newline"
[ "$(snap_info "$snap1" Timeout)" = 60 ] || fail "$snap1: StartSnapshot Timeout '$(snap_info "$snap1" Timeout)', expected the default 60"
check_holds "$snap1" "$src" "$img1"
check_export "$snap1" "$img1"
check_export "$snap0" "$src"               # writes never touch the source

# Nothing written since: no snapshot, says so.
emu_reset_counters
commit_image "$img"
[ "$COMMIT_RC" -eq 0 ] || { cat "$COMMIT_ERR" >&2; fail "--commit with nothing new exited $COMMIT_RC"; }
[ -z "$COMMIT_OUT" ] || fail "--commit with nothing new printed '$COMMIT_OUT' on stdout"
grep -qi 'nothing to commit' "$COMMIT_ERR" || { cat "$COMMIT_ERR" >&2; fail "--commit with nothing new does not say 'nothing to commit'"; }
[ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "a commit with nothing new called StartSnapshot"

# ---- round 2 on the same mount: committed by unmounting ----------------------------
fs_mount "$img" "$fs"
same_tree "$exp1" "$fs" || fail "after the commit the mounted file system changed"
exp2="$EMU_TMP/tree2"
cp -a "$exp1" "$exp2" || fail "cp -a"
mutate2 "$fs" || fail "change the mounted file system (round 2)"
mutate2 "$exp2" || fail "change the expected tree (round 2)"
fs_umount "$img" "$fs"
img2="$EMU_TMP/expected2.img"
to cp --sparse=always "$img" "$img2" || fail "copy the rw image (round 2)"

unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "the daemon exited $rc after the unmount commit"; }
check_ebsfs_log "$EBSFS_LOG"
snap2=$(log_committed_id "$EBSFS_LOG")
[ -n "$snap2" ] || { cat "$EBSFS_LOG" >&2; fail "no 'committed snap-' line in the log after unmounting"; }
[ "$snap2" != "$snap1" ] || fail "the unmount commit logged the previous snapshot $snap1"
echo "round 2: committed $snap2 ($(snap_info "$snap2" OwnBlocks) blocks)"
[ "$(snap_info "$snap2" Status)" = completed ] || fail "$snap2 is $(snap_info "$snap2" Status)"
[ "$(snap_info "$snap2" ParentSnapshotId)" = "$snap1" ] ||
  fail "$snap2 has parent '$(snap_info "$snap2" ParentSnapshotId)', expected $snap1 (the previous commit)"
[ "$(count_snapshots_of "$snap1")" -eq 1 ] || fail "snapshots with parent $snap1: $(snapshots_of "$snap1" | xargs)"
[ "$(count_snapshots_of "$snap0")" -eq 1 ] || fail "snapshots with parent $snap0: $(snapshots_of "$snap0" | xargs)"
[ "$(cat "$idfile" 2>/dev/null)" = "$snap2" ] || fail "snapshot_id_file holds '$(cat "$idfile" 2>/dev/null)', expected $snap2"
check_holds "$snap2" "$img1" "$img2"
check_export "$snap2" "$img2"
# Committed and unmounted without keep_staging: the staged data is gone.
if [ -d "$stg" ] && [ "$(staged_bytes "$stg")" -ge "$BLOCK" ]; then
  find "$stg" -ls >&2
  fail "the staging dir still holds $(staged_bytes "$stg") bytes after a committed unmount"
fi

# ---- the new snapshots, read-only ----------------------------------------------------
check_ro_mount "$snap1" "$img1"
check_ro_mount "$snap2" "$img2"
check_fs "$snap1" "$exp1"
check_fs "$snap2" "$exp2"
exit 0
