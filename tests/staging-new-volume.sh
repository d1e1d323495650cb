#!/usr/bin/env bash
# staging-new-volume.sh - upload a disk image as a new snapshot:
# `-o rw,new_volume_size=1G` (no source) shows an all-zero MNT/new-volume; a
# local ext4 image dd'ed into it and committed becomes a completed snapshot
# with no parent (its description and tags as given) that exports and reads back byte for byte, is a clean ext4
# with the same tree.  An encrypted new volume (-o encrypted, kms_key_arn)
# is reported encrypted and its all-zero written block is PUT.  Refused at
# mount with a clear one-line message, nothing left mounted and no
# StartSnapshot: -o encrypted / kms_key_arn with a source snapshot, two
# source snapshots with -o rw, a new_volume_size not a multiple of 512 KiB.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
. "$top_srcdir/tests/staging-functions.sh"
set -u

requires_ebsfs
requires_loop
requires mkfs.ext4 e2fsck diff cmp
start_emulator --quiet
staging_watchdog 600

GIB=$((1024 * 1024 * 1024))
KMS='arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'

# ---- refusals ------------------------------------------------------------------------
small="$EMU_TMP/small.img"
head -c $((3 * BLOCK)) /dev/urandom >"$small"
snap0=$(emu_import "$small") || fail "import"
snap0b=$(emu_import "$small") || fail "import"

