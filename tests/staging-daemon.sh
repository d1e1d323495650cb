#!/usr/bin/env bash
# staging-daemon.sh - the default, daemonized mode commits at unmount too.
# `ebsfs -o rw SNAP MNT` returns once the mount is in place and logs to
# syslog; after writes, `fusermount3 -u` returns at once while the daemon
# commits in the background; -o snapshot_id_file is how a script learns the
# new ID then.  The snapshot must hold exactly what was written, the source
# as its parent, and the staging directory must be gone after success.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
. "$top_srcdir/tests/staging-functions.sh"
set -u

requires_ebsfs
requires pgrep
start_emulator --quiet
staging_watchdog 300

B=$((512 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" $((1024 * 1024 * 1024)) 5 || fail "make the source image"
snap=$(emu_import "$src") || fail "import"
exp="$EMU_TMP/expected.img"
cp --sparse=always "$src" "$exp" || fail "cp"
mnt=$(mount_dir mnt)
stg="$EMU_TMP/staging"
idf="$EMU_TMP/new-snapshot-id"

to "$EBSFS" -o "rw,staging_dir=$stg,snapshot_id_file=$idf" "$snap" "$mnt" ||
  fail "ebsfs (daemonized) exited non-zero"
on_exit "fusermount3 -u -z '$mnt' 2>/dev/null"
is_mounted "$mnt" || fail "ebsfs returned before the mount was in place"
pid=$(pgrep -n -f -- "staging_dir=$stg") || fail "no ebsfs daemon serves $mnt"
on_exit "kill -9 $pid 2>/dev/null"

write_both "$mnt/$snap" "$exp" $((4 * B - 50007)) 100000 11      # unaligned, across blocks 3-4
write_both "$mnt/$snap" "$exp" $((700 * B)) "$B" 12               # a whole block in a hole
fusermount3 -u "$mnt" || fail "fusermount3 -u"
wait_until 120 '[ -s "$idf" ]' || fail "no $idf 120 s after the unmount"
new=$(cat "$idf")
wait_until 60 '! kill -0 '"$pid"' 2>/dev/null' || fail "the daemon still runs after its commit"
echo "daemon committed $new"

[ "$(snap_info "$new" Status)" = completed ] || fail "$new is $(snap_info "$new" Status)"
[ "$(snap_info "$new" ParentSnapshotId)" = "$snap" ] ||
  fail "$new has parent '$(snap_info "$new" ParentSnapshotId)', expected $snap"
[ "$(snap_info "$new" OwnBlockIndices)" = "3 4 700" ] ||
  fail "$new holds blocks '$(snap_info "$new" OwnBlockIndices)', expected 3 4 700"
check_export "$new" "$exp"
[ ! -e "$stg" ] || fail "the staging directory $stg is still there after a successful commit"
echo "staging-daemon: OK"
