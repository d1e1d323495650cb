/* log.c - stderr/syslog logging with per-subsystem debug switches.
 *
 * One line per message, written with a single write(2) on stderr so lines
 * from concurrent threads do not interleave.  See log.h for the rules.
 */
#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "ebsfs";
static _Atomic int log_level_now = LOG_LVL_INFO;
static _Atomic unsigned log_debug_mask;
static _Atomic bool log_syslog;

void
log_init(const char *ident, enum log_level level)
{
  if (ident)
    log_ident = ident;
  log_level_now = level;
}

void
log_use_syslog(bool on)
{
  if (on && !log_syslog)
    openlog(log_ident, LOG_PID, LOG_DAEMON);
  else if (!on && log_syslog)
    closelog();
  log_syslog = on;
}

static const struct { const char *name; unsigned bit; } subsystems[] = {
  { "http", LOG_SUB_HTTP }, { "sigv4", LOG_SUB_SIGV4 },
  { "creds", LOG_SUB_CREDS }, { "index", LOG_SUB_INDEX },
  { "cache", LOG_SUB_CACHE }, { "readahead", LOG_SUB_READAHEAD },
  { "fuse", LOG_SUB_FUSE }, { "staging", LOG_SUB_STAGING },
  { "commit", LOG_SUB_COMMIT }, { "all", LOG_SUB_ALL },
};

int
log_parse_subsystems(const char *list, unsigned *mask)
{
  unsigned m = 0;
  const char *p = list;

  while (p && *p) {
    size_t n = strcspn(p, ",");
    bool found = false;
    for (size_t i = 0; i < sizeof subsystems / sizeof subsystems[0]; i++) {
      if (strlen(subsystems[i].name) == n && strncasecmp(p, subsystems[i].name, n) == 0) {
        m |= subsystems[i].bit;
        found = true;
      }
    }
    if (!found && n > 0)
      return -1;
    p += n;
    if (*p == ',')
      p++;
  }
  *mask = m;
  return 0;
}

void log_set_debug(unsigned mask) { log_debug_mask = mask; if (mask) log_level_now = LOG_LVL_DEBUG; }
bool log_debug_on(enum log_subsys sub) { return (log_debug_mask & sub) != 0; }
enum log_level log_get_level(void) { return log_level_now; }

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
  static const char *const names[] = { "error", "warning", "info", "debug" };
  static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
  char line[2048];
  int saved_errno = errno;
  size_t n;
  int r;

  if ((int) level > log_level_now)
    return;

  if (log_syslog) {
    vsyslog(prio[level], fmt, ap);
    errno = saved_errno;
    return;
  }

  if (level == LOG_LVL_DEBUG) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = snprintf(line, sizeof line, "%s: %ld.%06ld debug: ", log_ident,
                 (long) ts.tv_sec, ts.tv_nsec / 1000);
  }
  else if (level == LOG_LVL_INFO)
    r = snprintf(line, sizeof line, "%s: ", log_ident);
  else
    r = snprintf(line, sizeof line, "%s: %s: ", log_ident, names[level]);
  n = r > 0 ? (size_t) r : 0;
  if (n < sizeof line) {
    r = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (r > 0)
      n += (size_t) r;
  }
  if (n > sizeof line - 2)
    n = sizeof line - 2;         /* truncated: keep the newline */
  while (n > 0 && line[n - 1] == '\n')
    n--;
  line[n++] = '\n';
  /* One write per line; a failed write to stderr has nowhere to be reported. */
  if (write(STDERR_FILENO, line, n) < 0) { }
  errno = saved_errno;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, fmt, ap);
  va_end(ap);
}
