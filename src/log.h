/* log.h - the one logging facility of ebsfs.
 *
 * Messages go to stderr in the foreground and to syslog once daemonized.
 * Debug output is switched on per subsystem (-o debug=http,cache) rather than
 * as one firehose.  Rule for every caller: never pass a secret (secret key,
 * session token, Authorization header) to these functions; the tests grep all
 * output for the test secrets.
 */
#ifndef EBSFS_LOG_H
#define EBSFS_LOG_H

#include <stdbool.h>
#include <stdarg.h>

enum log_level {
  LOG_LVL_ERROR = 0,
  LOG_LVL_WARN,
  LOG_LVL_INFO,
  LOG_LVL_DEBUG,
};

/* Debug subsystems, a bit each. */
enum log_subsys {
  LOG_SUB_HTTP     = 1u << 0,
  LOG_SUB_SIGV4    = 1u << 1,
  LOG_SUB_CREDS    = 1u << 2,
  LOG_SUB_INDEX    = 1u << 3,
  LOG_SUB_CACHE    = 1u << 4,
  LOG_SUB_READAHEAD= 1u << 5,
  LOG_SUB_FUSE     = 1u << 6,
  LOG_SUB_STAGING  = 1u << 7,
  LOG_SUB_COMMIT   = 1u << 8,
  LOG_SUB_ALL      = 0xffffu,
};

/* Set the program name and the threshold; safe to call again (e.g. on daemonizing). */
void log_init(const char *ident, enum log_level level);
/* Switch to syslog (after daemonizing) or back to stderr. */
void log_use_syslog(bool on);
/* Parse "http,cache" or "all" into a subsystem mask; returns -1 on an unknown name. */
int log_parse_subsystems(const char *list, unsigned *mask);
void log_set_debug(unsigned subsys_mask);
bool log_debug_on(enum log_subsys sub);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
  __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
/* Debug messages cost one branch when their subsystem is off. */
#define log_debug(sub, ...) \
  do { if (log_debug_on(sub)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
