#!/usr/bin/env bash
# staging-resume-edge.sh - two ways a journaled commit attempt can go stale:
# 1. the pending snapshot timed out (error state) before --resume: a fresh
#    snapshot with a new client token is made from the staged data, the
#    timed-out one is not completed, and no other snapshot appears;
# 2. the attempt's snapshot was completed but the journal never heard of it
#    (a crash between CompleteSnapshot and the journal record, simulated by
#    removing that record; the journal is far below the size at which a
#    commit compacts it), and blocks were written again after a remount:
#    the completed snapshot becomes the parent and only the blocks written
#    since go to a new child.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires dd cmp
EBS_TOOL="$top_builddir/src/ebs_tool"
[ -x "$EBS_TOOL" ] || skip "$EBS_TOOL is not built"
start_emulator --quiet

B=$((512 * 1024))
src="$EMU_TMP/source.img"
exp="$EMU_TMP/expected.img"
make_sparse_source "$src" $((1024 * 1024 * 1024)) 5 || fail "make the source image"
snap=$(emu_import "$src") || fail "import"
cp --sparse=always "$src" "$exp" || fail "copy the source"
mnt=$(mount_dir mnt)

# snapshots STATUS: how many snapshots the emulator has in that status.
snapshots() {
  emu_admin GET /snapshots |
    "$PYTHON3" -c 'import json, sys; print(sum(s["Status"] == sys.argv[1] for s in json.load(sys.stdin)))' "$1"
}
# put FILE OFFSET TEXT: the same bytes into the mount's image and the expected one.
put() {
  printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none || fail "write at $2"
  printf '%s' "$3" | dd of="$exp" bs=1 seek="$2" conv=notrunc status=none
}

# ---- 1. the pending snapshot timed out -----------------------------------------
st1="$EMU_TMP/st1"
start_ebsfs "$mnt" -o "rw,staging_dir=$st1,max_requests=2,commit_timeout=10" "$snap"
head -c $((40 * B + 11)) /dev/urandom >"$EMU_TMP/w.bin"
dd if="$EMU_TMP/w.bin" of="$mnt/$snap" bs=1M seek=$((7 * B + 5)) oflag=seek_bytes conv=notrunc,fsync status=none ||
  fail "dd into the image"
dd if="$EMU_TMP/w.bin" of="$exp" bs=1M seek=$((7 * B + 5)) oflag=seek_bytes conv=notrunc status=none
# Slow PUTs, and a "minute" of 0.1 s: the snapshot times out 1 s after its last PUT.
emu_config '{"latency_ms": 200, "timeout_unit_s": 0.1}'
timeout 60 "$EBSFS" --commit "$mnt/$snap" >/dev/null 2>&1 &
cpid=$!
for (( i=0; i<100; i++ )); do
  grep -q '^P ' "$st1/journal" 2>/dev/null && break
  sleep 0.1
done
grep -q '^P ' "$st1/journal" || fail "no PUT journaled within 10 s"
kill -9 "$EBSFS_PID"
wait "$cpid" 2>/dev/null
fusermount3 -u -z "$mnt" 2>/dev/null
for (( i=0; i<100; i++ )); do
  [ "$(snapshots error)" -eq 1 ] && break
  sleep 0.1
done
[ "$(snapshots error)" -eq 1 ] || fail "the interrupted snapshot did not time out"
emu_config '{"latency_ms": 0}'
new1=$(timeout 120 "$EBSFS" --resume "$st1" -o keep_staging 2>"$EMU_TMP/resume1.err") ||
  { cat "$EMU_TMP/resume1.err" >&2; fail "--resume after a timeout failed"; }
grep -q "starting a fresh snapshot" "$EMU_TMP/resume1.err" || fail "--resume did not start a fresh snapshot"
[ "$(snapshots completed)" -eq 2 ] || fail "expected the source and one new snapshot completed"
emu_export "$new1" "$EMU_TMP/out.img" || fail "export $new1"
cmp "$EMU_TMP/out.img" "$exp" || fail "the fresh snapshot differs from the expected image"

# ---- 2. completed, but not journaled; written again since ----------------------
start_ebsfs "$mnt" -o "rw,staging_dir=$st1,keep_staging" "$snap"
put "$mnt/$snap" $((300 * B + 3)) AAAA
put "$mnt/$snap" $((301 * B + 3)) BBBB
first=$("$EBSFS" --commit "$mnt/$snap") || fail "--commit"
stop_ebsfs "$mnt"
grep -q "^C $first " "$st1/journal" || fail "the journal does not record $first"
grep -v "^C $first " "$st1/journal" >"$st1/journal.new" && mv "$st1/journal.new" "$st1/journal" ||
  fail "rewrite the journal"
chmod 600 "$st1/journal"
start_ebsfs "$mnt" -o "rw,staging_dir=$st1" "$snap"
put "$mnt/$snap" $((301 * B + 100)) CCCC
new2=$("$EBSFS" --commit "$mnt/$snap") || fail "--commit after the lost record"
[ "$new2" != "$first" ] || fail "the rewritten block was not committed"
stop_ebsfs "$mnt"
grep -q "was already completed" "$EBSFS_LOG" || fail "the completed attempt was not recognised"
emu_export "$new2" "$EMU_TMP/out.img" || fail "export $new2"
cmp "$EMU_TMP/out.img" "$exp" || fail "$new2 differs from the expected image"
"$EBS_TOOL" changed "$new2" --first "$first" --all >"$EMU_TMP/changed" || fail "ListChangedBlocks"
[ "$(awk '$1 == "changed" { print $2 }' "$EMU_TMP/changed")" = 301 ] ||
  fail "ListChangedBlocks($first, $new2) is not just block 301: $(cat "$EMU_TMP/changed")"
[ ! -e "$st1" ] || fail "the staging directory was not removed after the full commit"
