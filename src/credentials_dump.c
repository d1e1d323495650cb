/* credentials_dump.c - resolve credentials the way ebsfs does and print where
 * they came from: source, access key id, expiry, whether there is a session
 * token.  Never the secret key or the token themselves.  A test tool for
 * tests/client-credentials.sh, not installed.
 *
 * credentials_dump [-p PROFILE] [-i IMDS_URL] [-n COUNT] [-s SLEEP_MS]
 *                  [-r RETRY_S] [-T THREADS] [-d]
 * gets credentials COUNT times from one provider (SLEEP_MS apart), from
 * THREADS threads at once when -T is given; -d turns on credential debug
 * logging; -r shortens the wait between refresh attempts.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "credentials.h"
#include "credentials_int.h"
#include "log.h"

struct run {
  struct credentials_provider *p;
  int count;
  int sleep_ms;
  int failures;
};

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void *
run_gets(void *arg)
{
  struct run *run = arg;
  char err[512], when[32];

  for (int i = 0; i < run->count; i++) {
    struct aws_credentials *c = NULL;
    int r = credentials_get(run->p, &c, err, sizeof err);

    pthread_mutex_lock(&print_lock);
    if (r < 0) {
      fprintf(stderr, "credentials_dump: error: %s (%s)\n", err, strerror(-r));
      run->failures++;
    }
    else {
      struct tm tm;
      if (c->expiration == 0 || gmtime_r(&c->expiration, &tm) == NULL)
        snprintf(when, sizeof when, "never");
      else
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
      printf("source=%s access_key_id=%s expiration=%s session_token=%s\n",
             c->source, c->access_key_id, when, c->session_token ? "yes" : "no");
      fflush(stdout);
    }
    pthread_mutex_unlock(&print_lock);
    credentials_release(c);
    if (run->sleep_ms && i + 1 < run->count)
      usleep((useconds_t) run->sleep_ms * 1000);
  }
  return NULL;
}

int
main(int argc, char **argv)
{
  struct credentials_options o = { 0 };
  struct run run = { .count = 1 };
  int threads = 0, retry = -1, c, failures = 0;

  while ((c = getopt(argc, argv, "p:i:n:s:r:T:d")) != -1) {
    switch (c) {
    case 'p': o.profile = optarg; break;
    case 'i': o.imds_endpoint = optarg; break;
    case 'n': run.count = atoi(optarg); break;
    case 's': run.sleep_ms = atoi(optarg); break;
    case 'r': retry = atoi(optarg); break;
    case 'T': threads = atoi(optarg); break;
    case 'd':
      log_init("credentials_dump", LOG_LVL_DEBUG);
      log_set_debug(LOG_SUB_CREDS);
      break;
    default:
      fprintf(stderr, "usage: credentials_dump [-p PROFILE] [-i IMDS_URL] [-n COUNT] "
              "[-s SLEEP_MS] [-r RETRY_S] [-T THREADS] [-d]\n");
      return 2;
    }
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "credentials_dump: curl_global_init failed\n");
    return 1;
  }
  run.p = credentials_provider_new(&o);
  if (run.p == NULL) {
    fprintf(stderr, "credentials_dump: out of memory\n");
    return 1;
  }
  if (retry >= 0)
    creds_provider_set_retry_interval(run.p, retry);

  if (threads > 0) {
    pthread_t *t = calloc((size_t) threads, sizeof *t);
    struct run *runs = calloc((size_t) threads, sizeof *runs);
    int started = 0;
    if (t == NULL || runs == NULL) {
      fprintf(stderr, "credentials_dump: out of memory\n");
      return 1;
    }
    for (; started < threads; started++) {
      runs[started] = run;
      if (pthread_create(&t[started], NULL, run_gets, &runs[started]) != 0) {
        fprintf(stderr, "credentials_dump: pthread_create failed\n");
        failures++;
        break;
      }
    }
    for (int i = 0; i < started; i++) {
      pthread_join(t[i], NULL);
      failures += runs[i].failures;
    }
    free(t);
    free(runs);
  }
  else {
    run_gets(&run);
    failures = run.failures;
  }
  credentials_provider_free(run.p);
  curl_global_cleanup();
  return failures ? 1 : 0;
}
