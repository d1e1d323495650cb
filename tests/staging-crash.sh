#!/usr/bin/env bash
# staging-crash.sh - kill -9 of the rw daemon loses nothing fsync'ed, and
# `ebsfs --resume DIR` finishes the job with no duplicate snapshot:
#  (a) mid-write: data written and fsync'ed, then more being written;
#  (a2) after an fsync, then remounting -o rw on the same staging dir: the
#      data is there, and a commit from that mount is right (another source
#      snapshot on that staging dir is refused);
#  (b) during the PUTs (slow emulator, few connections): the pending
#      snapshot is reused (same ClientToken) and the blocks already PUT are
#      not all PUT again;
#  (b2) the same, finished by remounting on the staging dir and unmounting;
#  (c) before CompleteSnapshot: Complete answered 503 until the kill;
#  (c2) CompleteSnapshot ran but its answer was lost (stall);
#  (d) the pending snapshot timed out (error) while nobody ran: resume
#      starts a fresh one.
# Each case has its own source snapshot (same data), so "snapshots with this
# parent" counts only what that case made.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
. "$top_srcdir/tests/staging-functions.sh"
set -u

requires_ebsfs
requires cmp
start_emulator --quiet
staging_watchdog 900

SIZE=$((1024 * 1024 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" "$SIZE" 5 || fail "make the source image"

# setup_case NAME [ebsfs -o options]: a source snapshot, its rw mount, the
# expected image; sets SRC_SNAP MNT IMG EXP STG.
setup_case() {
  local name=$1 extra=${2:+,$2}
  SRC_SNAP=$(emu_import "$src") || fail "import"
  MNT=$(mount_dir "mnt-$name")
  STG="$EMU_TMP/staging-$name"
  EXP="$EMU_TMP/expected-$name.img"
  cp --sparse=always "$src" "$EXP" || fail "cp"
  start_ebsfs "$MNT" -o "rw,staging_dir=$STG$extra" "$SRC_SNAP"
  IMG="$MNT/$SRC_SNAP"
}

# pending_of PARENT: the one pending snapshot with that parent (fails otherwise).
pending_of() {
  local p
  p=$(snapshots_of "$1" pending)
  [ "$(echo "$p" | grep -c .)" -eq 1 ] || fail "pending snapshots with parent $1: '$(echo $p)', expected one"
  echo "$p"
}

# check_resumed CASE PARENT EXPECTED [SAME_AS]: the resume's snapshot ($SNAP)
# is completed, a child of PARENT, the only completed one, equals EXPECTED,
# and is SAME_AS (the pending snapshot it had to finish) when given.
check_resumed() {
  local c=$1 parent=$2 exp=$3 same=${4:-}
  [ "$(snap_info "$SNAP" Status)" = completed ] || fail "($c) $SNAP is $(snap_info "$SNAP" Status)"
  [ "$(snap_info "$SNAP" ParentSnapshotId)" = "$parent" ] ||
    fail "($c) $SNAP has parent '$(snap_info "$SNAP" ParentSnapshotId)', expected $parent"
  [ "$(count_snapshots_of "$parent" completed)" -eq 1 ] ||
    fail "($c) duplicate: completed snapshots with parent $parent: $(snapshots_of "$parent" completed | xargs)"
  if [ -n "$same" ]; then
    [ "$SNAP" = "$same" ] || fail "($c) resume made $SNAP instead of finishing the pending $same"
    [ "$(count_snapshots_of "$parent")" -eq 1 ] ||
      fail "($c) snapshots with parent $parent: $(snapshots_of "$parent" | xargs), expected only $same"
  fi
  check_export "$SNAP" "$exp"
}

# ---- (a) kill -9 mid-write, after an fsync --------------------------------------------
setup_case a
write_both "$IMG" "$EXP" $((3 * BLOCK - 100)) 300000 11               # unaligned, two blocks
write_both "$IMG" "$EXP" $((50 * BLOCK)) $((2 * BLOCK)) 12            # aligned run
write_both "$IMG" "$EXP" $((10 * BLOCK + 5)) 10 13                    # a few bytes in parent data
write_both "$IMG" "$EXP" $((700 * BLOCK + 4096)) 4096 zero            # zeros in a hole
check_staging_modes "$STG"
# More writes, never fsync'ed, in flight when the daemon dies: their range
# (blocks 200-207) may hold old or new data; everything else must be exact.
to dd if=/dev/urandom of="$IMG" bs=64K seek=$((200 * 8)) count=64 conv=notrunc status=none 2>/dev/null &
ddpid=$!
sleep 0.3
kill9_daemon "$EBSFS_PID" "$MNT"
wait_pid "$ddpid" 30 >/dev/null
check_staging_modes "$STG"
resume_ok "$STG"
echo "(a) resumed: $SNAP ($(snap_info "$SNAP" OwnBlocks) blocks)"
out="$EMU_TMP/export-a.img"
emu_export "$SNAP" "$out" --size "$SIZE" || fail "(a) export"
"$PYTHON3" - "$out" "$EXP" $((200 * BLOCK)) $((208 * BLOCK)) <<'PY' || fail "(a) the resumed snapshot differs from the fsync'ed data"
import sys
a, b, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
B = 512 * 1024
with open(a, "rb") as fa, open(b, "rb") as fb:
    off = 0
    while True:
        x, y = fa.read(B), fb.read(B)
        if not x and not y:
            break
        if x != y and not (lo <= off < hi):
            sys.exit("differs in block %d" % (off // B))
        off += B
PY
rm -f "$out"
[ "$(snap_info "$SNAP" ParentSnapshotId)" = "$SRC_SNAP" ] || fail "(a) $SNAP has the wrong parent"
[ "$(count_snapshots_of "$SRC_SNAP")" -eq 1 ] || fail "(a) snapshots with parent $SRC_SNAP: $(snapshots_of "$SRC_SNAP" | xargs)"

# ---- (a2) kill -9 after fsync, then remount on the same staging dir ----------------
setup_case a2
write_both "$IMG" "$EXP" $((7 * BLOCK + 999)) $((BLOCK + 5)) 14
write_blocks "$IMG" "$EXP" 15 60 61 950
kill9_daemon "$EBSFS_PID" "$MNT"
# The staged blocks belong to that source: another snapshot is refused.
other=$(emu_import "$src") || fail "import"
timeout -k 5 30 "$EBSFS" -f -o "rw,staging_dir=$STG" "$other" "$MNT" >"$EMU_TMP/other.out" 2>&1; rc=$?
is_mounted "$MNT" && { fusermount3 -u -z "$MNT"; fail "(a2) the staging dir of $SRC_SNAP was mounted over $other"; }
[ "$rc" -ne 0 ] || fail "(a2) mounting the staging dir of $SRC_SNAP over $other exited 0"
echo "(a2) another source on that staging dir: $(head -n 1 "$EMU_TMP/other.out")"
start_ebsfs "$MNT" -o "rw,staging_dir=$STG" "$SRC_SNAP"
to cmp "$IMG" "$EXP" || fail "(a2) remounted on the staging dir, the image does not show the fsync'ed writes"
write_both "$IMG" "$EXP" $((61 * BLOCK + 100)) 100 16             # and it stays writable
commit_ok "$IMG"
echo "(a2) remounted and committed: $SNAP"
check_resumed a2 "$SRC_SNAP" "$EXP"
[ "$(count_snapshots_of "$SRC_SNAP")" -eq 1 ] || fail "(a2) snapshots with parent $SRC_SNAP: $(snapshots_of "$SRC_SNAP" | xargs)"
unmount_wait "$MNT"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "(a2) the daemon exited $rc at unmount"; }

# ---- (b) kill -9 during the PUTs ---------------------------------------------------
NB=40
setup_case b max_requests=2
write_blocks "$IMG" "$EXP" 21 $(seq 300 $((300 + NB - 1)))
emu_config '{"latency_ms": 300}'
emu_reset_counters
"$EBSFS" --commit "$IMG" >"$EMU_TMP/commit-b.out" 2>"$EMU_TMP/commit-b.err" &
cpid=$!
on_exit "kill $cpid 2>/dev/null"
wait_until 120 '[ "$(emu_counter PutSnapshotBlock)" -ge 8 ]' ||
  { cat "$EMU_TMP/commit-b.err" "$EBSFS_LOG" >&2; fail "(b) fewer than 8 PUTs in 120 s"; }
kill9_daemon "$EBSFS_PID" "$MNT"
wait_pid "$cpid" 60; rc=$?
[ "$rc" -ne 124 ] || fail "(b) ebsfs --commit still waits 60 s after the daemon died"
[ "$rc" -ne 0 ] || fail "(b) ebsfs --commit exited 0 although the daemon was killed mid-commit"
sleep 1                                   # let the PUTs in flight land
emu_config '{"latency_ms": 0}'
pend=$(pending_of "$SRC_SNAP") || exit 1
done_before=$(snap_info "$pend" OwnBlocks)
[ "$done_before" -lt "$NB" ] || fail "(b) test setup: all $NB blocks were PUT before the kill"
emu_reset_counters
resume_ok "$STG"
reput=$(by_snapshot_count "$pend" PutSnapshotBlock)
echo "(b) $done_before of $NB blocks PUT before the kill; resume PUT $reput, snapshot $SNAP"
check_resumed b "$SRC_SNAP" "$EXP" "$pend"
[ "$reput" -lt "$NB" ] || fail "(b) resume PUT all $NB blocks again ($reput PUTs; $done_before were already PUT)"
[ "$reput" -ge $((NB - done_before)) ] || fail "(b) resume PUT $reput blocks, but $((NB - done_before)) were missing"

# ---- (b2) kill -9 during the PUTs, then remount and unmount ---------------------------
NB=30
setup_case b2 max_requests=2
write_blocks "$IMG" "$EXP" 22 $(seq 300 $((300 + NB - 1)))
emu_config '{"latency_ms": 300}'
emu_reset_counters
"$EBSFS" --commit "$IMG" >"$EMU_TMP/commit-b2.out" 2>"$EMU_TMP/commit-b2.err" &
cpid=$!
on_exit "kill $cpid 2>/dev/null"
wait_until 120 '[ "$(emu_counter PutSnapshotBlock)" -ge 6 ]' ||
  { cat "$EMU_TMP/commit-b2.err" "$EBSFS_LOG" >&2; fail "(b2) fewer than 6 PUTs in 120 s"; }
kill9_daemon "$EBSFS_PID" "$MNT"
wait_pid "$cpid" 60 >/dev/null
sleep 1
emu_config '{"latency_ms": 0}'
pend=$(pending_of "$SRC_SNAP") || exit 1
start_ebsfs "$MNT" -o "rw,staging_dir=$STG" "$SRC_SNAP"
to cmp "$IMG" "$EXP" || fail "(b2) remounted, the image does not show the staged writes"
unmount_wait "$MNT"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "(b2) the remounted daemon exited $rc at unmount"; }
SNAP=$(log_committed_id "$EBSFS_LOG")
[ -n "$SNAP" ] || { cat "$EBSFS_LOG" >&2; fail "(b2) unmounting the remount committed nothing"; }
echo "(b2) remount + unmount committed $SNAP (pending was $pend)"
check_resumed b2 "$SRC_SNAP" "$EXP" "$pend"

# ---- (c) kill -9 before CompleteSnapshot ran ------------------------------------------
setup_case c
write_blocks "$IMG" "$EXP" 31 5 6 7 400 401 900
emu_faults '{"op": "CompleteSnapshot", "kind": "503"}'
emu_reset_counters
"$EBSFS" --commit "$IMG" >"$EMU_TMP/commit-c.out" 2>"$EMU_TMP/commit-c.err" &
cpid=$!
on_exit "kill $cpid 2>/dev/null"
wait_until 120 '[ "$(emu_counter CompleteSnapshot)" -ge 1 ]' ||
  { cat "$EMU_TMP/commit-c.err" "$EBSFS_LOG" >&2; fail "(c) no CompleteSnapshot in 120 s"; }
kill9_daemon "$EBSFS_PID" "$MNT"
wait_pid "$cpid" 60; rc=$?
[ "$rc" -ne 124 ] && [ "$rc" -ne 0 ] || fail "(c) ebsfs --commit exited $rc after the daemon was killed"
emu_clear_faults
pend=$(pending_of "$SRC_SNAP") || exit 1
[ "$(snap_info "$pend" OwnBlocks)" -eq 6 ] || fail "(c) test setup: the pending snapshot holds $(snap_info "$pend" OwnBlocks) blocks, expected 6"
emu_reset_counters
resume_ok "$STG"
reput=$(by_snapshot_count "$pend" PutSnapshotBlock)
echo "(c) resume PUT $reput of 6 blocks (all were PUT before the kill), snapshot $SNAP"
check_resumed c "$SRC_SNAP" "$EXP" "$pend"
[ "$reput" -lt 6 ] || fail "(c) resume PUT all 6 blocks again although all were PUT"

# ---- (c2) CompleteSnapshot ran, its answer was lost ---------------------------------
setup_case c2
write_blocks "$IMG" "$EXP" 41 8 9 1000
emu_config '{"stall_s": 30}'
emu_faults '{"op": "CompleteSnapshot", "kind": "stall"}'
"$EBSFS" --commit "$IMG" >"$EMU_TMP/commit-c2.out" 2>"$EMU_TMP/commit-c2.err" &
cpid=$!
on_exit "kill $cpid 2>/dev/null"
wait_until 120 '[ "$(count_snapshots_of "$SRC_SNAP" completed)" -ge 1 ]' ||
  { cat "$EMU_TMP/commit-c2.err" "$EBSFS_LOG" >&2; fail "(c2) no completed snapshot in 120 s"; }
done_id=$(snapshots_of "$SRC_SNAP" completed)
kill9_daemon "$EBSFS_PID" "$MNT"
wait_pid "$cpid" 60 >/dev/null
emu_clear_faults
resume_ok "$STG"
echo "(c2) resume answered $SNAP (completed before the kill: $done_id)"
check_resumed c2 "$SRC_SNAP" "$EXP" "$done_id"

# ---- (d) the pending snapshot timed out: a fresh one ---------------------------------
# timeout_unit_s 0.1: commit_timeout=10 "minutes" is 1 s without a PUT.
setup_case d "max_requests=2,commit_timeout=10"
write_blocks "$IMG" "$EXP" 51 $(seq 600 639)
emu_config '{"latency_ms": 300, "timeout_unit_s": 0.1}'
emu_reset_counters
"$EBSFS" --commit "$IMG" >"$EMU_TMP/commit-d.out" 2>"$EMU_TMP/commit-d.err" &
cpid=$!
on_exit "kill $cpid 2>/dev/null"
wait_until 120 '[ "$(emu_counter PutSnapshotBlock)" -ge 4 ]' ||
  { cat "$EMU_TMP/commit-d.err" "$EBSFS_LOG" >&2; fail "(d) fewer than 4 PUTs in 120 s"; }
kill9_daemon "$EBSFS_PID" "$MNT"
wait_pid "$cpid" 60 >/dev/null
dead=$(snapshots_of "$SRC_SNAP" | head -n 1)
[ "$(snap_info "$dead" Status)" != completed ] || fail "(d) test setup: the commit completed before the kill"
[ "$(snap_info "$dead" Timeout)" = 10 ] || fail "(d) -o commit_timeout=10 gave StartSnapshot Timeout '$(snap_info "$dead" Timeout)'"
wait_until 30 '[ "$(snap_info "$dead" Status)" = error ]' || fail "(d) $dead did not time out (status $(snap_info "$dead" Status))"
# Real minutes again, so that the fresh attempt cannot time out on a loaded machine.
emu_config '{"latency_ms": 0, "timeout_unit_s": 60}'
resume_ok "$STG"
echo "(d) $dead timed out; resume made $SNAP"
[ "$SNAP" != "$dead" ] || fail "(d) resume answered the timed-out snapshot $dead"
check_resumed d "$SRC_SNAP" "$EXP"
emu_config '{"timeout_unit_s": 60}'
exit 0
