# mount-functions.sh - helpers for the tests that mount ebsfs for real.
#
# Source after tests/functions.sh.  Each test mounts on its own temp dir,
# runs ebsfs in the foreground as a background job (so the test sees its exit
# status and everything it printed), and the on_exit chain unmounts whatever
# is left even when the test fails half way.  stop_ebsfs is the strict
# path: it unmounts, and fails the test unless the daemon exited 0 and
# printed no error, warning or sanitizer report.

EBSFS="${top_builddir}/ebsfs"

requires_ebsfs() {
  [ -x "$EBSFS" ] || skip "$EBSFS is not built"
  requires_fuse
  requires mountpoint
}

# mount_dir NAME: a fresh empty directory under the test's temp dir.
mount_dir() {
  local d="$EMU_TMP/$1"
  mkdir -p "$d" || fail "mkdir $d"
  echo "$d"
}

# is_mounted DIR: DIR is a mount point right now.
is_mounted() { mountpoint -q "$1" 2>/dev/null; }

# start_ebsfs MOUNTPOINT [ebsfs arguments, snapshots first or options]...
# Runs "ebsfs -f ARGS... MOUNTPOINT" in the background and waits (30 s at
# most) for the mount.  Sets EBSFS_PID and EBSFS_LOG (one per mountpoint:
# EBSFS_LOG_<n>); registers the unmount with on_exit.
# EBSFS_WRAPPER (an array) runs ebsfs under something: valgrind, or
# WITH_SIGINT below.
_ebsfs_n=0
EBSFS_WRAPPER=()
start_ebsfs() {
  local mnt=$1 i; shift
  _ebsfs_n=$((_ebsfs_n + 1))
  EBSFS_LOG="$EMU_TMP/ebsfs-$_ebsfs_n.log"
  "${EBSFS_WRAPPER[@]}" "$EBSFS" -f "$@" "$mnt" >"$EBSFS_LOG" 2>&1 &
  EBSFS_PID=$!
  on_exit "_ebsfs_cleanup '$mnt' $EBSFS_PID"
  for (( i=0; i<600; i++ )); do
    is_mounted "$mnt" && return 0
    if ! _running "$EBSFS_PID"; then
      cat "$EBSFS_LOG" >&2
      fail "ebsfs exited before mounting $mnt"
    fi
    sleep 0.05
  done
  cat "$EBSFS_LOG" >&2
  fail "ebsfs did not mount $mnt in 30 s"
}

# EBSFS_WRAPPER=("${WITH_SIGINT[@]}"): run ebsfs with SIGINT at its
# default.  A non-interactive shell starts background jobs with SIGINT
# ignored, and libfuse (rightly) leaves an ignored signal ignored.  It
# execs, so EBSFS_PID is ebsfs's pid.
WITH_SIGINT=("$PYTHON3" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])')

# Best effort, for the exit chain: lazy unmount, then make sure the daemon
# we started (and only it) is gone.
_ebsfs_cleanup() {
  local mnt=$1 pid=$2 i
  is_mounted "$mnt" && { fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null; }
  for (( i=0; i<100; i++ )); do
    _running "$pid" || break
    sleep 0.05
  done
  if _running "$pid"; then
    kill "$pid" 2>/dev/null
    sleep 0.5
    kill -9 "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  return 0
}

# check_ebsfs_log LOG: fail if ebsfs printed an error, a warning or a
# sanitizer/valgrind report.  With EBSFS_ALLOW_WARNINGS=1 (fault injection:
# retries are worth a warning) only sanitizer reports and crashes count.
check_ebsfs_log() {
  local pat='error|warning|sanitizer|runtime error|leak|invalid (read|write)'
  [ "${EBSFS_ALLOW_WARNINGS:-0}" = 1 ] && pat='sanitizer|runtime error|leak|invalid (read|write)|assert'
  if grep -Ei "$pat" "$1" >&2; then
    fail "ebsfs printed the lines above ($1)"
  fi
  return 0
}

# stop_ebsfs MOUNTPOINT [PID LOG]: unmount; the daemon must exit 0 and
# have printed nothing alarming.
stop_ebsfs() {
  local mnt=$1 pid=${2:-$EBSFS_PID} log=${3:-$EBSFS_LOG} i rc
  fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt"
  for (( i=0; i<400; i++ )); do
    _running "$pid" || break
    sleep 0.05
  done
  _running "$pid" && fail "ebsfs (pid $pid) still runs 20 s after unmounting $mnt"
  wait "$pid"; rc=$?
  [ "$rc" -eq 0 ] || { cat "$log" >&2; fail "ebsfs exited with $rc after unmounting $mnt"; }
  check_ebsfs_log "$log"
}

# loop_mount IMAGE DIR FSOPTS: mount a file system image read-only through a
# loop device (autocleared on umount); unmounted by the exit chain.
loop_mount() {
  local img=$1 dir=$2 opts=$3
  mount -o "loop,$opts" "$img" "$dir" || fail "mount -o loop,$opts $img $dir"
  on_exit "umount '$dir' 2>/dev/null || umount -l '$dir' 2>/dev/null"
}

# wait_log LOG PATTERN: wait (10 s at most) until LOG has a line matching
# PATTERN (grep -E); fails with the log shown otherwise.
wait_log() {
  local log=$1 pattern=$2 i
  for (( i=0; i<200; i++ )); do
    grep -Eq -- "$pattern" "$log" && return 0
    sleep 0.05
  done
  cat "$log" >&2
  fail "no '$pattern' in $log after 10 s"
}

# gets_settle: wait until the emulator has counted no new GetSnapshotBlock
# for half a second (20 s at most): what was queued has been fetched.
gets_settle() {
  local i prev=-1 n
  for (( i=0; i<40; i++ )); do
    n=$(emu_counter GetSnapshotBlock)
    [ "$n" = "$prev" ] && return 0
    prev=$n
    sleep 0.5
  done
  fail "GetSnapshotBlock still rising after 20 s"
}

# make_sparse_source FILE SIZE SEED: random data with holes, partial blocks
# and data up to the very end; prints nothing.  Deterministic per seed.
make_sparse_source() {
  "$PYTHON3" - "$1" "$2" "$3" <<'PY'
import os, random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
B = 512 * 1024
regions = [
    (0, 3 * B),                          # a run of whole blocks from the start
    (10 * B + 1234, 100 * 1024),         # a partial block, unaligned
    (20 * B - 4096, 8192),               # straddles a block boundary
    (100 * B, 4 * B),                    # a run in the middle
    (size // 2 + 3, 4096),               # an unaligned 4 KiB far away
    (size - B - 700 * 1024, B + 700 * 1024),  # up to the very last byte
]
nb = size // B
for _ in range(24):                      # scattered single blocks
    b = rnd.randrange(0, nb)
    regions.append((b * B, B))
with open(path, "wb") as f:
    f.truncate(size)
    for off, n in regions:
        f.seek(off)
        f.write(rnd.randbytes(n))
PY
}
