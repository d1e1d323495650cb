/* stop_signal.c - a stop signal also cancels what readers wait for
 * (stop_signal.h).
 *
 * A signal handler may only do async-signal-safe work: ours writes one
 * byte to a pipe and calls the handler it replaced (libfuse's, which ends
 * the session).  The thread reading the pipe does the rest.  The state is
 * file-level because a signal handler has no other way to reach it; one
 * watch at a time.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "log.h"
#include "stop_signal.h"

static const int stop_sigs[] = { SIGTERM, SIGINT, SIGHUP };
#define NSIGS (sizeof stop_sigs / sizeof stop_sigs[0])

static struct sigaction replaced[NSIGS];
static bool installed[NSIGS];
static int wake_pipe[2] = { -1, -1 };
static pthread_t watcher;
static bool watching;
static void (*stop_cb)(void *);
static void *stop_arg;

static void
on_stop_signal(int sig)
{
  int saved = errno;
  char c = 's';

  if (write(wake_pipe[1], &c, 1) < 0) {
    /* Full or closing: a byte is there already, or nobody listens. */
  }
  for (size_t i = 0; i < NSIGS; i++)
    if (stop_sigs[i] == sig && replaced[i].sa_handler != SIG_DFL &&
        replaced[i].sa_handler != SIG_IGN)
      replaced[i].sa_handler(sig);
  errno = saved;
}

static void *
watch_main(void *arg)
{
  char c = 0;
  ssize_t n;

  (void) arg;
  do
    n = read(wake_pipe[0], &c, 1);
  while (n < 0 && errno == EINTR);
  if (n == 1 && c == 's') {
    log_debug(LOG_SUB_FUSE, "stop signal: cancelling the requests readers wait for");
    stop_cb(stop_arg);
  }
  return NULL;
}

int
stop_signal_watch(void (*cb)(void *arg), void *arg)
{
  int r;

  if (watching)
    return -EBUSY;
  if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return -errno;
  /* The reading end blocks: only the signal handler's write must not. */
  if (fcntl(wake_pipe[0], F_SETFL, 0) != 0) {
    r = -errno;
    goto fail;
  }
  stop_cb = cb;
  stop_arg = arg;
  r = pthread_create(&watcher, NULL, watch_main, NULL);
  if (r != 0) {
    r = -r;
    goto fail;
  }
  watching = true;
  for (size_t i = 0; i < NSIGS; i++) {
    struct sigaction sa;

    /* Only in front of a plain handler (libfuse's): never take over a
     * default or ignored disposition. */
    if (sigaction(stop_sigs[i], NULL, &replaced[i]) != 0 ||
        (replaced[i].sa_flags & SA_SIGINFO) || replaced[i].sa_handler == SIG_DFL ||
        replaced[i].sa_handler == SIG_IGN)
      continue;
    sa = replaced[i];
    sa.sa_handler = on_stop_signal;
    if (sigaction(stop_sigs[i], &sa, NULL) == 0)
      installed[i] = true;
  }
  return 0;

 fail:
  close(wake_pipe[0]);
  close(wake_pipe[1]);
  wake_pipe[0] = wake_pipe[1] = -1;
  return r;
}

void
stop_signal_unwatch(void)
{
  char c = 'q';

  if (!watching)
    return;
  for (size_t i = 0; i < NSIGS; i++)
    if (installed[i]) {
      if (sigaction(stop_sigs[i], &replaced[i], NULL) != 0)
        log_debug(LOG_SUB_FUSE, "cannot restore the handler of signal %d: %s", stop_sigs[i],
                  strerror(errno));
      installed[i] = false;
    }
  /* Wakes the watcher if no signal did (a signal's byte comes first). */
  if (write(wake_pipe[1], &c, 1) < 0)
    log_debug(LOG_SUB_FUSE, "stop watcher: wakeup: %s", strerror(errno));
  pthread_join(watcher, NULL);
  close(wake_pipe[0]);
  close(wake_pipe[1]);
  wake_pipe[0] = wake_pipe[1] = -1;
  watching = false;
}
