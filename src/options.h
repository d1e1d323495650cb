/* options.h - the ebsfs command line: one fuse_opt table, sshfs style.
 *
 *   ebsfs [-f] [-d] [-s] [-o opt[,opt...]] SNAPSHOT-ID... MOUNTPOINT
 *   ebsfs -o rw[,opt...] SNAPSHOT-ID MOUNTPOINT       (writable, committed at unmount)
 *   ebsfs -o rw,new_volume_size=SIZE[,opt...] MOUNTPOINT
 *   ebsfs --commit MOUNTPOINT/IMAGE                    (commit a mounted image now)
 *   ebsfs --resume STAGING_DIR [-o opt...]             (finish an interrupted commit)
 *
 * Our own -o options are consumed here; fstab words (noauto, user, _netdev,
 * x-*...) are dropped; everything else (allow_other, default_permissions,
 * max_read=...) is kept in fuse_args and handed to libfuse, which rejects
 * what it does not know.  main.c turns the result into a client, a cache
 * and a mount; options.c never touches the network.
 */
#ifndef EBSFS_OPTIONS_H
#define EBSFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse_version.h"
#include "ratelimit.h"
#include <fuse_opt.h>

/* Defaults, printed by -h.  max_requests: Little's law - 1000 req/s (the
 * per-snapshot ceiling) x ~100 ms per GetSnapshotBlock = 100 in flight. */
/* cache_size: the kernel keeps its page cache of what was read (snapshots
 * never change), so ours mainly holds readahead and the unread rest of partly
 * read blocks; 256M covers a few 64M readahead windows.  1G cost a 1 GiB RSS
 * on every dd and, in the benchmark's VM, 2x the CPU per GiB for faulting
 * fresh cache memory in (tests/bench/RESULTS.md). */
#define OPT_DEFAULT_CACHE_SIZE    (256ull * 1024 * 1024)
#define OPT_DEFAULT_MAX_REQUESTS  128u
#define OPT_DEFAULT_READAHEAD     (64ull * 1024 * 1024)
#define OPT_DEFAULT_RATE_LIMIT    RATELIMIT_DEFAULT_RATE
#define OPT_DEFAULT_COMMIT_TIMEOUT 60u                  /* minutes */
#define OPT_NEW_VOLUME_NAME       "new-volume"
#define OPT_MAX_VOLUME_SIZE       (64ull << 40)          /* EBS's largest volume */

struct ebsfs_options {
  /* -f -d -s -h -V */
  int foreground;
  int debug;
  int single_thread;
  int show_help;
  int show_version;

  /* -o options (strings are malloc'd by fuse_opt; freed by options_free) */
  char *region;
  char *profile;
  char *endpoint;
  char *ca_bundle;
  char *cache_size_str;
  char *readahead_str;
  char *rate_limit_str;
  char *fs_prefetch_str;
  int kernel_cache;             /* -o kernel_cache: read-only images in the page cache */
  unsigned max_requests;
  int ro, rw;                   /* -o rw: writable through a staging area */

  /* Write mode (-o rw) */
  char *staging_dir;            /* NULL: a fresh one under the cache directory */
  char *new_volume_size_str;
  char *description;
  char *tags;                   /* KEY=VALUE;KEY=VALUE */
  char *kms_key_arn;
  char *snapshot_id_file;
  int encrypted;
  int keep_staging;
  unsigned commit_timeout;      /* minutes (StartSnapshot Timeout) */
  uint64_t new_volume_size;     /* bytes; 0 unless new-volume mode */

  /* Other modes (no mount) */
  char *commit_path;            /* --commit MOUNTPOINT/IMAGE */
  char *resume_dir;             /* --resume STAGING_DIR */

  /* After options_parse: */
  uint64_t cache_size;          /* bytes */
  uint64_t readahead;           /* bytes, cap of the sequential window */
  double rate_limit;            /* requests/s per snapshot */
  int fs_prefetch;              /* -o fs_prefetch=on|off (default on) */
  unsigned debug_mask;          /* -o debug=http:cache, repeatable */

  char **snapshots;             /* positional arguments but the last */
  size_t nsnapshots;
  char *mountpoint;             /* the last positional argument */
  size_t npositional;           /* nsnapshots + 1 once both are given */

  struct fuse_args fuse_args;   /* what libfuse gets: argv[0] + kept options */
};

/* Parse argv.  Returns 0, or -1 after printing one line on stderr
 * ("ebsfs: ...") for a usage error.  With -h or -V set, positional
 * arguments are not required.  Always call options_free afterwards. */
int options_parse(int argc, char **argv, struct ebsfs_options *o);
void options_free(struct ebsfs_options *o);

/* -h: our options with their defaults (then main adds libfuse's). */
void options_usage(const char *progname);

/* "512K", "64M", "1G", "2T", "4096" -> bytes (binary units).  0 or -1. */
int options_parse_size(const char *s, uint64_t *out);

#endif
