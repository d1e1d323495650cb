/* fuse_ops.h - the FUSE low-level operations of ebsfs.
 *
 * The mount is one flat directory: one regular file per snapshot, named
 * after its ID, as large as the volume.  Every operation is a thin shim
 * over src/image.h; main.c owns the images and the session.
 *
 * Writable images (-o rw) take write, fsync, and two extended attributes:
 * setting "user.ebsfs.commit" commits the image in that request's thread
 * and answers the commit's errno (what `ebsfs --commit` uses); reading
 * "user.ebsfs.last_snapshot_id" gives the last snapshot committed.
 */
#ifndef EBSFS_FUSE_OPS_H
#define EBSFS_FUSE_OPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "fuse_version.h"
#include <fuse_lowlevel.h>

struct image;

/* The userdata of the session.  Inode 1 is the root, inode 2 + i is
 * images[i]. */
struct ebsfs_fs {
  struct image **images;        /* borrowed; outlive the session */
  size_t nimages;
  time_t mount_time;            /* the files' times: snapshots carry none we know */
  uid_t uid;                    /* the files' owner: whoever mounted */
  gid_t gid;
  /* Read-only images through the kernel's page cache (-o kernel_cache);
   * otherwise they are opened for direct I/O.  Writable images always use
   * the page cache. */
  bool kernel_cache;
  /* Commit img now: 0 (committed or nothing to commit) or -errno.  NULL
   * when read-only. */
  int (*commit)(void *arg, struct image *img);
  void *commit_arg;
  /* Open handles not released yet (fuse_ops.c's own): a session that ends
   * on a signal gets no release for files still open. */
  pthread_mutex_t handles_lock;
  struct handle *handles;
};

/* Before the session starts: 0 or -errno. */
int ebsfs_fs_init(struct ebsfs_fs *fs);
/* After the session, before the images go: frees the handles no release
 * came for. */
void ebsfs_fs_fini(struct ebsfs_fs *fs);

#define EBSFS_XATTR_COMMIT "user.ebsfs.commit"
#define EBSFS_XATTR_LAST_ID "user.ebsfs.last_snapshot_id"
#define EBSFS_XATTR_STAGING_DIR "user.ebsfs.staging_dir"

extern const struct fuse_lowlevel_ops ebsfs_fuse_ops;

#endif
