#!/usr/bin/env bash
# staging-failure.sh - a commit that cannot succeed keeps everything and
# says how to retry:
#  - the default staging dir (${XDG_CACHE_HOME:-$HOME/.cache}/ebsfs/
#    staging-SNAP-TIME-PID) is logged, mode 0700, files 0600 even under
#    umask 000; a --resume on it while it is mounted is refused;
#  - PutSnapshotBlock answered 403 AccessDenied: `ebsfs --commit` exits 1
#    with a one-line error, the mount stays usable; unmounting exits non-zero
#    and logs `ebsfs --resume DIR`; the staging dir is intact; once the fault
#    is gone `ebsfs --resume DIR` makes the right snapshot (no second completed
#    one) and removes the committed staging data;
#  - transient faults (503, throttles, connection resets after a stored
#    PUT, a reset StartSnapshot answer, a 503 CompleteSnapshot, a 50 req/s
#    limit): the commit succeeds, one snapshot, right data;
#  - the endpoint down (emulator stopped): the same, resumed against the
#    emulator restarted on another port.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
. "$top_srcdir/tests/staging-functions.sh"
set -u

requires_ebsfs
requires cmp
start_emulator --quiet
staging_watchdog 900
unset XDG_CACHE_HOME

SIZE=$((1024 * 1024 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" "$SIZE" 9 || fail "make the source image"

# staging_listing DIR: the files and their sizes (to see nothing was removed).
staging_listing() { (cd "$1" && find . -type f -printf '%p %s\n' | sort); }

# commit_fails IMAGE WHAT STG: --commit must fail with exit 1, a one-line error
# that says where the staged data is kept, nothing on stdout.
commit_fails() {
  commit_image "$1"
  [ "$COMMIT_RC" -eq 1 ] || { cat "$COMMIT_ERR" >&2; fail "$2: --commit exited $COMMIT_RC, expected 1"; }
  [ -z "$COMMIT_OUT" ] || fail "$2: a failed --commit printed '$COMMIT_OUT' on stdout"
  [ "$(grep -c . "$COMMIT_ERR")" -eq 1 ] ||
    { cat "$COMMIT_ERR" >&2; fail "$2: expected a one-line error from --commit, got $(grep -c . "$COMMIT_ERR") lines"; }
  grep -qF -- "kept in $3" "$COMMIT_ERR" ||
    { cat "$COMMIT_ERR" >&2; fail "$2: --commit does not say the staged data is kept in $3"; }
  echo "$2: --commit said: $(cat "$COMMIT_ERR")"
}

# unmount_fails MNT STG WHAT: unmounting must end the daemon non-zero, with
# `ebsfs --resume STG` in its log, the staging dir intact.
unmount_fails() {
  local mnt=$1 stg=$2 what=$3 before rc
  before=$(staging_listing "$stg")
  unmount_wait "$mnt"; rc=$?
  [ "$rc" -ne 124 ] || fail "$what: the daemon still runs 300 s after the unmount"
  [ "$rc" -ne 0 ] || { cat "$EBSFS_LOG" >&2; fail "$what: the daemon exited 0 although the commit failed"; }
  grep -q -- '--resume' "$EBSFS_LOG" || { cat "$EBSFS_LOG" >&2; fail "$what: the log does not name --resume"; }
  grep -qF -- "$stg" "$EBSFS_LOG" || { cat "$EBSFS_LOG" >&2; fail "$what: the log does not name the staging dir $stg"; }
  grep -q 'committed snap-' "$EBSFS_LOG" && fail "$what: the log claims a commit"
  check_staging_modes "$stg"
  local after
  after=$(staging_listing "$stg")
  # Files may grow (journal records) but none disappears or shrinks.
  "$PYTHON3" - "$before" "$after" <<'PY' || fail "$what: the staging dir lost files after the failed commit"
import sys
def parse(t):
    return {l.rsplit(" ", 1)[0]: int(l.rsplit(" ", 1)[1]) for l in t.splitlines() if l}
b, a = parse(sys.argv[1]), parse(sys.argv[2])
bad = [p for p in b if p not in a or a[p] < b[p]]
if bad:
    sys.exit("missing or shrunk: %s" % bad)
PY
}

# ---- 403 on PutSnapshotBlock, default staging dir ------------------------------------
snap0=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt)
exp="$EMU_TMP/expected.img"
cp --sparse=always "$src" "$exp" || fail "cp"
# umask 000: the modes must not depend on the caller's umask.
old_umask=$(umask)
umask 000
start_ebsfs "$mnt" -o rw "$snap0"
umask "$old_umask"
img="$mnt/$snap0"
shopt -s nullglob
dirs=("$HOME/.cache/ebsfs/staging-$snap0-"*)
shopt -u nullglob
[ ${#dirs[@]} -eq 1 ] || fail "expected one staging dir $HOME/.cache/ebsfs/staging-$snap0-*, found: ${dirs[*]:-none}"
stg=${dirs[0]}
[[ "$stg" == *"-$EBSFS_PID" ]] || fail "the default staging dir $stg does not end with the daemon's pid $EBSFS_PID"
grep -qF -- "$stg" "$EBSFS_LOG" || { cat "$EBSFS_LOG" >&2; fail "the mount does not log its staging dir $stg"; }
write_both "$img" "$exp" $((BLOCK - 10)) 20 61                     # across a block boundary
write_blocks "$img" "$exp" 62 40 41 42 800
write_both "$img" "$exp" $((5 * BLOCK)) "$BLOCK" zero
check_staging_modes "$stg"

# The mount owns its staging dir: a --resume now must refuse, not commit.
emu_reset_counters
resume_dir "$stg"
[ "$RESUME_RC" -ne 0 ] || fail "--resume of a mounted staging dir succeeded (printed '$RESUME_OUT')"
[ -z "$RESUME_OUT" ] || fail "--resume of a mounted staging dir printed '$RESUME_OUT'"
[ "$(emu_counter StartSnapshot)" -eq 0 ] || fail "--resume of a mounted staging dir called StartSnapshot"
echo "resume while mounted: $(head -n 1 "$RESUME_ERR")"

emu_faults '{"op": "PutSnapshotBlock", "kind": "403"}'
commit_fails "$img" "403" "$stg"
[ "$(count_snapshots_of "$snap0" completed)" -eq 0 ] || fail "403: a snapshot was completed"
to cmp "$img" "$exp" || fail "403: after the failed --commit the mount does not read back the writes"
check_staging_modes "$stg"
unmount_fails "$mnt" "$stg" "403"

emu_clear_faults
resume_ok "$stg"
echo "403: resumed: $SNAP; snapshots with parent $snap0: $(snapshots_of "$snap0" | xargs)"
[ "$(snap_info "$SNAP" Status)" = completed ] || fail "403: $SNAP is $(snap_info "$SNAP" Status)"
[ "$(snap_info "$SNAP" ParentSnapshotId)" = "$snap0" ] || fail "403: $SNAP has the wrong parent"
[ "$(count_snapshots_of "$snap0" completed)" -eq 1 ] || fail "403: completed snapshots: $(snapshots_of "$snap0" completed | xargs)"
check_export "$SNAP" "$exp"
if [ -d "$stg" ] && [ "$(staged_bytes "$stg")" -ge "$BLOCK" ]; then
  fail "403: the staging dir still holds $(staged_bytes "$stg") bytes after a successful resume"
fi

# ---- transient faults: the commit goes through --------------------------------------
snap2=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt-transient)
exp="$EMU_TMP/expected-transient.img"
cp --sparse=always "$src" "$exp" || fail "cp"
# 4 PUTs in flight against a 50 req/s server: throttled now and then, not on
# every attempt.  Each PUT has 8 attempts; with 0.16 of attempts failing one
# of the 60 blocks exhausts them in about 60 x 0.16^8 = 3e-5 of runs (and no
# fault fires at all in 0.84^60 = 3e-5), where 128 in flight against 20 req/s
# and 40% faults failed CI.
start_ebsfs "$mnt" -o "rw,staging_dir=$EMU_TMP/staging-transient,max_requests=4" "$snap2"
img="$mnt/$snap2"
write_blocks "$img" "$exp" 81 $(seq 1000 1059)
emu_faults '[{"op": "PutSnapshotBlock", "kind": "503", "probability": 0.08},
             {"op": "PutSnapshotBlock", "kind": "throttle", "probability": 0.04},
             {"op": "PutSnapshotBlock", "kind": "reset", "probability": 0.04},
             {"op": "StartSnapshot", "kind": "reset", "count": 1},
             {"op": "CompleteSnapshot", "kind": "503", "count": 1}]'
emu_config '{"rate_limit": 50}'
emu_reset_counters
commit_ok "$img"
emu_clear_faults
emu_config '{"rate_limit": 1000}'
echo "transient faults: committed $SNAP; PutSnapshotBlock $(emu_counter PutSnapshotBlock) for 60 blocks, faults $(emu_admin GET /counters | "$PYTHON3" -c 'import json,sys; c=json.load(sys.stdin); print(c["faults"], "throttled", c["throttled"])')"
[ "$(emu_counter PutSnapshotBlock)" -gt 60 ] || fail "transient faults: no PUT was retried"
[ "$(count_snapshots_of "$snap2")" -eq 1 ] || fail "transient faults: snapshots: $(snapshots_of "$snap2" | xargs)"
check_export "$SNAP" "$exp"
unmount_wait "$mnt"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "transient faults: the daemon exited $rc at unmount"; }

