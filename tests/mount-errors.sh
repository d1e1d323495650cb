#!/usr/bin/env bash
# mount-errors.sh - every error ebsfs can see before mounting ends with one
# clear line on stderr, a non-zero exit and nothing mounted (daemon mode:
# the parent reports the child's verdict).  Then the good paths around
# them: -h/-V, writes refused with EROFS, the daemon going away after
# fusermount3 -u, SIGTERM and SIGINT unmounting cleanly with exit 0 and no
# warnings printed, SIGTERM too while a read waits on a stalled endpoint.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires timeout
start_emulator --quiet

head -c 3000000 /dev/urandom >"$EMU_TMP/src.img"
snap=$(emu_import "$EMU_TMP/src.img") || fail "import"
mnt=$(mount_dir mnt)

# expect_error WORDS [env VAR=... ...] -- ebsfs ARGS: fails unless ebsfs
# exits non-zero within 3 minutes, printed exactly one line matching WORDS
# (an extended regex, case-insensitive), and left nothing mounted.
expect_error() {
  local words=$1 rc out; shift
  out=$(timeout 180 "$@" 2>&1 >/dev/null); rc=$?
  [ "$rc" -ne 124 ] || fail "'$*' hung"
  [ "$rc" -ne 0 ] || fail "'$*' succeeded; expected: $words"
  is_mounted "$mnt" && { fusermount3 -u "$mnt"; fail "'$*' left $mnt mounted"; }
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "'$*' printed more than one line:
$out"
  printf '%s\n' "$out" | grep -Eqi "$words" || fail "'$*' printed '$out'; expected: $words"
  echo "ok: $out"
}

# Usage and arguments.
expect_error "missing" "$EBSFS" "$snap"
expect_error "mountpoint" "$EBSFS" "$snap" "$EMU_TMP/no-such-dir"
expect_error "mountpoint" "$EBSFS" "$snap" "$EMU_TMP/src.img"
expect_error "not a snapshot ID" "$EBSFS" vol-0123456789abcdef0 "$mnt"
expect_error "not a snapshot ID" "$EBSFS" snap-XYZ "$mnt"
expect_error "cache_size" "$EBSFS" -o cache_size=lots "$snap" "$mnt"
expect_error "unknown option|invalid" "$EBSFS" -o no_such_option=1 "$snap" "$mnt"

# The service says no.
expect_error "not found" "$EBSFS" snap-0123456789abcdef0 "$mnt"
expect_error "not found" "$EBSFS" "$snap" snap-0123456789abcdef0 "$mnt"
pending=$(PYTHONPATH="$top_srcdir/tests/emulator" "$PYTHON3" - "$EMU_URL/snapshots" <<'PY'
import json, os, sys, urllib.request
from ebsemu.sigv4 import sign
url, body = sys.argv[1], json.dumps({"VolumeSize": 1}).encode()
h = sign("POST", url, {"Content-Type": "application/json"}, body,
         os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], "us-east-1")
r = urllib.request.urlopen(urllib.request.Request(url, data=body, headers=h, method="POST"), timeout=10)
print(json.load(r)["SnapshotId"])
PY
) || fail "start a pending snapshot"
expect_error "not completed|pending" "$EBSFS" "$pending" "$mnt"
emu_faults '{"op": "ListSnapshotBlocks", "kind": "403"}'
expect_error "access denied" "$EBSFS" "$snap" "$mnt"
emu_clear_faults
expect_error "access denied|signature|credential" \
  env AWS_SECRET_ACCESS_KEY=wrong-secret-for-this-test "$EBSFS" "$snap" "$mnt"
expect_error "access denied|unrecognized|credential" \
  env AWS_ACCESS_KEY_ID=AKIDUNKNOWN "$EBSFS" "$snap" "$mnt"

# Local configuration.
expect_error "credentials" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$EBSFS" "$snap" "$mnt"
expect_error "region" env -u AWS_REGION -u AWS_DEFAULT_REGION "$EBSFS" "$snap" "$mnt"
expect_error "endpoint|reach|connect|refused" "$EBSFS" -o endpoint=http://127.0.0.1:1 "$snap" "$mnt"
expect_error "endpoint|url" "$EBSFS" -o endpoint=ftp://example.com "$snap" "$mnt"
# No secret ever printed, whatever went wrong.
out=$(timeout 180 env AWS_ACCESS_KEY_ID=AKIDUNKNOWN "$EBSFS" -f -o debug=all "$snap" "$mnt" 2>&1)
printf '%s\n' "$out" | grep -q "$AWS_SECRET_ACCESS_KEY" && fail "ebsfs printed the secret key"

# -h lists every option with its default; -V the versions.
help=$("$EBSFS" -h) || fail "ebsfs -h failed"
for o in region= profile= endpoint= ca_bundle= cache_size= max_requests= readahead= rate_limit= \
         debug= -f -d -s -V; do
  printf '%s\n' "$help" | grep -q -- "$o" || fail "-h does not mention $o"
