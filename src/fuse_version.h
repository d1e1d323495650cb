/* fuse_version.h - the one place that picks the libfuse API version.
 *
 * Include it (after config.h) instead of defining FUSE_USE_VERSION in each
 * file.  3.10 is the floor; where configure found fuse_loop_cfg_* (3.12+) we
 * ask for that API so the multi-threaded loop's thread cap can be raised.
 */
#ifndef EBSFS_FUSE_VERSION_H
#define EBSFS_FUSE_VERSION_H

#ifndef FUSE_USE_VERSION
# if HAVE_FUSE_LOOP_CFG
#  define FUSE_USE_VERSION 312
# else
#  define FUSE_USE_VERSION 310
# endif
#endif

#endif