# ---- the endpoint down ----------------------------------------------------------------
snap1=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt-down)
stg="$EMU_TMP/staging-down"
exp="$EMU_TMP/expected-down.img"
cp --sparse=always "$src" "$exp" || fail "cp"
start_ebsfs "$mnt" -o "rw,staging_dir=$stg" "$snap1"
img="$mnt/$snap1"
write_blocks "$img" "$exp" 71 3 4 1500
write_both "$img" "$exp" $((100 * BLOCK + 333)) 5000 72
stop_emulator
commit_fails "$img" "endpoint down" "$stg"
unmount_fails "$mnt" "$stg" "endpoint down"
restart_emulator --quiet
[ "$(count_snapshots_of "$snap1")" -eq 0 ] || fail "endpoint down: snapshots appeared: $(snapshots_of "$snap1" | xargs)"
resume_ok "$stg"
echo "endpoint down: resumed: $SNAP"
[ "$(snap_info "$SNAP" ParentSnapshotId)" = "$snap1" ] || fail "endpoint down: $SNAP has the wrong parent"
[ "$(count_snapshots_of "$snap1")" -eq 1 ] || fail "endpoint down: snapshots: $(snapshots_of "$snap1" | xargs)"
check_export "$SNAP" "$exp"
# A second resume of a finished job must not make another snapshot.
if [ -d "$stg" ]; then
  resume_dir "$stg"
  [ "$(count_snapshots_of "$snap1")" -eq 1 ] || fail "a second --resume made another snapshot: $(snapshots_of "$snap1" | xargs)"
fi
exit 0
