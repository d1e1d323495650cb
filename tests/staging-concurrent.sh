#!/usr/bin/env bash
# staging-concurrent.sh - writes while a commit runs are not lost.  With a
# slow emulator and two connections, `ebsfs --commit` PUTs 40 blocks while
# the test rewrites all 40 (some already PUT, some not) and writes 5 new
# ones (ebsfs may make those writes wait for the commit).  The first snapshot holds, for each block, one whole version (old or
# new, never a mix, never anything else); the unmount commit that follows
# makes a child of it that equals the final image byte for byte.  With
# -o keep_staging the staging dir stays and records the last snapshot id;
# resuming it makes no snapshot.
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
make_sparse_source "$src" "$SIZE" 4 || fail "make the source image"
snap0=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt)
stg="$EMU_TMP/staging"
start_ebsfs "$mnt" -o "rw,staging_dir=$stg,max_requests=2,keep_staging" "$snap0"
img="$mnt/$snap0"
v1="$EMU_TMP/v1.img"                       # after the first writes
cp --sparse=always "$src" "$v1" || fail "cp"
write_blocks "$img" "$v1" 1 $(seq 0 39)
exp="$EMU_TMP/final.img"
cp --sparse=always "$v1" "$exp" || fail "cp"

emu_config '{"latency_ms": 500}'
emu_reset_counters
"$EBSFS" --commit "$img" >"$EMU_TMP/commit.out" 2>"$EMU_TMP/commit.err" &
cpid=$!
on_exit "kill $cpid 2>/dev/null"
wait_until 120 '[ "$(emu_counter PutSnapshotBlock)" -ge 3 ]' ||
  { cat "$EMU_TMP/commit.err" >&2; fail "fewer than 3 PUTs in 120 s"; }
_running "$cpid" || fail "test setup: the commit ended before the rewrites started"
# The writes are issued during the commit (ebsfs may hold them until it is
# done: the figures say how long they waited).
t0=$(date +%s%N)
write_blocks "$img" "$exp" 2 $(seq 0 39)   # rewrite them all during the commit
write_blocks "$img" "$exp" 3 $(seq 50 54)
echo "the writes issued during the commit took $(( ($(date +%s%N) - t0) / 1000000 )) ms;" \
  "PUTs by then: $(emu_counter PutSnapshotBlock) of 40; commit still running: $(_running "$cpid" && echo yes || echo no)"
wait_pid "$cpid" 300; rc=$?
emu_config '{"latency_ms": 0}'
[ "$rc" -eq 0 ] || { cat "$EMU_TMP/commit.err" >&2; fail "--commit exited $rc"; }
snap1=$(cat "$EMU_TMP/commit.out")
[[ "$snap1" =~ ^snap-[0-9a-f]+$ ]] || fail "--commit printed '$snap1'"
to cmp "$img" "$exp" || fail "the rw image does not read the last writes"

# snap1: each block one whole version.
out="$EMU_TMP/snap1.img"
emu_export "$snap1" "$out" --size "$SIZE" || fail "export"
"$PYTHON3" - "$out" "$src" "$v1" "$exp" <<'PY' || fail "$snap1 holds a block that is neither version"
import sys
B = 512 * 1024
files = [open(p, "rb") for p in sys.argv[1:]]
def block(f, i):
    f.seek(i * B)
    return f.read(B)
got_new = 0
for i in range(2048):
    x = block(files[0], i)
    versions = {block(f, i) for f in files[1:]}
    if x not in versions:
        sys.exit("block %d" % i)
    if x == block(files[3], i) and x != block(files[2], i):
        got_new += 1
print("snapshot 1 holds %d rewritten blocks in their new version" % got_new)
PY
rm -f "$out"

unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "the daemon exited $rc at unmount"; }
check_ebsfs_log "$EBSFS_LOG"
snap2=$(log_committed_id "$EBSFS_LOG")
if [ -z "$snap2" ] || [ "$snap2" = "$snap1" ]; then
  # Nothing left for the unmount commit: then snap1 must be the final image.
  echo "the unmount committed nothing new"
  check_export "$snap1" "$exp"
else
  echo "the unmount committed $snap2 ($(snap_info "$snap2" OwnBlocks) blocks)"
  [ "$(snap_info "$snap2" ParentSnapshotId)" = "$snap1" ] ||
    fail "$snap2 has parent '$(snap_info "$snap2" ParentSnapshotId)', expected $snap1"
  for b in $(snap_info "$snap2" OwnBlockIndices); do
    { [ "$b" -le 39 ] || { [ "$b" -ge 50 ] && [ "$b" -le 54 ]; }; } ||
      fail "$snap2 holds block $b, never written"
  done
  check_export "$snap2" "$exp"
fi
[ "$(count_snapshots_of "$snap0")" -eq 1 ] || fail "snapshots with parent $snap0: $(snapshots_of "$snap0" | xargs)"

# -o keep_staging: the staging dir stays, its journal names the last snapshot,
# and a --resume of it makes no other snapshot.
last=${snap2:-$snap1}
[ -d "$stg" ] || fail "-o keep_staging: the staging dir is gone"
check_staging_modes "$stg"
grep -rqF -- "$last" "$stg" || fail "the staging dir does not record the last snapshot id $last"
n_before=$(emu_admin GET /snapshots | "$PYTHON3" -c 'import json,sys; print(len(json.load(sys.stdin)))')
resume_dir "$stg"
echo "--resume of a committed staging dir: exit $RESUME_RC, stdout '$RESUME_OUT', stderr: $(head -n 1 "$RESUME_ERR")"
[ "$(emu_admin GET /snapshots | "$PYTHON3" -c 'import json,sys; print(len(json.load(sys.stdin)))')" -eq "$n_before" ] ||
  fail "--resume of a committed staging dir made a snapshot"
[ -z "$RESUME_OUT" ] || [ "$RESUME_OUT" = "$last" ] || fail "--resume of a committed staging dir printed '$RESUME_OUT'"
exit 0
