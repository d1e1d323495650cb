#!/usr/bin/env bash
# mount-browse.sh - what people mount ebsfs for: an ext4 file system made
# with mkfs.ext4 -d from a directory, imported as a snapshot, mounted,
# loop-mounted read-only (ro,noload: no journal replay on a read-only
# device) and compared with the directory.  Two snapshots in one mount:
# both listed, both browsable at once.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
requires_root
requires_loop
requires mkfs.ext4 diff
start_emulator --quiet

# make_tree DIR SEED: files of many sizes, nested dirs, a symlink, an
# empty file, a name with spaces.
make_tree() {
  "$PYTHON3" - "$1" "$2" <<'PY'
import os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
os.makedirs(os.path.join(root, "etc/conf.d"))
os.makedirs(os.path.join(root, "var/log/deep/er/still"))
with open(os.path.join(root, "etc/hostname"), "w") as f:
    f.write(f"demo-{seed}\n")
for i in range(40):
    d = rnd.choice(["", "etc", "etc/conf.d", "var/log", "var/log/deep/er/still"])
    n = rnd.choice([0, 1, 100, 4095, 4096, 4097, 65536, 300000, 1 << 20])
    with open(os.path.join(root, d, f"file{i}.bin"), "wb") as f:
        f.write(rnd.randbytes(n))
with open(os.path.join(root, "big file with spaces"), "wb") as f:
    f.write(rnd.randbytes(12 * 1024 * 1024 + 17))
open(os.path.join(root, "empty"), "w").close()
os.symlink("etc/hostname", os.path.join(root, "link-to-hostname"))
PY
}

make_fs() {                     # DIR IMAGE
  truncate -s 256M "$2" && mkfs.ext4 -q -F -L ebsfs-test -d "$1" "$2" || fail "mkfs.ext4 -d $1"
}

for n in 1 2; do
  mkdir "$EMU_TMP/tree$n" && make_tree "$EMU_TMP/tree$n" "$n" || fail "make tree $n"
  make_fs "$EMU_TMP/tree$n" "$EMU_TMP/fs$n.img"
  snaps[$n]=$(emu_import "$EMU_TMP/fs$n.img") || fail "import $n"
done

# One snapshot.
mnt=$(mount_dir mnt)
start_ebsfs "$mnt" "${snaps[1]}"
fsdir=$(mount_dir fs)
loop_mount "$mnt/${snaps[1]}" "$fsdir" ro,noload
diff -r --no-dereference -x lost+found "$EMU_TMP/tree1" "$fsdir" || fail "files differ (one snapshot)"
[ "$(cat "$fsdir/link-to-hostname")" = demo-1 ] || fail "symlink"
umount "$fsdir" || fail "umount $fsdir"
stop_ebsfs "$mnt"

# Two snapshots in one mount, both loop-mounted at the same time.
mnt2=$(mount_dir mnt2)
start_ebsfs "$mnt2" "${snaps[1]}" "${snaps[2]}"
[ "$(ls "$mnt2" | sort | tr '\n' ' ')" = "$(printf '%s\n' "${snaps[1]}" "${snaps[2]}" | sort | tr '\n' ' ')" ] ||
  fail "two-snapshot mount lists: $(ls "$mnt2")"
for n in 1 2; do
  d=$(mount_dir "fs-two-$n")
  loop_mount "$mnt2/${snaps[$n]}" "$d" ro,noload
  dirs[$n]=$d
done
for n in 1 2; do
  diff -r --no-dereference -x lost+found "$EMU_TMP/tree$n" "${dirs[$n]}" || fail "files differ (snapshot $n of two)"
done
for n in 1 2; do umount "${dirs[$n]}" || fail "umount ${dirs[$n]}"; done
stop_ebsfs "$mnt2"