done
[ "$(printf '%s\n' "$help" | grep -c 'default')" -ge 8 ] || fail "-h does not give the defaults"
"$EBSFS" -V | grep -q "^ebsfs [0-9]" || fail "ebsfs -V"

# Daemon mode: returns once mounted, exit 0; goes away after fusermount3 -u.
"$EBSFS" "$snap" "$mnt" || fail "daemon mode mount failed"
on_exit "is_mounted '$mnt' && fusermount3 -u -z '$mnt'"
is_mounted "$mnt" || fail "daemon mode returned before mounting"
cmp <(head -c 3000000 "$mnt/$snap") "$EMU_TMP/src.img" || fail "daemon mode read"
grep -q " $mnt fuse.ebsfs " /proc/mounts || fail "mount table: $(grep "$mnt" /proc/mounts)"
dpid=$(pgrep -f -x -- "$EBSFS $snap $mnt") || fail "cannot find the daemon"
# Writes are refused with EROFS, whatever the way.
out=$(sh -c "echo x > '$mnt/$snap'" 2>&1) && fail "a write succeeded"
echo "$out" | grep -q "Read-only file system" || fail "write: $out"
out=$(dd if=/dev/zero of="$mnt/$snap" bs=4096 count=1 conv=notrunc 2>&1) && fail "dd write succeeded"
echo "$out" | grep -q "Read-only file system" || fail "dd write: $out"
"$PYTHON3" -c '
import errno, os, sys
try:
    os.open(sys.argv[1], os.O_RDWR)
except OSError as e:
    sys.exit(0 if e.errno == errno.EROFS else e.errno)
sys.exit(1)' "$mnt/$snap" || fail "open O_RDWR did not give EROFS"
chmod 600 "$mnt/$snap" 2>/dev/null && fail "chmod succeeded"
touch "$mnt/new-file" 2>/dev/null && fail "creating a file succeeded"
fusermount3 -u "$mnt" || fail "fusermount3 -u"
for (( i=0; i<200; i++ )); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$dpid" 2>/dev/null && fail "the daemon still runs after unmount"

# Foreground: SIGTERM and SIGINT unmount, exit 0, nothing alarming printed.
for sig in TERM INT; do
  [ $sig = INT ] && EBSFS_WRAPPER=("${WITH_SIGINT[@]}")
  start_ebsfs "$mnt" "$snap"
  cmp <(head -c 3000000 "$mnt/$snap") "$EMU_TMP/src.img" || fail "foreground read"
  kill -$sig "$EBSFS_PID"
  for (( i=0; i<200; i++ )); do _running "$EBSFS_PID" || break; sleep 0.05; done
  _running "$EBSFS_PID" && fail "SIG$sig did not stop ebsfs"
  wait "$EBSFS_PID"; rc=$?
  [ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "exit $rc after SIG$sig"; }
  is_mounted "$mnt" && fail "SIG$sig left $mnt mounted"
  check_ebsfs_log "$EBSFS_LOG"
done
EBSFS_WRAPPER=()

# SIGTERM while a read waits for a block the endpoint holds for 60 s: the
# read fails at once (cancelled) and ebsfs exits 0 within seconds, where it
# used to wait out the fetch's retries (92 s).
emu_faults '[{"op": "GetSnapshotBlock", "kind": "delay", "delay_ms": 60000, "block_index": 5}]' ||
  fail "emu_faults"
start_ebsfs "$mnt" -o fs_prefetch=off "$snap"
dd if="$mnt/$snap" of=/dev/null bs=4096 count=1 skip=$((5 * 128)) iflag=direct status=none \
  2>"$EMU_TMP/held.err" &
ddpid=$!
for (( i=0; i<100; i++ )); do
  [ "$(emu_counter GetSnapshotBlock)" -ge 6 ] && break
  sleep 0.05
done
sleep 0.2                                       # the read is waiting by now
kill -TERM "$EBSFS_PID"
for (( i=0; i<200; i++ )); do _running "$EBSFS_PID" || break; sleep 0.05; done
_running "$EBSFS_PID" && fail "SIGTERM did not stop ebsfs within 10 s while a read waited"
wait "$EBSFS_PID"; rc=$?
[ "$rc" -eq 0 ] || { cat "$EBSFS_LOG" >&2; fail "exit $rc after SIGTERM with a read waiting"; }
check_ebsfs_log "$EBSFS_LOG"
wait "$ddpid" && fail "the held read succeeded"
echo "held read: $(cat "$EMU_TMP/held.err")"
emu_clear_faults

# And the plain path: fusermount3 -u, exit 0, no warnings.
start_ebsfs "$mnt" "$snap"
ls -l "$mnt" >/dev/null || fail "ls"
stop_ebsfs "$mnt"
