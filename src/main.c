/* main.c - ebsfs: parse the command line, open every snapshot, mount, serve.
 *
 * Everything that can fail is tried BEFORE mounting (region, endpoint,
 * credentials, each snapshot's existence, state and permissions, the
 * mountpoint) and reported as one line with a non-zero exit; nothing is
 * left mounted.  Daemonizing forks first, before any thread exists (the
 * transport's I/O thread, the credential refresher): the child does all
 * the work while the parent waits on a pipe for "mounted" or "failed" and
 * exits with that status, so `ebsfs ... && ls MOUNTPOINT` just works.
 * The child logs to syslog once detached; the foreground (-f) to stderr.
 * SIGINT/SIGTERM/SIGHUP (libfuse's handlers) or fusermount3 -u end the
 * loop; we unmount, free everything and exit 0.
 *
 * Write mode (-o rw): the image gets a staging area (staging.h); after the
 * loop ends and the mount is gone, what was written since the last commit
 * becomes a new snapshot (commit.h), and the exit status says whether that
 * worked.  Two more modes need no mount: --commit (ask a running daemon to
 * commit, through an xattr) and --resume (finish a journaled commit).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "options.h"
#include "fuse_ops.h"
#include "image.h"
#include "block_cache.h"
#include "ebs.h"
#include "credentials.h"
#include "aws_config.h"
#include "kernel_readahead.h"
#include "log.h"
#include "staging.h"
#include "stop_signal.h"
#include "commit.h"

/* Everything the mount owns, torn down in reverse by mount_free. */
struct mount {
  struct ebsfs_options opts;
  char *mountpoint;             /* absolute: the daemon leaves its cwd */
  char *region;
  char *endpoint;
  struct credentials_provider *creds;
  struct ebs_client *client;
  struct block_cache *cache;
  struct image **images;
  size_t nimages;
  struct ebsfs_fs fs;
  struct staging *staging;      /* -o rw and --resume */
  struct commit_options copts;
  struct fuse_session *se;
  bool mounted, handlers, fs_ready;
  int status_fd;                /* to the waiting parent; -1 in the foreground */
};

/* ---- libfuse's messages ------------------------------------------------------- */

/* libfuse reports its own failures (an unknown -o option, a refused mount)
 * through fuse_log; route them through our log so they reach syslog when
 * detached and carry our prefix.  The callback has no user pointer, hence
 * one file-level counter: it lets us skip our own "see above" line when
 * libfuse already said what went wrong. */
static _Atomic unsigned fuse_errors_logged;

/* libfuse sometimes builds one line from several calls ("unknown
 * option(s): `" "-o " "x'\n"): collect a thread's pieces up to the newline
 * and log the line once, at the most severe level among its pieces. */
static _Thread_local struct {
  char text[1024];
  size_t len;
  enum log_level level;
} fuse_line = { .level = LOG_LVL_DEBUG };

static void
fuse_log_to_ours(enum fuse_log_level level, const char *fmt, va_list ap)
{
  enum log_level l;
  int n;

  if (level <= FUSE_LOG_ERR) {
    l = LOG_LVL_ERROR;
    fuse_errors_logged++;
  }
  else if (level == FUSE_LOG_WARNING)
    l = LOG_LVL_WARN;
  else if (level == FUSE_LOG_DEBUG)
    l = LOG_LVL_DEBUG;
  else
    l = LOG_LVL_INFO;
  if (l < fuse_line.level)
    fuse_line.level = l;

  n = vsnprintf(fuse_line.text + fuse_line.len, sizeof fuse_line.text - fuse_line.len, fmt, ap);
  if (n > 0)
    fuse_line.len += (size_t) n;
  if (fuse_line.len >= sizeof fuse_line.text)
    fuse_line.len = sizeof fuse_line.text - 1;      /* truncated: flush what fits */
  else if (fuse_line.len == 0 || fuse_line.text[fuse_line.len - 1] != '\n')
    return;
  log_msg(fuse_line.level, "%s", fuse_line.text);
  fuse_line.len = 0;
  fuse_line.text[0] = '\0';
  fuse_line.level = LOG_LVL_DEBUG;
}

