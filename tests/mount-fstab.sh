#!/usr/bin/env bash
# mount-fstab.sh - ebsfs works the way contrib/fstab.example uses it: through
# mount(8) -t fuse.ebsfs and mount.fuse3, daemonized (the default), with
# fstab-only words in the options; umount stops the daemon.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires_root
requires mount umount mount.fuse3 cmp
start_emulator --quiet

src="$EMU_TMP/source.img"
make_sparse_source "$src" $((8 * 512 * 1024 + 1234)) 7 || fail "make the source"
snap=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt)

# mount(8) runs mount.fuse3 with a clean PATH, which cannot find the ebsfs
# under test; call mount.fuse3 the way mount(8) does, naming the program by
# path ("PROGRAM#SOURCE", also valid in fstab with type "fuse").
mount.fuse3 "$EBSFS#$snap" "$mnt" \
  -o "noauto,_netdev,nofail,x-systemd.automount,endpoint=$EMU_URL,cache_size=16M" \
  || fail "mount.fuse3 $EBSFS#$snap"
on_exit "umount -l '$mnt' 2>/dev/null"
is_mounted "$mnt" || fail "mount returned but $mnt is not mounted"
pid=$(pgrep -f -n "^$EBSFS $snap $mnt")
[ -n "$pid" ] || fail "no ebsfs daemon found"

# The image is the whole volume (whole GiB); the source is its start.
cmp -n "$(stat -c %s "$src")" "$src" "$mnt/$snap" || fail "image differs from the source"

umount "$mnt" || fail "umount $mnt"
for (( i=0; i<200; i++ )); do
  _running "$pid" || break
  sleep 0.05
done
_running "$pid" && fail "the ebsfs daemon (pid $pid) still runs 10 s after umount"
echo "PASS: fstab-style mount"
