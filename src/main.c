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
#include "log.h"

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
  struct fuse_session *se;
  bool mounted, handlers;
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

static int
check_arguments(struct mount *m)
{
  struct ebsfs_options *o = &m->opts;
  struct stat st;
  char *abs;

  if (o->rw) {
    log_error("-o rw: this version mounts read-only only");
    return -1;
  }
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

static int
setup(struct mount *m)
{
  struct ebsfs_options *o = &m->opts;
  struct credentials_options copts = { .profile = o->profile };
  struct ebs_client_config cfg = { 0 };
  struct image_options iopts = { 0 };
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
  max_in_flight = (uint64_t) o->max_requests * o->nsnapshots;
  cfg.max_in_flight = max_in_flight > 4096 ? 4096 : (unsigned) max_in_flight;
  memset(&err, 0, sizeof err);
  m->client = ebs_client_new(&cfg, &err);
  if (m->client == NULL) {
    log_error("cannot start the EBS client: %s", ebs_error_string(&err, msg, sizeof msg));
    return -1;
  }
  m->cache = block_cache_new(o->cache_size);
  if (m->cache == NULL) {
    log_error("cannot create a %llu-byte block cache: out of memory",
              (unsigned long long) o->cache_size);
    return -1;
  }

  m->images = calloc(o->nsnapshots, sizeof *m->images);
  if (m->images == NULL) {
    log_error("out of memory");
    return -1;
  }
  iopts.client = m->client;
  iopts.cache = m->cache;
  iopts.max_requests = o->max_requests;
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
    log_debug(LOG_SUB_FUSE, "%s: %llu bytes", o->snapshots[i],
              (unsigned long long) image_size(m->images[i]));
  }
  return 0;
}

/* ---- the FUSE session ----------------------------------------------------------- */

static int
start_fuse(struct mount *m)
{
  struct fuse_args *args = &m->opts.fuse_args;

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
  if (fuse_session_mount(m->se, m->mountpoint) != 0) {
    if (fuse_errors_logged == 0)
      log_error("cannot mount at %s", m->mountpoint);
    return -1;
  }
  m->mounted = true;
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
  if (m->se) {
    if (m->mounted)
      fuse_session_unmount(m->se);
    if (m->handlers)
      fuse_remove_signal_handlers(m->se);
    fuse_session_destroy(m->se);
  }
  for (size_t i = m->nimages; i-- > 0; )
    image_close(m->images[i]);
  free(m->images);
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

  if (check_arguments(&m) < 0)
    goto out;
  if (!m.opts.foreground && fork_and_wait(&m) < 0)
    goto out;
  if (setup(&m) < 0 || start_fuse(&m) < 0)
    goto out;
  detach(&m);                   /* daemon: the terminal hears nothing more */
  log_info("mounted %zu snapshot%s at %s (endpoint %s)", m.nimages,
           m.nimages == 1 ? "" : "s", m.mountpoint, m.endpoint);
  if (serve(&m) == 0)
    status = 0;

out:
  mount_free(&m);
  if (m.status_fd >= 0) {
    unsigned char s = (unsigned char) status;
    if (write(m.status_fd, &s, 1) != 1) { }
    close(m.status_fd);
  }
  return status;
}
