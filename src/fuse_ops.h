/* fuse_ops.h - the FUSE low-level operations of ebsfs.
 *
 * The mount is one flat directory: one regular file per snapshot, named
 * after its ID, as large as the volume.  Every operation is a thin shim
 * over src/image.h; main.c owns the images and the session.
 */
#ifndef EBSFS_FUSE_OPS_H
#define EBSFS_FUSE_OPS_H

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
};

extern const struct fuse_lowlevel_ops ebsfs_fuse_ops;

#endif
