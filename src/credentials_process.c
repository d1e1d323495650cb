/* credentials_process.c - the credential_process source: run the profile's
 * command and read its JSON ({"Version": 1, "AccessKeyId", "SecretAccessKey",
 * "SessionToken", "Expiration"}) from its standard output.
 *
 * The command runs through /bin/sh -c, so quoting works as users write it in
 * ~/.aws/config.  It is started with posix_spawn (safe in a threaded
 * process), reads /dev/null, keeps our stderr for its own diagnostics, and
 * is killed if it takes longer than CREDS_PROCESS_TIMEOUT_S or writes more
 * than CREDS_MAX_RESPONSE bytes.  Neither the command line (it may carry a
 * secret) nor its output ever reaches an error message.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "aws_config.h"
#include "buf.h"
#include "credentials_int.h"

#define CREDS_PROCESS_TIMEOUT_S 60

extern char **environ;

static long long
now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read all of fd into b until EOF, the cap, or the deadline. */
static int
read_all(int fd, struct buf *b, long long deadline)
{
  char chunk[4096];

  for (;;) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    long long left = deadline - now_ms();
    ssize_t n;
    int r;

    if (left <= 0)
      return -ETIMEDOUT;
    r = poll(&pfd, 1, (int) (left > 1000 ? 1000 : left));
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (r == 0)
      continue;
    n = read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return -errno;
    }
    if (n == 0)
      return 0;
    r = buf_append(b, chunk, (size_t) n);
    OPENSSL_cleanse(chunk, (size_t) n);
    if (r < 0)
      return r;
  }
}

int
creds_from_process(const char *profile, struct aws_credentials **out, char *err, size_t errlen)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, deflt;
  char *cmd, *argv[4];
  struct buf b;
  int pipefd[2] = { -1, -1 };
  int r, status = 0;
  pid_t pid = -1;

  /* The credentials file's profile wins over the config file's, as when
   * botocore merges the two. */
  cmd = aws_credentials_file_get(profile, "credential_process");
  if (cmd == NULL)
    cmd = aws_config_get(profile, "credential_process");
  if (cmd == NULL || *cmd == '\0') {
    free(cmd);
    return -ENOENT;
  }

  buf_init(&b, CREDS_MAX_RESPONSE);
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    r = -errno;
    snprintf(err, errlen, "credential_process: pipe: %s", strerror(-r));
    free(cmd);
    return r;
  }
  if ((r = posix_spawn_file_actions_init(&fa)) != 0) {
    snprintf(err, errlen, "credential_process: %s", strerror(r));
    close(pipefd[0]);
    close(pipefd[1]);
    free(cmd);
    return -r;
  }
  if ((r = posix_spawnattr_init(&attr)) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    goto spawn_failed;
  }
  /* The calling thread may be a FUSE worker with signals blocked, and the
   * daemon may ignore SIGPIPE: the command gets a plain signal state. */
  sigemptyset(&none);
  sigemptyset(&deflt);
  sigaddset(&deflt, SIGPIPE);
  sigaddset(&deflt, SIGINT);
  sigaddset(&deflt, SIGTERM);
  sigaddset(&deflt, SIGHUP);
  sigaddset(&deflt, SIGQUIT);
  sigaddset(&deflt, SIGCHLD);
  if ((r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0 ||
      (r = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
      (r = posix_spawnattr_setsigdefault(&attr, &deflt)) != 0 ||
      (r = posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO)) != 0 ||
      (r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) != 0)
    goto spawn_done;
  argv[0] = (char *) "sh";
  argv[1] = (char *) "-c";
  argv[2] = cmd;
  argv[3] = NULL;
  r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
 spawn_done:
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
 spawn_failed:
  close(pipefd[1]);
  OPENSSL_cleanse(cmd, strlen(cmd));
  free(cmd);
  if (r != 0) {
    close(pipefd[0]);
    snprintf(err, errlen, "credential_process for profile '%s': cannot run /bin/sh: %s",
             profile, strerror(r));
    return -r;
  }

  r = read_all(pipefd[0], &b, now_ms() + CREDS_PROCESS_TIMEOUT_S * 1000LL);
  close(pipefd[0]);
  if (r < 0)
    kill(pid, SIGKILL);                 /* hung or too chatty: it gets no more time */
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      status = -1;
      break;
    }
  }
  if (r == -ETIMEDOUT)
    snprintf(err, errlen, "credential_process for profile '%s': no answer within %d s",
             profile, CREDS_PROCESS_TIMEOUT_S);
  else if (r == -E2BIG)
    snprintf(err, errlen, "credential_process for profile '%s': output larger than %d bytes",
             profile, CREDS_MAX_RESPONSE);
  else if (r < 0)
    snprintf(err, errlen, "credential_process for profile '%s': reading its output: %s",
             profile, strerror(-r));
  else if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (status != -1 && WIFSIGNALED(status))
      snprintf(err, errlen, "credential_process for profile '%s' was killed by signal %d",
               profile, WTERMSIG(status));
    else
      snprintf(err, errlen, "credential_process for profile '%s' exited with status %d",
               profile, status == -1 ? -1 : WEXITSTATUS(status));
    r = -EIO;
  }
  else
    r = creds_from_json(b.data ? b.data : "", b.len, "SessionToken", true,
                        "credential-process", out, err, errlen);
  if (b.data)
    OPENSSL_cleanse(b.data, b.len);
  buf_free(&b);
  return r;
}
