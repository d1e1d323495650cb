# staging-functions.sh - helpers for the write-mode (-o rw) tests.
#
# Source after tests/functions.sh and tests/mount-functions.sh.  They follow
# the user-visible contract of issue 4: `ebsfs -o rw SNAP MNT`, `ebsfs
# --commit MNT/IMAGE` (new snapshot id on stdout), `ebsfs --resume DIR`,
# commit on unmount ("committed snap-..." in the log).  What a test knows of
# the emulator comes from its admin endpoint (GET /snapshots[/ID], counters).
# Helpers that print a value are meant for $(...): they `fail` in the
# subshell, so call them as `x=$(helper ...) || exit 1`.

BLOCK=524288

# staging_watchdog SECONDS: the whole test is bounded; past SECONDS the test
# gets SIGTERM, which runs the on_exit chain (every blocking step has its own
# timeout too, this is the last resort).
staging_watchdog() {
  # The sleep is killed with the watchdog, so nothing we started outlives
  # the test (an orphan would hold the harness's output pipe open).
  ( trap 'kill $sp 2>/dev/null; exit 0' TERM
    sleep "$1" & sp=$!
    wait $sp && { echo "FAIL: watchdog: the test ran over $1 s" >&2; kill -TERM $$; } ) >/dev/null &
  on_exit "kill $! 2>/dev/null"
}

# to COMMAND...: run a command that touches the mount, bounded.
to() { timeout -k 5 "${STEP_TIMEOUT:-300}" "$@"; }

# wait_pid PID SECONDS: wait for our child PID to exit; returns its exit
# status, or 124 when it still runs after SECONDS.  Must run in the shell
# that started PID (not in $(...)).
wait_pid() {
  local pid=$1 n=$(( $2 * 20 )) i
  for (( i=0; i<n; i++ )); do
    _running "$pid" || break
    sleep 0.05
  done
  _running "$pid" && return 124
  wait "$pid"
}

# unmount_wait MNT [PID [SECONDS]]: unmount (that commits) and wait for the
# daemon; returns the daemon's exit status (124: still running).
unmount_wait() {
  local mnt=$1 pid=${2:-$EBSFS_PID} secs=${3:-300}
  fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt"
  wait_pid "$pid" "$secs"
}

# kill9_daemon [PID MNT]: kill -9 the daemon, reap it, drop the dead mount.
kill9_daemon() {
  local pid=${1:-$EBSFS_PID} mnt=${2:-}
  kill -9 "$pid" 2>/dev/null
  wait_pid "$pid" 10
  if [ -n "$mnt" ]; then
    fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
  fi
  return 0
}

# commit_image IMAGE: `ebsfs --commit IMAGE`; sets COMMIT_RC, COMMIT_OUT and
# COMMIT_ERR (a file).  Never fails by itself.
_commit_n=0
commit_image() {
  _commit_n=$((_commit_n + 1))
  COMMIT_ERR="$EMU_TMP/commit-$_commit_n.err"
  COMMIT_OUT=$(to "$EBSFS" --commit "$1" 2>"$COMMIT_ERR")
  COMMIT_RC=$?
}

# commit_ok IMAGE: --commit must succeed with one snapshot id on stdout; sets SNAP.
commit_ok() {
  commit_image "$1"
  if [ "$COMMIT_RC" -ne 0 ] || ! [[ "$COMMIT_OUT" =~ ^snap-[0-9a-f]+$ ]]; then
    cat "$COMMIT_ERR" >&2
    fail "ebsfs --commit $1: exit $COMMIT_RC, stdout '$COMMIT_OUT' (expected a snapshot id, exit 0)"
  fi
  SNAP=$COMMIT_OUT
}

# resume_dir DIR [ebsfs options]: `ebsfs --resume DIR`; sets RESUME_RC,
# RESUME_OUT, RESUME_ERR (a file).
_resume_n=0
resume_dir() {
  local dir=$1; shift
  _resume_n=$((_resume_n + 1))
  RESUME_ERR="$EMU_TMP/resume-$_resume_n.err"
  RESUME_OUT=$(to "$EBSFS" --resume "$dir" "$@" 2>"$RESUME_ERR")
  RESUME_RC=$?
}

