/* kernel_readahead.h - widen the kernel's readahead on our own FUSE mount.
 *
 * The kernel sends FUSE reads no larger than its readahead size for the
 * mount's backing device (128 KiB by default), however large the read(2):
 * a dd bs=1M of the image costs 8 FUSE requests per MiB.  Raising the bdi's
 * read_ahead_kb to 1 MiB (the largest FUSE request, max_pages 256) cuts that
 * to 1 and the daemon's CPU per GiB by about a tenth.  Best effort: it needs
 * root (sysfs), and the bdi goes away with the mount.
 *
 * Order matters: the kernel answers FUSE_INIT with the smaller of the
 * daemon's max_readahead and the bdi's current value, so this runs right
 * after mount(2) and before the session loop answers INIT (fuse_ops.c
 * asks for 1 MiB there).
 */
#ifndef EBSFS_KERNEL_READAHEAD_H
#define EBSFS_KERNEL_READAHEAD_H

#define KERNEL_READAHEAD_KB 1024u

/* Set read_ahead_kb of the fuse.ebsfs mount at mountpoint (absolute path).
 * Finds the mount's device in /proc/self/mountinfo, so it never touches the
 * file system itself (safe before the session loop runs).  Returns 0 or
 * -errno; the caller only logs a failure. */
int kernel_readahead_set(const char *mountpoint, unsigned kb);

#endif
