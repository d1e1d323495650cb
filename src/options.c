/* options.c - parse the ebsfs command line with one fuse_opt table.
 *
 * Our options land in struct ebsfs_options through offsetof; fstab words
 * are discarded so an /etc/fstab line works; unknown -o options are kept for
 * libfuse (allow_other, default_permissions, max_read=...), which refuses
 * what it does not know when main.c creates the session.  Positional
 * arguments are SNAPSHOT-ID... MOUNTPOINT.  Nothing here touches the network
 * or the file system: main.c does that, with errors before mounting.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "log.h"

#define OPT(t, field, v) { t, offsetof(struct ebsfs_options, field), v }

enum {
  KEY_DEBUG,            /* -d / debug: also libfuse's */
  KEY_DEBUG_LIST,       /* debug=SUBSYSTEMS, may repeat */
};

static const struct fuse_opt option_table[] = {
  OPT("-f", foreground, 1),
  OPT("-s", single_thread, 1),
  OPT("-h", show_help, 1),
  OPT("--help", show_help, 1),
  OPT("-V", show_version, 1),
  OPT("--version", show_version, 1),
  OPT("region=%s", region, 0),
  OPT("profile=%s", profile, 0),
  OPT("endpoint=%s", endpoint, 0),
  OPT("ca_bundle=%s", ca_bundle, 0),
  OPT("cache_size=%s", cache_size_str, 0),
  OPT("max_requests=%u", max_requests, 0),
  OPT("readahead=%s", readahead_str, 0),
  OPT("rate_limit=%s", rate_limit_str, 0),
  OPT("fs_prefetch=%s", fs_prefetch_str, 0),
  OPT("kernel_cache", kernel_cache, 1),
  FUSE_OPT_KEY("debug=", KEY_DEBUG_LIST),
  OPT("ro", ro, 1),
  OPT("rw", rw, 1),
  OPT("staging_dir=%s", staging_dir, 0),
  OPT("new_volume_size=%s", new_volume_size_str, 0),
  OPT("description=%s", description, 0),
  OPT("tags=%s", tags, 0),
  OPT("kms_key_arn=%s", kms_key_arn, 0),
  OPT("snapshot_id_file=%s", snapshot_id_file, 0),
  OPT("encrypted", encrypted, 1),
  OPT("keep_staging", keep_staging, 1),
  OPT("commit_timeout=%u", commit_timeout, 0),
  OPT("--commit %s", commit_path, 0),
  OPT("--commit=%s", commit_path, 0),
  OPT("--resume %s", resume_dir, 0),
  OPT("--resume=%s", resume_dir, 0),
  FUSE_OPT_KEY("-d", KEY_DEBUG),
  FUSE_OPT_KEY("debug", KEY_DEBUG),
  /* mount(8) and fstab words that mean nothing to a FUSE daemon */
  FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_KEY("comment=", FUSE_OPT_KEY_DISCARD),
  FUSE_OPT_END
};

static int
option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
  /* fuse_opt stores the templates' values at offsets into data, so data is
   * the options; positional arguments pile up in o->snapshots meanwhile. */
  struct ebsfs_options *o = data;
  char **p;

  switch (key) {
  case KEY_DEBUG:
    /* Foreground, our debug level, and libfuse's request trace. */
    o->debug = 1;
    o->foreground = 1;
    return 1;
  case KEY_DEBUG_LIST: {
    /* fuse_opt splits -o at commas, so subsystems are also separated by
     * ':' or '+' (debug=http:cache), and the option may be repeated. */
    char *list = strdup(arg + strlen("debug="));
    unsigned mask;
    int r;

    if (list == NULL) {
      fprintf(stderr, "ebsfs: out of memory\n");
      return -1;
    }
    for (char *c = list; *c; c++)
      if (*c == ':' || *c == '+')
        *c = ',';
    r = log_parse_subsystems(list, &mask);
    free(list);
    if (r < 0) {
      fprintf(stderr, "ebsfs: bad %s: use http, sigv4, creds, index, cache, readahead,"
              " fuse, staging, commit or all, separated by ':'\n", arg);
      return -1;
    }
    o->debug_mask |= mask;
    return 0;
  }
  case FUSE_OPT_KEY_NONOPT:
    p = realloc(o->snapshots, (o->npositional + 1) * sizeof *p);
    if (p == NULL) {
      fprintf(stderr, "ebsfs: out of memory\n");
      return -1;
    }
    o->snapshots = p;
    o->snapshots[o->npositional] = strdup(arg);
    if (o->snapshots[o->npositional] == NULL) {
      fprintf(stderr, "ebsfs: out of memory\n");
      return -1;
    }
    o->npositional++;
    return 0;
  case FUSE_OPT_KEY_OPT:
    /* x-systemd.automount and friends: for mount(8) and systemd, not us. */
    if (strncmp(arg, "x-", 2) == 0)
      return 0;
    return 1;                   /* keep for libfuse */
  default:
    return 1;
  }
}