# resume_ok DIR [options]: resume must succeed with one snapshot id on stdout; sets SNAP.
resume_ok() {
  resume_dir "$@"
  if [ "$RESUME_RC" -ne 0 ] || ! [[ "$RESUME_OUT" =~ ^snap-[0-9a-f]+$ ]]; then
    cat "$RESUME_ERR" >&2
    fail "ebsfs --resume $1: exit $RESUME_RC, stdout '$RESUME_OUT' (expected a snapshot id, exit 0)"
  fi
  SNAP=$RESUME_OUT
}

# log_committed_id LOG: the snapshot id of the last "committed snap-" line.
log_committed_id() {
  grep -o 'committed snap-[0-9a-f]*' "$1" | tail -n 1 | sed 's/^committed //'
}

# ---- the emulator's view -------------------------------------------------------
# snap_info SNAP FIELD: a field of GET /snapshots/SNAP ("" when absent; lists
# space separated).
snap_info() {
  emu_admin GET "/snapshots/$1" | "$PYTHON3" -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
if v is None: v = ""
elif isinstance(v, list): v = " ".join(str(x) for x in v)
elif isinstance(v, bool): v = "true" if v else "false"
print(v)' "$2"
}

# snapshots_of PARENT [STATUS]: ids of the snapshots whose parent is PARENT
# ("" = no parent), with that status if given, one a line.
snapshots_of() {
  emu_admin GET /snapshots | "$PYTHON3" -c '
import json, sys
parent, status = sys.argv[1], sys.argv[2]
for s in json.load(sys.stdin):
    if s.get("ParentSnapshotId", "") == parent and (not status or s["Status"] == status):
        print(s["SnapshotId"])' "$1" "${2:-}"
}
count_snapshots_of() { snapshots_of "$@" | grep -c . ; }

# by_snapshot_count SNAP OP: requests OP counted for SNAP.
by_snapshot_count() {
  emu_admin GET /counters | "$PYTHON3" -c '
import json, sys
print(json.load(sys.stdin).get("by_snapshot", {}).get(sys.argv[1], {}).get(sys.argv[2], 0))' "$1" "$2"
}

# ---- comparing ---------------------------------------------------------------------
# check_export SNAP EXPECTED: the emulator's export of SNAP equals EXPECTED.
check_export() {
  local out="$EMU_TMP/export-$1.img"
  emu_export "$1" "$out" --size "$(stat -c %s "$2")" || fail "emu export $1"
  cmp "$out" "$2" || { rm -f "$out"; fail "snapshot $1 (emulator export) differs from $2"; }
  rm -f "$out"
}

# check_ro_mount SNAP EXPECTED: a fresh read-only ebsfs mount of SNAP reads
# back EXPECTED byte for byte; unmounted cleanly.
check_ro_mount() {
  local m pid=${EBSFS_PID:-} log=${EBSFS_LOG:-}
  m=$(mount_dir "ro-$1-$RANDOM")
  start_ebsfs "$m" "$1"
  [ "$(stat -c %s "$m/$1")" -eq "$(stat -c %s "$2")" ] ||
    fail "read-only $1 is $(stat -c %s "$m/$1") bytes, expected $(stat -c %s "$2")"
  to cmp "$m/$1" "$2" || fail "snapshot $1 read through a read-only mount differs from $2"
  stop_ebsfs "$m"
  EBSFS_PID=$pid EBSFS_LOG=$log      # the rw mount's, for the caller
}

# write_both IMAGE EXPECTED OFFSET LENGTH SEED [nofsync]: the same
# deterministic random bytes at OFFSET in the mounted IMAGE and the local
# EXPECTED file; fsync on IMAGE unless nofsync.  SEED "zero" writes zeros.
write_both() {
  to "$PYTHON3" - "$@" <<'PY' || fail "write $3+$4 to $1"
import os, random, sys
img, exp, off, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
data = bytes(n) if seed == "zero" else random.Random(int(seed)).randbytes(n)
for path in (img, exp):
    fd = os.open(path, os.O_WRONLY)
    if os.pwrite(fd, data, off) != n:
        sys.exit("short write to %s" % path)
    if path == img and not (len(sys.argv) > 6 and sys.argv[6] == "nofsync"):
        os.fsync(fd)
    os.close(fd)
PY
}

