/* http.h - the transport: libcurl multi driven by one I/O thread.
 *
 * Why one thread and a curl multi, not a pool of blocking handles: reads need
 * 100+ requests in flight (Little's law: 1000 req/s x 100 ms).  A thread per
 * request costs a stack and a context switch per block and still needs a
 * scheduler for retries and pacing; one thread in epoll_wait() waits on all
 * sockets at once (curl's socket interface), reuses connections from the
 * multi's pool, and owns the retry timers and the rate limiter without a
 * lock.  Other threads only hand requests over (a mutex-protected queue and
 * an eventfd to wake the thread).
 *
 * A request (struct http_job) is built and judged by its owner (ebs.c)
 * through three callbacks, all run on the I/O thread:
 *   prepare - before every attempt: build the URL and headers, sign them
 *             with fresh credentials (so a retry is never sent with an old
 *             X-Amz-Date or expired keys);
 *   judge   - after every attempt: success, or a failure and its retry class;
 *   done    - exactly once, with the final result.
 * Between attempts the job waits on the I/O thread's timer (backoff from
 * retry.h, pacing from ratelimit.h); no thread ever sleeps for a retry.
 *
 * Priority: a background job (readahead, prefetch) never holds up one that
 * a reader waits for.  Readers' jobs get slots first, and background jobs
 * leave 1 slot in 16 to them (at least one, unless there is only one).  A
 * reader's job whose send time lies behind background jobs' reserved ones
 * of the same key trades send times with the first of them: the pace stays
 * the same, as reservations are traded, never added.  A background job
 * someone starts waiting for becomes a reader's job the same way
 * (http_promote).
 */
#ifndef EBSFS_HTTP_H
#define EBSFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "buf.h"
#include "retry.h"

struct http;
struct http_job;

struct http_job_ops {
  int (*prepare)(struct http_job *job);                     /* 0 or -errno (final) */
  /* 0 on success; else -errno and *cls (RETRY_NEVER for a final failure). */
  int (*judge)(struct http_job *job, enum retry_class *cls);
  /* rc: 0 or -errno (-ECANCELED at shutdown, without a judge call).  The
   * job's memory is the owner's again once done is called. */
  void (*done)(struct http_job *job, int rc);
};

struct http_job {
  /* ---- owner: set before http_submit */
  const struct http_job_ops *ops;
  const char *rate_key;          /* paced per this key (snapshot id), or NULL */
  bool background;               /* a prefetch: requests that someone waits
                                  * for go first (http_promote clears it) */
  uint64_t tag;                  /* names the job to http_promote (a block) */
  const char *owner;             /* what http_cancel_owner matches (a snapshot
                                  * id), or NULL */
  size_t body_max;               /* cap of `body` (error bodies land there too) */
  void *direct;                  /* a 2xx body goes here instead of `body`... */
  size_t direct_max;             /* ...up to this many bytes (more = failed attempt) */
  EVP_MD_CTX *direct_hash;       /* if set: SHA-256 updated as `direct` fills */

  /* ---- owner: set by prepare, for this attempt */
  const char *method;            /* "GET", "PUT", "POST" */
  char *url;
  struct curl_slist *headers;
  const void *upload;            /* request body (not copied), may be NULL */
  size_t upload_len;

  /* ---- transport: the attempt's outcome, for judge */
  int curl_code;                 /* CURLcode; 0 = an HTTP answer arrived */
  char curl_error[CURL_ERROR_SIZE];
  long status;
  struct buf body;               /* freed before done is called */
  size_t direct_len;
  bool body_too_long;            /* the body went over its cap */
  char hdr_error_type[128];      /* x-amzn-ErrorType */
  char hdr_request_id[80];       /* x-amzn-RequestId */
  char hdr_checksum[100];        /* x-amz-Checksum */
  char hdr_data_length[24];      /* x-amz-Data-Length, "" when absent */
  unsigned attempts;             /* sent so far, this one included */

  /* ---- private to http.c */
  int state_;
  uint64_t first_ms_, wake_ms_;
  size_t heap_idx_;
  CURL *easy_;
  struct http_job *next_, *prev_;
};

struct http_config {
  unsigned max_in_flight;        /* 0: 128 */
  unsigned connect_timeout_ms;   /* 0: 5000 */
  unsigned stall_timeout_ms;     /* 0: 15000 */
  unsigned max_attempts;         /* 0: retry.h default */
  unsigned retry_budget_ms;      /* 0: retry.h default */
  double rate_limit;             /* per rate_key, requests/s; 0: ratelimit.h default */
  const char *ca_bundle;         /* NULL: system default */
};

struct http_stats {
  uint64_t requests, retries, throttles, bytes_in, bytes_out;
  unsigned in_flight;
};

/* Starts the I/O thread.  Returns NULL with errno set. */
struct http *http_new(const struct http_config *cfg);
/* Stops it: every job not yet done gets done(-ECANCELED). */
void http_free(struct http *h);

/* Hand a job to the I/O thread.  Returns 0 (done will be called), or -errno
 * (-ECANCELED when shutting down) and done will not be called. */
int http_submit(struct http *h, struct http_job *job);

/* Someone now waits for the background job (rate_key, tag): it becomes a
 * reader's job, and if it has not gone out yet it goes before the other
 * background jobs.  Any thread; a job already sent or done is left as it is;
 * best effort (dropped when many promotions are queued at once). */
void http_promote(struct http *h, const char *rate_key, uint64_t tag);

/* Every job of owner that was submitted before this call ends now with
 * done(-ECANCELED), sent or not: for an owner that goes away (an image being
 * closed) and has no use for their answers.  Returns once those done calls
 * have been made.  Not from a done callback, nor alongside http_free. */
void http_cancel_owner(struct http *h, const char *owner);

void http_get_stats(struct http *h, struct http_stats *out);
/* The pace the limiter currently allows for key (for tests and stats). */
double http_rate(struct http *h, const char *key);

/* Monotonic milliseconds. */
uint64_t http_now_ms(void);

#endif