int
options_parse_size(const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || end == s)
    return -1;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: return -1;
  }
  /* "64MiB" and "64MB" read as the same binary unit; nothing else may follow. */
  if (shift && (*end == 'i' || *end == 'I'))
    end++;
  if (shift && (*end == 'b' || *end == 'B'))
    end++;
  if (*end != '\0')
    return -1;
  if (shift && v > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t) v << shift;
  return 0;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, then -1: the caller returns it. */
static int
usage_error(const char *fmt, ...)
{
  va_list ap;

  fputs("ebsfs: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs(" (see ebsfs -h)\n", stderr);
  return -1;
}

int
options_parse(int argc, char **argv, struct ebsfs_options *o)
{
  char *end;

  memset(o, 0, sizeof *o);
  o->fuse_args = (struct fuse_args) FUSE_ARGS_INIT(argc, argv);

  /* On failure fuse_opt (or option_proc) has printed what it did not like. */
  if (fuse_opt_parse(&o->fuse_args, o, option_table, option_proc) == -1)
    return -1;
  if (o->npositional > 0) {
    o->mountpoint = o->snapshots[o->npositional - 1];
    o->nsnapshots = o->npositional - 1;
  }

  if (o->show_help || o->show_version)
    return 0;

  if (o->commit_path || o->resume_dir) {
    if (o->commit_path && o->resume_dir)
      return usage_error("--commit and --resume do not go together");
    if (o->npositional > 0)
      return usage_error("%s takes no other argument than its %s",
                         o->commit_path ? "--commit" : "--resume",
                         o->commit_path ? "image" : "staging directory");
  } else if (o->new_volume_size_str) {
    if (options_parse_size(o->new_volume_size_str, &o->new_volume_size) < 0 ||
        o->new_volume_size == 0 || o->new_volume_size % (512 * 1024) ||
        o->new_volume_size > OPT_MAX_VOLUME_SIZE)
      return usage_error("bad new_volume_size '%s': a multiple of 512K up to 64T, like 1G",
                         o->new_volume_size_str);
    if (o->ro)
      return usage_error("new_volume_size makes a writable image: it needs -o rw");
    o->rw = 1;
    if (o->npositional != 1)
      return usage_error("with new_volume_size give only the MOUNTPOINT, no SNAPSHOT-ID");
  } else if (o->npositional < 2) {
    return usage_error("%s", o->npositional == 0 ? "missing SNAPSHOT-ID and MOUNTPOINT"
                                          : "missing MOUNTPOINT (usage: ebsfs [options] SNAPSHOT-ID... MOUNTPOINT)");
  }
  if (o->ro && o->rw)
    return usage_error("-o ro and -o rw do not go together");
  if (o->rw && !o->commit_path && !o->resume_dir && !o->new_volume_size && o->nsnapshots != 1)
    return usage_error("-o rw mounts exactly one snapshot (%zu given)", o->nsnapshots);
  if ((o->encrypted || o->kms_key_arn) && !o->new_volume_size && !o->resume_dir)
    return usage_error("-o %s is only for a new volume (-o new_volume_size=SIZE): a snapshot "
                       "with a parent inherits the parent's encryption",
                       o->encrypted ? "encrypted" : "kms_key_arn");
  if (!o->rw && !o->commit_path && !o->resume_dir &&
      (o->staging_dir || o->description || o->tags || o->snapshot_id_file ||
       o->keep_staging || o->commit_timeout))
    return usage_error("-o staging_dir, description, tags, snapshot_id_file, commit_timeout "
                       "and keep_staging need -o rw");
  if (o->commit_timeout == 0)
    o->commit_timeout = OPT_DEFAULT_COMMIT_TIMEOUT;
  else if (o->commit_timeout < 10 || o->commit_timeout > 4320)
    return usage_error("bad commit_timeout %u: minutes, 10 to 4320", o->commit_timeout);
  if (o->description && strlen(o->description) > 255)
    return usage_error("description is longer than 255 characters");

  o->cache_size = OPT_DEFAULT_CACHE_SIZE;
  if (o->cache_size_str && options_parse_size(o->cache_size_str, &o->cache_size) < 0)
    return usage_error("bad cache_size '%s': a size like 512M or 4G", o->cache_size_str);

  o->readahead = OPT_DEFAULT_READAHEAD;
  if (o->readahead_str && options_parse_size(o->readahead_str, &o->readahead) < 0)
    return usage_error("bad readahead '%s': a size like 8M or 64M", o->readahead_str);

  o->rate_limit = OPT_DEFAULT_RATE_LIMIT;
  if (o->rate_limit_str) {
    errno = 0;
    o->rate_limit = strtod(o->rate_limit_str, &end);
    if (errno != 0 || end == o->rate_limit_str || *end != '\0' || !(o->rate_limit > 0))
      return usage_error("bad rate_limit '%s': requests per second, more than 0", o->rate_limit_str);
  }

  o->fs_prefetch = 1;
  if (o->fs_prefetch_str) {
    if (strcmp(o->fs_prefetch_str, "off") == 0)
      o->fs_prefetch = 0;
    else if (strcmp(o->fs_prefetch_str, "on") != 0)
      return usage_error("bad fs_prefetch '%s': on or off", o->fs_prefetch_str);
  }

  if (o->max_requests == 0)
    o->max_requests = OPT_DEFAULT_MAX_REQUESTS;
  return 0;
}

void
options_free(struct ebsfs_options *o)
{
  free(o->region);
  free(o->profile);
  free(o->endpoint);
  free(o->ca_bundle);
  free(o->cache_size_str);
  free(o->fs_prefetch_str);
  free(o->readahead_str);
  free(o->rate_limit_str);
  free(o->staging_dir);
  free(o->new_volume_size_str);
  free(o->description);
  free(o->tags);
  free(o->kms_key_arn);
  free(o->snapshot_id_file);
  free(o->commit_path);
  free(o->resume_dir);
  for (size_t i = 0; i < o->npositional; i++)
    free(o->snapshots[i]);
  free(o->snapshots);
  fuse_opt_free_args(&o->fuse_args);
  memset(o, 0, sizeof *o);
}

void
options_usage(const char *progname)
{
  printf("usage: %s [options] SNAPSHOT-ID... MOUNTPOINT\n"
         "       %s -o rw[,options] SNAPSHOT-ID MOUNTPOINT\n"
         "       %s -o rw,new_volume_size=SIZE[,options] MOUNTPOINT\n"
         "       %s --commit MOUNTPOINT/IMAGE\n"
         "       %s --resume STAGING_DIR [-o options]\n"
         "\n"
         "Mount completed EBS snapshots read-only; each appears in MOUNTPOINT as an\n"
         "image file named after its snapshot ID, read on demand through the EBS\n"
         "direct APIs.  Loop-mount it (ext4: -o ro,noload; XFS: -o ro,norecovery)\n"
         "or copy it with dd / cp --sparse=always.\n"
         "\n"
         "With -o rw the image is writable: writes stay in a local staging directory,\n"
         "and unmounting (or --commit) makes them a new snapshot whose parent is the\n"
         "source.  --commit commits a mounted image now and prints the new snapshot\n"
         "ID; --resume finishes a commit that was interrupted (crash, failure).\n"
         "\n"
         "general options:\n"
         "    -h, --help             print this help and libfuse's options\n"
         "    -V, --version          print versions\n"
         "    -f                     stay in the foreground, log to stderr\n"
         "                           (default: daemonize, log to syslog)\n"
         "    -d, -o debug           foreground, debug log and libfuse's request trace\n"
         "    -s                     single-threaded FUSE loop (default: multi-threaded)\n"
         "\n"
         "ebsfs options:\n"
         "    -o region=REGION       AWS region (default: AWS_REGION, AWS_DEFAULT_REGION,\n"
         "                           then the profile's region)\n"
         "    -o profile=NAME        profile in ~/.aws/config and ~/.aws/credentials\n"
         "                           (default: AWS_PROFILE, then \"default\")\n"
         "    -o endpoint=URL        EBS endpoint (default: AWS_ENDPOINT_URL_EBS,\n"
         "                           AWS_ENDPOINT_URL, then https://ebs.REGION.amazonaws.com)\n"
         "    -o ca_bundle=FILE      CA certificates for TLS (default: the system's)\n"
         "    -o cache_size=SIZE     block cache shared by all snapshots (default: 256M);\n"
         "                           K, M, G, T suffixes\n"
         "    -o max_requests=N      requests in flight per snapshot: block fetches, and\n"
         "                           PUTs when committing (default: %u)\n"
         "    -o readahead=SIZE      cap of the sequential readahead window (default: 64M)\n"
         "    -o rate_limit=N        Get/PutSnapshotBlock requests/s per snapshot (default:\n"
         "                           %.0f, AWS's limit; slower after a throttle)\n"
         "    -o fs_prefetch=on|off  read ext4 directories at once, a large file's first 32M\n"
         "                           at its first read, the small files around a copy of\n"
         "                           many (default: on)\n"
         "    -o kernel_cache        read-only images go through the kernel's page cache\n"
         "                           (needed for a shared mmap; default: direct reads,\n"
         "                           no copy into the page cache)\n"
         "    -o debug=LIST          debug log of subsystems, ':'-separated: http, sigv4,\n"
         "                           creds, index, cache, readahead, fuse, staging, commit\n"
         "                           or all (default: none)\n"
         "    -o ro                  read-only (the default)\n"
         "\n"
         "write mode:\n"
         "    -o rw                  writable image (one SNAPSHOT-ID), committed as a new\n"
         "                           snapshot at unmount\n"
         "    -o new_volume_size=SIZE  an empty writable image MOUNTPOINT/%s (no\n"
         "                           SNAPSHOT-ID) that becomes a snapshot with no parent;\n"
         "                           a multiple of 512K (implies -o rw)\n"
         "    -o encrypted, -o kms_key_arn=ARN  encrypt the new volume's snapshot\n"
         "                           (new_volume_size only)\n"
         "    -o staging_dir=DIR     staging directory (default: $XDG_CACHE_HOME or\n"
         "                           ~/.cache, ebsfs/staging-SNAP-TIME-PID); give an existing\n"
         "                           one to reuse its staged data\n"
         "    -o description=TEXT    the new snapshot's description\n"
         "    -o tags=K=V[;K=V...]   the new snapshot's tags\n"
         "    -o snapshot_id_file=PATH  write the new snapshot ID there after a commit\n"
         "    -o commit_timeout=MIN  StartSnapshot Timeout in minutes (default: %u)\n"
         "    -o keep_staging        keep the staging directory after a full commit\n"
         "    --commit FILE          commit the mounted image FILE now; prints the ID\n"
         "    --resume DIR           finish the commit recorded in staging directory DIR\n"
         "\n"
         "fstab words (defaults, auto, noauto, user, users, _netdev, nofail, x-*)\n"
         "are accepted and ignored.  Other -o options go to libfuse:\n"
         "\n",
         progname, progname, progname, progname, progname, OPT_DEFAULT_MAX_REQUESTS,
         OPT_DEFAULT_RATE_LIMIT, OPT_NEW_VOLUME_NAME, OPT_DEFAULT_COMMIT_TIMEOUT);
}