# refused WHAT PATTERN ARGS...: ebsfs -f ARGS MNT must exit non-zero at once
# with one line on stderr matching PATTERN (grep -Ei), mount nothing and
# start no snapshot.
refused() {
  local what=$1 pat=$2 m rc; shift 2
  m=$(mount_dir "refused-$RANDOM")
  on_exit "fusermount3 -u -z '$m' 2>/dev/null"
  emu_reset_counters
  timeout -k 5 30 "$EBSFS" -f "$@" "$m" >"$EMU_TMP/refused.out" 2>"$EMU_TMP/refused.err"; rc=$?
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "$what: ebsfs mounted (still running after 30 s) instead of refusing"
  [ "$rc" -ne 0 ] || fail "$what: ebsfs exited 0 instead of refusing"
  is_mounted "$m" && fail "$what: $m stays mounted"
  grep -Eqi "$pat" "$EMU_TMP/refused.err" ||
    { cat "$EMU_TMP/refused.err" >&2; fail "$what: the error does not match /$pat/"; }
  [ "$(grep -c . "$EMU_TMP/refused.err")" -eq 1 ] ||
    { cat "$EMU_TMP/refused.err" >&2; fail "$what: expected a one-line error, got $(grep -c . "$EMU_TMP/refused.err") lines"; }
  [ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "$what: StartSnapshot was called"
  echo "refused ($what): $(cat "$EMU_TMP/refused.err")"
}
refused "encrypted with a source" 'encrypt' -o "rw,encrypted,staging_dir=$EMU_TMP/st-r1" "$snap0"
refused "kms_key_arn with a source" 'kms|encrypt' -o "rw,kms_key_arn=$KMS,staging_dir=$EMU_TMP/st-r2" "$snap0"
refused "two sources with rw" 'one|single|snapshot' -o "rw,staging_dir=$EMU_TMP/st-r3" "$snap0" "$snap0b"
refused "new_volume_size not a multiple of 512 KiB" 'new_volume_size|size|512' -o "rw,new_volume_size=1000,staging_dir=$EMU_TMP/st-r4"
[ -z "$(emu_admin GET /snapshots | "$PYTHON3" -c 'import json,sys; print(" ".join(s["SnapshotId"] for s in json.load(sys.stdin) if s["Status"] != "completed"))')" ] ||
  fail "a refused mount left a pending snapshot"

# ---- a local ext4 image into a new volume -------------------------------------------
tree="$EMU_TMP/tree"
mkdir -p "$tree/a/b" || fail "mkdir"
head -c 5000000 /dev/urandom >"$tree/a/b/random.bin"
for i in $(seq 1 20); do echo "line $i" >"$tree/a/f$i.txt"; done
local_img="$EMU_TMP/local.img"
truncate -s 64M "$local_img" && mkfs.ext4 -q -F -d "$tree" "$local_img" >/dev/null || fail "mkfs.ext4"
exp="$EMU_TMP/expected.img"
cp --sparse=always "$local_img" "$exp" && truncate -s "$GIB" "$exp" || fail "expected image"

mnt=$(mount_dir mnt)
stg="$EMU_TMP/staging"
idfile="$EMU_TMP/id"
start_ebsfs "$mnt" -o "rw,new_volume_size=1G,staging_dir=$stg,snapshot_id_file=$idfile,description=ebsfs new-volume test,tags=team=storage;purpose=ebsfs test"
img="$mnt/new-volume"
[ "$(ls "$mnt")" = new-volume ] || fail "the mount lists '$(ls "$mnt")', expected new-volume"
[ "$(stat -c %s "$img")" -eq "$GIB" ] || fail "new-volume is $(stat -c %s "$img") bytes, expected $GIB"
[ "$(stat -c %a "$img")" = 644 ] || fail "new-volume has mode $(stat -c %a "$img")"
to cmp -n $((8 * BLOCK)) "$img" /dev/zero || fail "a new volume does not read as zeros"
to cmp -i $((GIB - BLOCK)) -n "$BLOCK" "$img" /dev/zero || fail "the end of a new volume does not read as zeros"
emu_reset_counters
to dd if="$local_img" of="$img" bs=1M conv=notrunc,fsync status=none || fail "dd the local image into new-volume"
[ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "StartSnapshot was called before the commit"
[ "$(emu_counter PutSnapshotBlock)" -eq 0 ] || fail "PutSnapshotBlock was called before the commit"
to cmp "$img" "$exp" || fail "new-volume does not read back what was written"
check_staging_modes "$stg"

commit_ok "$img"; snap1=$SNAP
echo "committed $snap1 ($(snap_info "$snap1" OwnBlocks) blocks)"
[ "$(snap_info "$snap1" Status)" = completed ] || fail "$snap1 is $(snap_info "$snap1" Status)"
[ -z "$(snap_info "$snap1" ParentSnapshotId)" ] || fail "$snap1 has parent $(snap_info "$snap1" ParentSnapshotId), expected none"
[ "$(snap_info "$snap1" VolumeSize)" = 1 ] || fail "$snap1 VolumeSize $(snap_info "$snap1" VolumeSize), expected 1"
[ "$(snap_info "$snap1" Description)" = "ebsfs new-volume test" ] || fail "$snap1 Description '$(snap_info "$snap1" Description)'"
tags=$(emu_admin GET "/snapshots/$snap1" | "$PYTHON3" -c 'import json,sys
print(";".join("%s=%s" % (t["Key"], t["Value"]) for t in sorted(json.load(sys.stdin).get("Tags") or [], key=lambda t: t["Key"])))')
[ "$tags" = "purpose=ebsfs test;team=storage" ] || fail "$snap1 Tags '$tags', expected purpose=ebsfs test;team=storage"
[ "$(snap_info "$snap1" Encrypted)" != true ] || fail "$snap1 is encrypted without -o encrypted"
[ "$(cat "$idfile" 2>/dev/null)" = "$snap1" ] || fail "snapshot_id_file holds '$(cat "$idfile" 2>/dev/null)'"
own=" $(snap_info "$snap1" OwnBlockIndices) "
nz=$("$PYTHON3" - "$local_img" <<'PY'
import sys
B = 512 * 1024
with open(sys.argv[1], "rb") as f:
    i = 0
    while True:
        x = f.read(B)
        if not x:
            break
        if x.count(0) != len(x):
            print(i)
        i += 1
PY
)
for b in $nz; do
  [[ "$own" == *" $b "* ]] || fail "block $b holds data but is not in $snap1"
done
for b in $own; do
  [ "$b" -lt 128 ] || fail "block $b was never written but is in $snap1"
done
check_export "$snap1" "$exp"
unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "the daemon exited $rc at unmount"; }
check_ebsfs_log "$EBSFS_LOG"
[ "$(count_snapshots_of "")" -eq 3 ] ||            # the two imports and snap1
  fail "snapshots with no parent: $(snapshots_of "" | xargs), expected $snap0 $snap0b $snap1"

check_ro_mount "$snap1" "$exp"
m=$(mount_dir ro)
d=$(mount_dir ro.d)
start_ebsfs "$m" "$snap1"
to e2fsck -fn "$m/$snap1" >"$EMU_TMP/e2fsck.log" 2>&1 || { cat "$EMU_TMP/e2fsck.log" >&2; fail "e2fsck -fn $snap1"; }
loop_mount "$m/$snap1" "$d" ro
to diff -r -x lost+found "$tree" "$d" || fail "the tree in $snap1 differs"
to umount "$d" || fail "umount $d"
stop_ebsfs "$m"

# ---- an encrypted new volume ------------------------------------------------------
mnt=$(mount_dir mnt-enc)
start_ebsfs "$mnt" -o "rw,new_volume_size=1G,encrypted,kms_key_arn=$KMS,staging_dir=$EMU_TMP/staging-enc"
img="$mnt/new-volume"
exp="$EMU_TMP/expected-enc.img"
truncate -s "$GIB" "$exp"
write_both "$img" "$exp" $((7 * BLOCK)) "$BLOCK" 77
write_both "$img" "$exp" $((9 * BLOCK)) "$BLOCK" zero
commit_ok "$img"; snap2=$SNAP
[ "$(snap_info "$snap2" Encrypted)" = true ] || fail "$snap2 is not encrypted"
[ "$(snap_info "$snap2" KmsKeyArn)" = "$KMS" ] || fail "$snap2 KmsKeyArn '$(snap_info "$snap2" KmsKeyArn)', expected $KMS"
[ -z "$(snap_info "$snap2" ParentSnapshotId)" ] || fail "$snap2 has a parent"
[ "$(snap_info "$snap2" OwnBlockIndices)" = "7 9" ] ||
  fail "$snap2 holds blocks '$(snap_info "$snap2" OwnBlockIndices)', expected '7 9' (the zero block must be PUT)"
check_export "$snap2" "$exp"
unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "the daemon (encrypted) exited $rc at unmount"; }
check_ebsfs_log "$EBSFS_LOG"
exit 0