# ---- the staging directory ------------------------------------------------------
# check_staging_modes DIR: DIR (and every directory in it) is 0700, every
# file 0600, and it holds at least one file.
check_staging_modes() {
  local dir=$1 bad
  [ -d "$dir" ] || fail "staging dir $dir is missing"
  [ "$(stat -c %a "$dir")" = 700 ] || fail "staging dir $dir has mode $(stat -c %a "$dir"), expected 700"
  bad=$(find "$dir" -mindepth 1 \( -type d ! -perm 0700 \) -o \( -type f ! -perm 0600 \) -printf '%m %p\n')
  [ -z "$bad" ] || fail "staging entries with wrong modes (dirs 700, files 600): $bad"
  [ -n "$(find "$dir" -type f -print -quit)" ] || fail "staging dir $dir holds no file"
}

# staged_bytes DIR: bytes allocated on disk under DIR.
staged_bytes() { du -s -B1 "$1" | cut -f1; }

# ---- loop devices on the mounted image ----------------------------------------------
# loop_attach IMAGE [ro]: sets LOOP_DEV; the exit chain detaches it (only if it
# still backs IMAGE: the number may be reused by someone else).
loop_attach() {
  local img=$1 ro=()
  [ "${2:-}" = ro ] && ro=(-r)
  LOOP_DEV=$(to losetup "${ro[@]}" -f --show "$img") || fail "losetup -f $img"
  on_exit "_loop_cleanup '$LOOP_DEV' '$img'"
}
_loop_cleanup() {
  [ "$(losetup -n -O BACK-FILE "$1" 2>/dev/null)" = "$2" ] || return 0
  umount "$1" 2>/dev/null
  losetup -d "$1" 2>/dev/null
  return 0
}

# loop_detach DEV IMAGE: detach and wait (10 s at most) until the kernel let
# go of IMAGE, so what the file system wrote reached ebsfs.
loop_detach() {
  local dev=$1 img=$2 i
  to losetup -d "$dev" || fail "losetup -d $dev"
  for (( i=0; i<200; i++ )); do
    [ "$(losetup -n -O BACK-FILE "$dev" 2>/dev/null)" = "$img" ] || return 0
    sleep 0.05
  done
  fail "$dev still backs $img 10 s after losetup -d"
}

# fs_mount IMAGE DIR: the ext4 in the mounted IMAGE, read-write, on DIR.
fs_mount() {
  loop_attach "$1"
  FS_DEV=$LOOP_DEV
  to mount -t ext4 "$FS_DEV" "$2" || fail "mount $FS_DEV ($1) on $2"
  on_exit "umount '$2' 2>/dev/null || umount -l '$2' 2>/dev/null"
}
# fs_umount IMAGE DIR: unmount, detach the loop device.
fs_umount() {
  to umount "$2" || fail "umount $2"
  loop_detach "$FS_DEV" "$1"
}

# write_blocks IMAGE EXPECTED SEED INDEX...: whole random blocks at those
# indices in both files, one fsync on IMAGE at the end.
write_blocks() {
  to "$PYTHON3" - "$@" <<'PY' || fail "write blocks to $1"
import os, random, sys
B = 512 * 1024
img, exp, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
fi, fe = os.open(img, os.O_WRONLY), os.open(exp, os.O_WRONLY)
for i in sys.argv[4:]:
    data = rnd.randbytes(B)
    for fd in (fi, fe):
        if os.pwrite(fd, data, int(i) * B) != B:
            sys.exit("short write")
os.fsync(fi)
os.close(fi); os.close(fe)
PY
}

# wait_until SECONDS SHELL-CONDITION: poll (every 0.1 s) until the condition
# holds; returns 1 when it did not within SECONDS.
wait_until() {
  local end=$(( SECONDS + $1 )); shift
  while [ "$SECONDS" -lt "$end" ]; do
    eval "$1" && return 0
    sleep 0.1
  done
  eval "$1"
}