/* ---- checks that need no network (run before forking) -------------------- */

/* The daemon leaves its cwd: make a relative path absolute now.  0 or -1. */
static int
absolutize(char **path)
{
  char cwd[PATH_MAX], *abs;

  if (*path == NULL || (*path)[0] == '/')
    return 0;
  if (getcwd(cwd, sizeof cwd) == NULL) {
    log_error("getcwd: %s", strerror(errno));
    return -1;
  }
  if (asprintf(&abs, "%s/%s", cwd, *path) < 0) {
    log_error("out of memory");
    return -1;
  }
  free(*path);
  *path = abs;
  return 0;
}

static int
check_arguments(struct mount *m)
{
  struct ebsfs_options *o = &m->opts;
  struct stat st;
  char msg[256];
  char *abs;

  if (o->tags && commit_check_tags(o->tags, msg, sizeof msg) < 0) {
    log_error("-o tags: %s", msg);
    return -1;
  }
  if (absolutize(&o->staging_dir) < 0 || absolutize(&o->snapshot_id_file) < 0)
    return -1;
  for (size_t i = 0; i < o->nsnapshots; i++) {
    if (!ebs_valid_snapshot_id(o->snapshots[i])) {
      log_error("'%s' is not a snapshot ID (snap- followed by hex digits)",
              o->snapshots[i]);
      return -1;
    }
    for (size_t j = 0; j < i; j++) {
      if (strcmp(o->snapshots[i], o->snapshots[j]) == 0) {
        log_error("%s is named twice", o->snapshots[i]);
        return -1;
      }
    }
  }
  if (stat(o->mountpoint, &st) != 0) {
    log_error("mountpoint %s: %s", o->mountpoint, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    log_error("mountpoint %s: %s", o->mountpoint, strerror(ENOTDIR));
    return -1;
  }
  abs = realpath(o->mountpoint, NULL);
  if (abs == NULL) {
    log_error("mountpoint %s: %s", o->mountpoint, strerror(errno));
    return -1;
  }
  m->mountpoint = abs;
  return 0;
}

/* ---- daemonizing ------------------------------------------------------------ */

/* Fork; the parent waits for one status byte from the child and exits
 * with it (1 if the child died before saying anything).  Returns in the
 * child only, with m->status_fd set. */
static int
fork_and_wait(struct mount *m)
{
  int fds[2];
  pid_t pid;
  unsigned char status;
  ssize_t n;

  if (pipe(fds) != 0) {
    fprintf(stderr, "ebsfs: pipe: %s\n", strerror(errno));
    return -1;
  }
  pid = fork();
  if (pid < 0) {
    fprintf(stderr, "ebsfs: fork: %s\n", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid > 0) {
    close(fds[1]);
    do
      n = read(fds[0], &status, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) {
      /* The child died before reporting: reap it to learn why. */
      int ws;
      if (waitpid(pid, &ws, 0) == pid && WIFSIGNALED(ws))
        fprintf(stderr, "ebsfs: the daemon was killed by signal %d before mounting\n",
                WTERMSIG(ws));
      _exit(1);
    }
    if (status != 0)
      waitpid(pid, NULL, 0);    /* it is exiting: do not leave a zombie behind */
    _exit(status);
  }
  close(fds[0]);
  m->status_fd = fds[1];
  /* Our own session: the terminal's signals no longer reach the daemon. */
  if (setsid() < 0)
    log_warn("setsid: %s", strerror(errno));
  return 0;
}

/* The mount is up: tell the parent, then leave the terminal. */
static void
detach(struct mount *m)
{
  unsigned char ok = 0;
  int fd;

  if (m->status_fd < 0)
    return;
  if (chdir("/") != 0)
    log_warn("chdir /: %s", strerror(errno));
  fd = open("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
      close(fd);
  }
  log_use_syslog(true);
  if (write(m->status_fd, &ok, 1) != 1) { }  /* parent gone: nothing to tell */
  close(m->status_fd);
  m->status_fd = -1;
}

/* ---- opening the snapshots --------------------------------------------------- */

/* A short human reason in front of the service's own words. */
static const char *
open_error_reason(const struct ebs_error *e)
{
  if (e->http_status == 0) {
    switch (e->errnum) {
    case ENOMEM: return "out of memory";
    case ECANCELED: return "cancelled";
    default: return "cannot reach the EBS endpoint";
    }
  }
  switch (e->errnum) {
  case ENOENT: return "snapshot not found";
  case EACCES: case EPERM: return "access denied";
  case EAGAIN: return "throttled";
  default: break;
  }
  if (ebs_error_is(e, "ValidationException", "INVALID_SNAPSHOT_ID"))
    return "snapshot cannot be read (not completed?)";
  return "cannot open snapshot";
}

/* Region, endpoint, credentials and the EBS client: what every mode needs. */
static int
setup_client(struct mount *m, size_t nstreams)
{
  struct ebsfs_options *o = &m->opts;
  struct credentials_options copts = { .profile = o->profile };
  struct ebs_client_config cfg = { 0 };
  struct aws_credentials *cr = NULL;
  struct ebs_error err;
  char msg[512];
  uint64_t max_in_flight;

  m->region = aws_resolve_region(o->region, aws_profile_name(o->profile), msg, sizeof msg);
  if (m->region == NULL) {
    log_error("%s", msg);
    return -1;
  }
  m->endpoint = aws_resolve_endpoint(o->endpoint, m->region, msg, sizeof msg);
  if (m->endpoint == NULL) {
    log_error("bad endpoint: %s", msg);
    return -1;
  }
  m->creds = credentials_provider_new(&copts);
  if (m->creds == NULL) {
    log_error("out of memory");
    return -1;
  }
  /* Find credentials now, not at the first read of a mounted file. */
  if (credentials_get(m->creds, &cr, msg, sizeof msg) != 0) {
    log_error("%s%s", strstr(msg, "credentials") ? "" : "no credentials: ", msg);
    return -1;
  }
  log_debug(LOG_SUB_CREDS, "credentials from %s", cr->source);
  credentials_release(cr);

  cfg.endpoint = m->endpoint;
  cfg.region = m->region;
  cfg.credentials = m->creds;
  cfg.ca_bundle = o->ca_bundle;
  cfg.rate_limit = o->rate_limit;
  max_in_flight = (uint64_t) o->max_requests * (nstreams ? nstreams : 1);
  cfg.max_in_flight = max_in_flight > 4096 ? 4096 : (unsigned) max_in_flight;
  memset(&err, 0, sizeof err);
  m->client = ebs_client_new(&cfg, &err);
  if (m->client == NULL) {
    log_error("cannot start the EBS client: %s", ebs_error_string(&err, msg, sizeof msg));
    return -1;
  }
  m->copts.description = o->description;
  m->copts.tags = o->tags;
  m->copts.timeout_minutes = (int) o->commit_timeout;
  m->copts.encrypted = o->encrypted;
  m->copts.kms_key_arn = o->kms_key_arn;
  m->copts.max_requests = o->max_requests;
  m->copts.snapshot_id_file = o->snapshot_id_file;
  return 0;
}

/* ${XDG_CACHE_HOME:-$HOME/.cache}/ebsfs/staging-<SNAP or new>-<time>-<pid>,
 * its parents created 0700.  Returns a malloc'd path or NULL (logged). */
static char *
default_staging_dir(const char *source)
{
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char base[PATH_MAX], path[PATH_MAX];
  int n;

  if (xdg && xdg[0] == '/')
    n = snprintf(base, sizeof base, "%s", xdg);
  else if (home && home[0] == '/')
    n = snprintf(base, sizeof base, "%s/.cache", home);
  else {
    log_error("no staging directory: set HOME or XDG_CACHE_HOME, or give -o staging_dir=DIR");
    return NULL;
  }
  if (n < 0 || (size_t) n >= sizeof base - 16) {
    log_error("staging directory: path too long");
    return NULL;
  }
  if ((mkdir(base, 0700) != 0 && errno != EEXIST) ||
      (strcat(base, "/ebsfs"), mkdir(base, 0700) != 0 && errno != EEXIST)) {
    log_error("staging directory %s: %s", base, strerror(errno));
    return NULL;
  }
  n = snprintf(path, sizeof path, "%s/staging-%s-%lld-%ld", base, source ? source : "new",
               (long long) time(NULL), (long) getpid());
  if (n < 0 || (size_t) n >= sizeof path) {
    log_error("staging directory: path too long");
    return NULL;
  }
  return strdup(path);
}

/* -o rw: give the one image its staging area. */
static int
setup_staging(struct mount *m)
{
  struct ebsfs_options *o = &m->opts;
  struct image *img = m->images[0];
  const char *source = o->new_volume_size ? NULL : image_snapshot_id(img);
  char *dir = o->staging_dir ? strdup(o->staging_dir) : default_staging_dir(source);
  char msg[768];
  int r;

  if (dir == NULL) {
    if (o->staging_dir)
      log_error("out of memory");
    return -1;
  }
  r = staging_open(dir, source, image_size(img), false, &m->staging, msg, sizeof msg);
  if (r < 0) {
    log_error("%s", msg);
    free(dir);
    return -1;
  }
  image_attach_staging(img, m->staging);
  log_info("staging directory: %s", dir);
  {
    uint32_t *blocks = NULL;
    size_t n;
    struct staging_attempt a;

    /* A reused staging directory: say what it brings along. */
    if (staging_dirty_blocks(m->staging, &blocks, &n) == 0 && n > 0)
      log_info("staging directory holds %zu blocks not committed yet%s", n,
               staging_pending(m->staging, &a) ? " (an interrupted commit: it is "
               "finished at unmount)" : "");
    free(blocks);
  }
  free(dir);
  return 0;
}

static int
setup(struct mount *m)
{
  struct ebsfs_options *o = &m->opts;
  struct image_options iopts = { 0 };
  struct ebs_error err;
  char msg[512];

  if (setup_client(m, o->nsnapshots) < 0)
    return -1;
  m->cache = block_cache_new(o->cache_size);
  if (m->cache == NULL) {
    log_error("cannot create a %llu-byte block cache: out of memory",
              (unsigned long long) o->cache_size);
    return -1;
  }

  m->images = calloc(o->nsnapshots ? o->nsnapshots : 1, sizeof *m->images);
  if (m->images == NULL) {
    log_error("out of memory");
    return -1;
  }
  iopts.client = m->client;
  iopts.cache = m->cache;
  iopts.max_requests = o->max_requests;
  iopts.fs_prefetch = o->fs_prefetch != 0;
  iopts.readahead_max_blocks = (unsigned) ((o->readahead + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
  for (size_t i = 0; i < o->nsnapshots; i++) {
    int r;

    memset(&err, 0, sizeof err);
    r = image_open(o->snapshots[i], &iopts, &m->images[i], &err);
    if (r < 0) {
      bool unreachable = err.http_status == 0 && strcmp(open_error_reason(&err),
                                                        "cannot reach the EBS endpoint") == 0;
      log_error("%s: %s%s%s: %s", o->snapshots[i], open_error_reason(&err),
                unreachable ? " " : "", unreachable ? m->endpoint : "",
                ebs_error_string(&err, msg, sizeof msg));
      return -1;
    }
    m->nimages++;
    /* Fetched while the mount and the caller's losetup/mount happen. */
    image_prefetch_head(m->images[i]);
    log_debug(LOG_SUB_FUSE, "%s: %llu bytes", o->snapshots[i],
              (unsigned long long) image_size(m->images[i]));
  }
  if (o->new_volume_size) {
    if (image_new_volume(OPT_NEW_VOLUME_NAME, o->new_volume_size, &iopts, &m->images[0],
                         &err) < 0) {
      log_error("new volume: %s", err.message);
      return -1;
    }
    m->nimages = 1;
  }
  if (o->rw && setup_staging(m) < 0)
    return -1;
  return 0;
}

/* ---- committing ------------------------------------------------------------------ */

/* setxattr user.ebsfs.commit, in a FUSE worker thread. */
static int
commit_now(void *arg, struct image *img)
{
  struct mount *m = arg;
  struct commit_result res;
  int r = commit_run(m->client, image_staging(img), &m->copts, &res);

  if (r == 1)
    log_info("nothing to commit: nothing written since the last commit");
  return r < 0 ? r : 0;
}

/* After the mount is gone: commit what is left; remove the staging area of
 * a fully committed session unless -o keep_staging.  0 or -1. */
static int
commit_at_unmount(struct mount *m)
{
  struct commit_result res;
  char last[EBS_SNAPSHOT_ID_MAX + 1];
  int r = commit_run(m->client, m->staging, &m->copts, &res);

  if (r < 0)
    return -1;                  /* commit_run said what failed and how to retry */
  if (r == 1) {
    staging_last_committed(m->staging, last);
    if (last[0])
      log_info("nothing written, no snapshot created (the last commit was %s)", last);
    else
      log_info("nothing written, no snapshot created");
  }
  if (m->opts.keep_staging) {
    log_info("staging directory kept: %s", staging_dir(m->staging));
  } else if ((r = staging_remove(m->staging)) < 0) {
    log_warn("cannot remove the staging directory %s: %s", staging_dir(m->staging),
             strerror(-r));
  } else {
    log_info("staging directory %s removed (all committed)", staging_dir(m->staging));
  }
  return 0;
}

/* ebsfs --commit IMAGE: ask the daemon serving IMAGE to commit it now. */
static int
commit_command(const char *path)
{
  char before[EBS_SNAPSHOT_ID_MAX + 1] = "", after[EBS_SNAPSHOT_ID_MAX + 1] = "";
  char dir[PATH_MAX];
  ssize_t n;

  /* Only a writable ebsfs image has a staging directory: anything else
   * would take our setxattr as an ordinary attribute. */
  n = getxattr(path, EBSFS_XATTR_STAGING_DIR, dir, sizeof dir - 1);
  if (n < 0) {
    int e = errno;
    fprintf(stderr, "ebsfs: %s: %s\n", path, e == ENODATA || e == ENOTSUP || e == EOPNOTSUPP ?
            "not a writable ebsfs image (mounted with -o rw?)" : strerror(e));
    return 1;
  }
  dir[n] = '\0';
  n = getxattr(path, EBSFS_XATTR_LAST_ID, before, sizeof before - 1);
  if (n < 0 && errno != ENODATA) {
    fprintf(stderr, "ebsfs: %s: %s\n", path, errno == ENOTSUP || errno == EOPNOTSUPP ?
            "not an image of an ebsfs mount" : strerror(errno));
    return 1;
  }
  before[n > 0 ? n : 0] = '\0';
  if (setxattr(path, EBSFS_XATTR_COMMIT, "1", 1, 0) != 0) {
    int e = errno;
    if (e == EROFS) {
      fprintf(stderr, "ebsfs: commit of %s failed: the image is not writable "
              "(mounted without -o rw)\n", path);
      return 1;
    }
    /* The mount is still up, so --resume would be refused: say what works. */
    fprintf(stderr, "ebsfs: commit of %s failed: %s; the staged data is kept in %s: run "
            "'ebsfs --commit %s' again, or unmount (which retries the commit, then "
            "'ebsfs --resume %s' if that fails too); the ebsfs log says why\n",
            path, strerror(e), dir, path, dir);
    return 1;
  }
  n = getxattr(path, EBSFS_XATTR_LAST_ID, after, sizeof after - 1);
  after[n > 0 ? n : 0] = '\0';
  if (after[0] && strcmp(before, after) != 0)
    printf("%s\n", after);
  else
    fprintf(stderr, "ebsfs: nothing to commit\n");
  return fflush(stdout) == 0 ? 0 : 1;
}

/* ebsfs --resume DIR: finish the commit journaled in DIR. */
static int
resume_command(struct mount *m)
{
  struct commit_result res;
  char msg[768], last[EBS_SNAPSHOT_ID_MAX + 1];
  int r;

  if (absolutize(&m->opts.snapshot_id_file) < 0 || setup_client(m, 1) < 0)
    return 1;
  r = staging_open(m->opts.resume_dir, NULL, 0, true, &m->staging, msg, sizeof msg);
  if (r < 0) {
    log_error("%s", msg);
    return 1;
  }
  r = commit_run(m->client, m->staging, &m->copts, &res);
  if (r < 0)
    return 1;
  if (r == 1) {
    staging_last_committed(m->staging, last);
    if (last[0]) {
      log_info("nothing left to commit: %s was committed", last);
      printf("%s\n", last);
    } else {
      log_info("nothing to commit: nothing was written");
    }
  } else {
    printf("%s\n", res.snapshot_id);
  }
  if (fflush(stdout) != 0)
    return 1;
  if (m->opts.keep_staging)
    log_info("staging directory kept: %s", staging_dir(m->staging));
  else if ((r = staging_remove(m->staging)) < 0)
    log_warn("cannot remove the staging directory %s: %s", staging_dir(m->staging),
             strerror(-r));
  else
    log_info("staging directory %s removed (all committed)", staging_dir(m->staging));
  return 0;
}

/* ---- the FUSE session ----------------------------------------------------------- */

/* On a stop signal (stop_signal.h): readers of read-only images waiting for
 * a stalled endpoint get ECANCELED now, so that libfuse's workers can be
 * joined.  A writable image is left alone: a write waiting for its source
 * block finishes, and the commit after the loop has everything written. */
static void
cancel_reads(void *arg)
{
  struct mount *m = arg;

  for (size_t i = 0; i < m->nimages; i++)
    if (!image_writable(m->images[i]))
      image_cancel(m->images[i]);
}

static int
start_fuse(struct mount *m)
{
  struct fuse_args *args = &m->opts.fuse_args;
  int r;

  /* "ebsfs on /mnt type fuse.ebsfs" in the mount table; first, so that a
   * user's own fsname= wins. */
  if (fuse_opt_insert_arg(args, 1, "-osubtype=ebsfs,fsname=ebsfs") != 0) {
    log_error("out of memory");
    return -1;
  }
  m->fs.images = m->images;
  m->fs.nimages = m->nimages;
  m->fs.mount_time = time(NULL);
  m->fs.uid = getuid();
  m->fs.gid = getgid();
  m->fs.kernel_cache = m->opts.kernel_cache != 0;
  if ((r = ebsfs_fs_init(&m->fs)) < 0) {
    log_error("cannot start the FUSE session: %s", strerror(-r));
    return -1;
  }
  m->fs_ready = true;
  if (m->staging) {
    m->fs.commit = commit_now;
    m->fs.commit_arg = m;
  }
  m->se = fuse_session_new(args, &ebsfs_fuse_ops, sizeof ebsfs_fuse_ops, &m->fs);
  if (m->se == NULL) {
    if (fuse_errors_logged == 0)
      log_error("cannot start the FUSE session");
    return -1;
  }
  if (fuse_set_signal_handlers(m->se) != 0) {
    log_error("cannot install signal handlers");
    return -1;
  }
  m->handlers = true;
  r = stop_signal_watch(cancel_reads, m);
  if (r < 0)
    log_debug(LOG_SUB_FUSE, "no stop-signal watcher: %s", strerror(-r));
  if (fuse_session_mount(m->se, m->mountpoint) != 0) {
    if (fuse_errors_logged == 0)
      log_error("cannot mount at %s", m->mountpoint);
    return -1;
  }
  m->mounted = true;
  r = kernel_readahead_set(m->mountpoint, KERNEL_READAHEAD_KB);
  if (r < 0)
    log_debug(LOG_SUB_FUSE, "%s: kernel readahead left as it was: %s", m->mountpoint,
              strerror(-r));
  return 0;
}

static int
serve(struct mount *m)
{
  int r;

  if (m->opts.single_thread) {
    r = fuse_session_loop(m->se);
  }
  else {
#if HAVE_FUSE_LOOP_CFG
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    unsigned threads = m->opts.max_requests < 16 ? 16 : m->opts.max_requests;

    if (cfg == NULL) {
      log_error("out of memory");
      return -1;
    }
    /* A reader blocks its thread until its blocks arrive: allow as many
     * threads as fetches in flight, so random reads run in parallel. */
    fuse_loop_cfg_set_max_threads(cfg, threads);
    fuse_loop_cfg_set_idle_threads(cfg, 16);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    r = fuse_session_loop_mt(m->se, cfg);
    fuse_loop_cfg_destroy(cfg);
#else
    struct fuse_loop_config cfg = { .clone_fd = 0, .max_idle_threads = 16 };
    r = fuse_session_loop_mt(m->se, &cfg);
#endif
  }
  /* 0: unmounted (fusermount3 -u); > 0: the signal that stopped us. */
  if (r < 0) {
    log_error("FUSE session failed: %s", strerror(-r));
    return -1;
  }
  if (r > 0)
    log_info("signal %d: unmounting %s", r, m->mountpoint);
  return 0;
}

static void
mount_free(struct mount *m)
{
  stop_signal_unwatch();        /* a no-op unless watching */
  if (m->se) {
    if (m->mounted)
      fuse_session_unmount(m->se);
    if (m->handlers)
      fuse_remove_signal_handlers(m->se);
    fuse_session_destroy(m->se);
  }
  if (m->fs_ready) {
    ebsfs_fs_fini(&m->fs);      /* handles no release came for: before the images */
    m->fs_ready = false;
  }
  for (size_t i = m->nimages; i-- > 0; )
    image_close(m->images[i]);
  free(m->images);
  staging_close(m->staging);
  if (m->cache)
    block_cache_free(m->cache);
  if (m->client)
    ebs_client_free(m->client);
  if (m->creds)
    credentials_provider_free(m->creds);
  free(m->endpoint);
  free(m->region);
  free(m->mountpoint);
  options_free(&m->opts);
}

static void
print_version(void)
{
  printf("ebsfs %s\n", PACKAGE_VERSION);
  printf("libfuse %s\n", fuse_pkgversion());
  fflush(stdout);            /* libfuse runs fusermount3 -V, which writes directly */
  fuse_lowlevel_version();
  printf("%s\n", curl_version());
  printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
}

int
main(int argc, char **argv)
{
  struct mount m = { .status_fd = -1 };
  int status = 1;

  log_init("ebsfs", LOG_LVL_INFO);
  fuse_set_log_func(fuse_log_to_ours);
  if (options_parse(argc, argv, &m.opts) < 0) {
    options_free(&m.opts);
    return 1;
  }
  if (m.opts.show_help) {
    options_usage(argv[0]);
    fuse_lowlevel_help();
    options_free(&m.opts);
    return 0;
  }
  if (m.opts.show_version) {
    print_version();
    options_free(&m.opts);
    return 0;
  }
  if (m.opts.debug)
    m.opts.debug_mask |= LOG_SUB_FUSE;
  if (m.opts.debug_mask)
    log_set_debug(m.opts.debug_mask);
  if (m.opts.commit_path) {
    status = commit_command(m.opts.commit_path);
    options_free(&m.opts);
    return status;
  }
  if (m.opts.resume_dir) {
    status = resume_command(&m);
    mount_free(&m);
    return status;
  }

  if (check_arguments(&m) < 0)
    goto out;
  if (!m.opts.foreground && fork_and_wait(&m) < 0)
    goto out;
  if (setup(&m) < 0 || start_fuse(&m) < 0)
    goto out;
  detach(&m);                   /* daemon: the terminal hears nothing more */
  if (m.staging)
    log_info("mounted %s read-write at %s (endpoint %s)", image_snapshot_id(m.images[0]),
             m.mountpoint, m.endpoint);
  else
    log_info("mounted %zu snapshot%s at %s (endpoint %s)", m.nimages,
             m.nimages == 1 ? "" : "s", m.mountpoint, m.endpoint);
  if (serve(&m) == 0)
    status = 0;
  stop_signal_unwatch();        /* before the images go, and the commit */
  if (m.staging) {
    /* The mount must be gone before the last commit: nothing can write. */
    if (m.mounted) {
      fuse_session_unmount(m.se);
      m.mounted = false;
    }
    if (commit_at_unmount(&m) < 0)
      status = 1;
  }

out:
  mount_free(&m);
  if (m.status_fd >= 0) {
    unsigned char s = (unsigned char) status;
    if (write(m.status_fd, &s, 1) != 1) { }
    close(m.status_fd);
  }
  return status;
}
