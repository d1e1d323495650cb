/* http.c - the I/O thread: curl multi, queue, timers, pacing, retries.
 *
 * See http.h for why one thread drives everything.  A job's life:
 *   incoming queue (any thread) -> pending FIFO (waits for one of
 *   max_in_flight slots) -> [paced: timer until its rate slot] -> prepare
 *   (sign) -> curl multi -> judge -> done, or backoff timer -> again.
 * A job keeps its slot while it waits for a retry, so a throttle storm
 * lowers the load instead of letting new requests pile on.
 *
 * Connections: CURLMOPT_MAX_HOST_CONNECTIONS = max_in_flight and a
 * connection cache as large, so every request in flight can own a
 * keep-alive connection and nothing reconnects in steady state.  HTTP/1.1
 * on purpose: one TCP stream per request in flight spreads 500 MB/s over
 * many windows, where HTTP/2 would squeeze them into one connection.
 *
 * The loop is driven by epoll and curl's socket interface
 * (curl_multi_socket_action): each wakeup hands curl only the sockets that
 * are ready.  curl_multi_perform and curl_multi_poll look at every
 * transfer's socket on every turn, which with 100+ requests in flight was
 * about 5% of the daemon's CPU in a sequential read.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "http.h"
#include "log.h"
#include "ratelimit.h"

#define HTTP_SMALL_BODY (64 * 1024)        /* curl sends these with the headers */
#define HTTP_UPLOAD_BUFFER (512L * 1024)   /* one EBS block per send() */

#define HTTP_MAX_PROMOTIONS 64             /* queued between two turns of the loop */
#define HTTP_KEY_MAX 72                    /* a key (snapshot ID, at most 64) + NUL */

struct promotion {
  char key[HTTP_KEY_MAX];
  uint64_t tag;
};

enum job_state {
  JOB_PENDING = 0,               /* waiting for a slot */
  JOB_WAIT_RATE,                 /* on the timer until its rate slot */
  JOB_WAIT_RETRY,                /* on the timer until its backoff ends */
  JOB_RUNNING,                   /* in the curl multi */
};

struct http {
  struct http_config cfg;
  struct retry_policy policy;
  CURLM *multi;
  int epfd;                      /* the transfers' sockets and wakefd */
  int wakefd;                    /* eventfd: new jobs, or stop */
  int64_t curl_deadline;         /* I/O thread: curl's timer (ms), -1: none */
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t lock;          /* protects incoming, promotions, cancels, stopping */
  struct http_job *in_head, *in_tail;
  struct promotion promo[HTTP_MAX_PROMOTIONS];
  unsigned npromo;
  bool stopping;
  /* http_cancel_owner, one at a time: asked != done while cancel_owner's
   * jobs wait to be cancelled by the I/O thread. */
  char cancel_owner[HTTP_KEY_MAX];
  unsigned cancel_asked, cancel_done;
  pthread_cond_t cancel_cond;    /* cancel_done moved */

  /* I/O thread only: */
  struct http_job *pend_head[2], *pend_tail[2];   /* [0] readers', [1] background */
  struct http_job **heap;        /* timer min-heap on wake_ms_ */
  size_t nheap, heap_cap;
  CURL **easy_pool;              /* idle easy handles, reused */
  size_t npool;
  struct http_job *run_head;     /* jobs in the multi (for shutdown) */
  unsigned active;               /* jobs holding a slot */
  uint32_t rnd;

  pthread_mutex_t rl_lock;       /* the limiter is used by the I/O thread; stats read it */
  struct ratelimit *rl;

  _Atomic uint64_t st_requests, st_retries, st_throttles, st_bytes_in, st_bytes_out;
  _Atomic unsigned st_in_flight;
};

uint64_t
http_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* ---- timer heap ------------------------------------------------------------ */

static void
heap_swap(struct http *h, size_t a, size_t b)
{
  struct http_job *t = h->heap[a];
  h->heap[a] = h->heap[b];
  h->heap[b] = t;
  h->heap[a]->heap_idx_ = a;
  h->heap[b]->heap_idx_ = b;
}

static void
sift_up(struct http *h, size_t i)
{
  while (i > 0 && h->heap[(i - 1) / 2]->wake_ms_ > h->heap[i]->wake_ms_) {
    heap_swap(h, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void
sift_down(struct http *h, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < h->nheap && h->heap[l]->wake_ms_ < h->heap[m]->wake_ms_)
      m = l;
    if (r < h->nheap && h->heap[r]->wake_ms_ < h->heap[m]->wake_ms_)
      m = r;
    if (m == i)
      break;
    heap_swap(h, i, m);
    i = m;
  }
}

static int
heap_push(struct http *h, struct http_job *job)
{
  size_t i;
  if (h->nheap == h->heap_cap) {
    size_t ncap = h->heap_cap ? h->heap_cap * 2 : 64;
    struct http_job **n = realloc(h->heap, ncap * sizeof *n);
    if (n == NULL)
      return -ENOMEM;
    h->heap = n;
    h->heap_cap = ncap;
  }
  i = h->nheap++;
  h->heap[i] = job;
  job->heap_idx_ = i;
  sift_up(h, i);
  return 0;
}

/* Take the job at index i out of the heap. */
static void
heap_remove(struct http *h, size_t i)
{
  size_t last = --h->nheap;
  struct http_job *moved;

  if (i == last)
    return;
  /* The last job fills the hole, then finds its place up or down. */
  moved = h->heap[last];
  h->heap[i] = moved;
  moved->heap_idx_ = i;
  sift_up(h, i);
  sift_down(h, moved->heap_idx_);
}

static struct http_job *
heap_pop(struct http *h)
{
  struct http_job *top;

  if (h->nheap == 0)
    return NULL;
  top = h->heap[0];
  heap_remove(h, 0);
  return top;
}

/* ---- curl callbacks ------------------------------------------------------- */

static void
copy_header_value(char *dst, size_t dstlen, const char *v, size_t n)
{
  while (n > 0 && (*v == ' ' || *v == '\t')) {
    v++;
    n--;
  }
  while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  if (n >= dstlen)
    n = dstlen - 1;              /* over-long values are cut, never overflow */
  memcpy(dst, v, n);
  dst[n] = '\0';
}

static size_t
header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
  struct http_job *job = arg;
  size_t n = size * nmemb;
  const char *colon;
  size_t name_len;

  if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
    /* A new status line (after a 100 Continue, say): forget the old headers. */
    job->hdr_error_type[0] = job->hdr_request_id[0] = '\0';
    job->hdr_checksum[0] = job->hdr_data_length[0] = '\0';
    return n;
  }
  colon = memchr(line, ':', n);
  if (colon == NULL)
    return n;
  name_len = (size_t) (colon - line);
  colon++;
#define HDR_IS(s) (name_len == sizeof(s) - 1 && strncasecmp(line, s, name_len) == 0)
  if (HDR_IS("x-amzn-ErrorType"))
    copy_header_value(job->hdr_error_type, sizeof job->hdr_error_type, colon, n - name_len - 1);
  else if (HDR_IS("x-amzn-RequestId"))
    copy_header_value(job->hdr_request_id, sizeof job->hdr_request_id, colon, n - name_len - 1);
  else if (HDR_IS("x-amz-Checksum"))
    copy_header_value(job->hdr_checksum, sizeof job->hdr_checksum, colon, n - name_len - 1);
  else if (HDR_IS("x-amz-Data-Length"))
    copy_header_value(job->hdr_data_length, sizeof job->hdr_data_length, colon, n - name_len - 1);
#undef HDR_IS
  return n;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
  struct http_job *job = arg;
  size_t n = size * nmemb;
  long status = 0;

  curl_easy_getinfo(job->easy_, CURLINFO_RESPONSE_CODE, &status);
  if (job->direct && status >= 200 && status < 300) {
    /* Straight into the caller's buffer: the block is never copied again. */
    if (n > job->direct_max - job->direct_len) {
      job->body_too_long = true;
      return 0;                  /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    memcpy((char *) job->direct + job->direct_len, data, n);
    if (job->direct_hash &&
        EVP_DigestUpdate(job->direct_hash, (char *) job->direct + job->direct_len, n) != 1)
      return 0;
    job->direct_len += n;
  }
  else if (buf_append(&job->body, data, n) < 0) {
    job->body_too_long = true;
    return 0;
  }
  return n;
}

/* ---- job life ---------------------------------------------------------------- */

static void
job_finish(struct http *h, struct http_job *job, int rc)
{
  h->active--;
  atomic_store(&h->st_in_flight, h->active);
  buf_free(&job->body);          /* judge has read it */
  job->ops->done(job, rc);
}

static void
running_add(struct http *h, struct http_job *job)
{
  job->prev_ = NULL;
  job->next_ = h->run_head;
  if (h->run_head)
    h->run_head->prev_ = job;
  h->run_head = job;
}

static void
running_del(struct http *h, struct http_job *job)
{
  if (job->prev_)
    job->prev_->next_ = job->next_;
  else
    h->run_head = job->next_;
  if (job->next_)
    job->next_->prev_ = job->prev_;
  job->next_ = job->prev_ = NULL;
}

static CURL *
easy_get(struct http *h)
{
  if (h->npool > 0) {
    CURL *e = h->easy_pool[--h->npool];
    curl_easy_reset(e);
    return e;
  }
  return curl_easy_init();
}

static void
easy_put(struct http *h, CURL *e)
{
  if (h->npool < h->cfg.max_in_flight)
    h->easy_pool[h->npool++] = e;
  else
    curl_easy_cleanup(e);
}

#define SETOPT(opt, val) do { \
    if ((cr = curl_easy_setopt(e, opt, val)) != CURLE_OK) goto setopt_failed; \
  } while (0)

/* Sign and send one attempt. */
static void
job_launch(struct http *h, struct http_job *job)
{
  CURL *e;
  CURLcode cr;
  int r;
  long stall_s;

  job->curl_code = 0;
  job->curl_error[0] = '\0';
  job->status = 0;
  buf_reset(&job->body);
  job->direct_len = 0;
  job->body_too_long = false;
  job->hdr_error_type[0] = job->hdr_request_id[0] = '\0';
  job->hdr_checksum[0] = job->hdr_data_length[0] = '\0';
  job->attempts++;

  r = job->ops->prepare(job);
  if (r < 0) {
    job_finish(h, job, r);
    return;
  }
  e = easy_get(h);
  if (e == NULL) {
    job_finish(h, job, -ENOMEM);
    return;
  }
  stall_s = (long) ((h->cfg.stall_timeout_ms + 999) / 1000);
  SETOPT(CURLOPT_URL, job->url);
  SETOPT(CURLOPT_HTTPHEADER, job->headers);
  SETOPT(CURLOPT_PRIVATE, job);
  SETOPT(CURLOPT_ERRORBUFFER, job->curl_error);
  SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
  SETOPT(CURLOPT_WRITEDATA, job);
  SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
  SETOPT(CURLOPT_HEADERDATA, job);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) h->cfg.connect_timeout_ms);
  /* Stall timeout: under 1 byte/s for this long = dead (covers waiting for
   * the answer, a body that stops mid-way, and a server that never answers). */
  SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
  SETOPT(CURLOPT_LOW_SPEED_TIME, stall_s > 0 ? stall_s : 1L);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  if (h->cfg.ca_bundle)
    SETOPT(CURLOPT_CAINFO, h->cfg.ca_bundle);
#if HAVE_DECL_CURLOPT_PROTOCOLS_STR
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SETOPT(CURLOPT_BUFFERSIZE, 64L * 1024);
  SETOPT(CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
  if (strcmp(job->method, "GET") != 0) {
    /* POSTFIELDS: curl keeps a pointer to the body (the caller's 512 KiB
     * block).  A body over 64 KiB is sent through the upload buffer, one
     * buffer per send() and per turn of the I/O loop (a poll over every
     * connection): with the default 64 KiB that loop, not the data, was a
     * third of the CPU of a commit.  One block fits in one buffer. */
    SETOPT(CURLOPT_POSTFIELDS, job->upload ? (const char *) job->upload : "");
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) job->upload_len);
    if (job->upload_len > HTTP_SMALL_BODY)
      SETOPT(CURLOPT_UPLOAD_BUFFERSIZE, HTTP_UPLOAD_BUFFER);
    if (strcmp(job->method, "POST") != 0)
      SETOPT(CURLOPT_CUSTOMREQUEST, job->method);
  }
  job->easy_ = e;
  job->state_ = JOB_RUNNING;
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
    job->easy_ = NULL;
    easy_put(h, e);
    job_finish(h, job, -ENOMEM);
    return;
  }
  running_add(h, job);
  atomic_fetch_add(&h->st_requests, 1);
  if (job->attempts > 1)
    atomic_fetch_add(&h->st_retries, 1);
  atomic_fetch_add(&h->st_bytes_out, job->upload_len);
  return;

 setopt_failed:
  log_error("http: curl_easy_setopt: %s", curl_easy_strerror(cr));
  curl_easy_cleanup(e);
  job_finish(h, job, -EIO);
}

/* ---- priority: readers' jobs before background ones --------------------------- */

static void
pend_push(struct http *h, struct http_job *job)
{
  int q = job->background ? 1 : 0;

  job->next_ = NULL;
  job->state_ = JOB_PENDING;
  if (h->pend_tail[q])
    h->pend_tail[q]->next_ = job;
  else
    h->pend_head[q] = job;
  h->pend_tail[q] = job;
}

/* Background jobs leave slots to readers' (1 in 16: 8 of 128, and at least
 * one), so that a reader's request never waits for a prefetch to finish.
 * With a single slot, prefetches may take it: they would never run else. */
static unsigned
background_slots(const struct http *h)
{
  unsigned n = h->cfg.max_in_flight, keep = n / 16;

  if (keep == 0 && n > 1)
    keep = 1;
  return n - keep;
}

/* The pending queue whose first job may have a slot now, or -1. */
static int
pend_ready(const struct http *h)
{
  if (h->pend_head[0] && h->active < h->cfg.max_in_flight)
    return 0;
  if (h->pend_head[1] && h->active < background_slots(h))
    return 1;
  return -1;
}

/* The next pending job that may have a slot now, taken off its queue. */
static struct http_job *
pend_take(struct http *h)
{
  int q = pend_ready(h);
  struct http_job *job;

  if (q < 0)
    return NULL;
  job = h->pend_head[q];
  h->pend_head[q] = job->next_;
  if (h->pend_head[q] == NULL)
    h->pend_tail[q] = NULL;
  job->next_ = NULL;
  return job;
}

/* The background job of key waiting for a rate slot before `before` that
 * goes out first: its heap index, or SIZE_MAX.  A linear look: the heap
 * holds at most max_in_flight jobs. */
static size_t
background_before(const struct http *h, const char *key, uint64_t before)
{
  size_t best = SIZE_MAX;

  for (size_t i = 0; i < h->nheap; i++) {
    const struct http_job *j = h->heap[i];

    if (j->background && j->state_ == JOB_WAIT_RATE && j->wake_ms_ < before &&
        strcmp(j->rate_key, key) == 0 &&
        (best == SIZE_MAX || j->wake_ms_ < h->heap[best]->wake_ms_))
      best = i;
  }
  return best;
}

/* Trade the send times of two jobs in the heap. */
static void
heap_trade(struct http *h, struct http_job *a, struct http_job *b)
{
  uint64_t wa = a->wake_ms_, wb = b->wake_ms_;

  heap_remove(h, a->heap_idx_);
  heap_remove(h, b->heap_idx_);
  a->wake_ms_ = wb;
  b->wake_ms_ = wa;
  (void) heap_push(h, a);               /* cannot fail: two places were just freed */
  (void) heap_push(h, b);
}

/* job, a reader's, waits in the heap for its send time: if a background
 * job of its key goes out before it, trade send times with the first. */
static void
go_before_background(struct http *h, struct http_job *job)
{
  size_t b = background_before(h, job->rate_key, job->wake_ms_);

  if (b != SIZE_MAX)
    heap_trade(h, job, h->heap[b]);
}

/* http_promote's work, on the I/O thread. */
static void
promote(struct http *h, const char *key, uint64_t tag)
{
  struct http_job *j, *prev = NULL;

  for (j = h->pend_head[1]; j; prev = j, j = j->next_)
    if (j->tag == tag && j->rate_key && strcmp(j->rate_key, key) == 0) {
      /* Waiting for a slot: into the readers' queue. */
      if (prev)
        prev->next_ = j->next_;
      else
        h->pend_head[1] = j->next_;
      if (h->pend_tail[1] == j)
        h->pend_tail[1] = prev;
      j->background = false;
      pend_push(h, j);
      return;
    }
  for (size_t i = 0; i < h->nheap; i++) {
    j = h->heap[i];
    if (j->background && j->tag == tag && j->rate_key && strcmp(j->rate_key, key) == 0) {
      j->background = false;
      if (j->state_ == JOB_WAIT_RATE)
        go_before_background(h, j);
      return;
    }
  }
  /* Sent already (or done): nothing to gain. */
}

/* Start (or restart after a backoff) an attempt: pace it first. */
static void
job_attempt(struct http *h, struct http_job *job, uint64_t now)
{
  if (job->rate_key) {
    double at;

    pthread_mutex_lock(&h->rl_lock);
    at = ratelimit_reserve(h->rl, job->rate_key, (double) now);
    pthread_mutex_unlock(&h->rl_lock);
    if (at > (double) now + 0.5) {
      job->state_ = JOB_WAIT_RATE;
      job->wake_ms_ = (uint64_t) (at + 0.5);
      if (heap_push(h, job) == 0) {
        /* Due now after a trade: the loop's timer pass sends it this turn. */
        if (!job->background)
          go_before_background(h, job);
        return;
      }
      /* No memory for the timer: send now rather than lose the job. */
    }
  }
  job_launch(h, job);
}

static void
job_attempt_done(struct http *h, struct http_job *job, CURLcode result)
{
  enum retry_class cls = RETRY_NEVER;
  uint64_t now;
  int64_t delay;
  int rc;

  running_del(h, job);
  curl_easy_getinfo(job->easy_, CURLINFO_RESPONSE_CODE, &job->status);
  curl_multi_remove_handle(h->multi, job->easy_);
  easy_put(h, job->easy_);
  job->easy_ = NULL;
  job->curl_code = (int) result;
  if (result != CURLE_OK)
    job->status = 0;
  atomic_fetch_add(&h->st_bytes_in, job->body.len + job->direct_len);

  rc = job->ops->judge(job, &cls);
  if (rc == 0) {
    job_finish(h, job, 0);
    return;
  }
  now = http_now_ms();
  if (cls == RETRY_THROTTLE) {
    atomic_fetch_add(&h->st_throttles, 1);
    if (job->rate_key) {
      pthread_mutex_lock(&h->rl_lock);
      ratelimit_throttled(h->rl, job->rate_key, (double) now);
      pthread_mutex_unlock(&h->rl_lock);
    }
  }
  delay = retry_delay_ms(&h->policy, cls, job->attempts, now - job->first_ms_,
                         retry_rand(&h->rnd));
  if (delay < 0) {
    job_finish(h, job, rc);
    return;
  }
  log_debug(LOG_SUB_HTTP, "http: attempt %u of %s failed (%d), retrying in %lld ms",
            job->attempts, job->method, rc, (long long) delay);
  job->state_ = JOB_WAIT_RETRY;
  job->wake_ms_ = now + (uint64_t) delay;
  if (heap_push(h, job) < 0)
    job_finish(h, job, rc);
}

/* ---- the I/O thread ---------------------------------------------------------- */

/* owner NULL: every job. */
static bool
owned_by(const struct http_job *job, const char *owner)
{
  return owner == NULL || (job->owner && strcmp(job->owner, owner) == 0);
}

/* Every job of owner (NULL: all) in our queues, wherever it is, ends now. */
static void
cancel_owned(struct http *h, const char *owner)
{
  struct http_job *job, *next, *prev;

  for (job = h->run_head; job; job = next) {
    next = job->next_;
    if (!owned_by(job, owner))
      continue;
    running_del(h, job);
    curl_multi_remove_handle(h->multi, job->easy_);
    easy_put(h, job->easy_);
    job->easy_ = NULL;
    job_finish(h, job, -ECANCELED);
  }
  /* Removing from the heap reorders it: look again from the top each time
   * (at most max_in_flight jobs, once per cancel; the top itself for all). */
  for (;;) {
    size_t i = 0;

    while (i < h->nheap && !owned_by(h->heap[i], owner))
      i++;
    if (i == h->nheap)
      break;
    job = h->heap[i];
    heap_remove(h, i);
    job_finish(h, job, -ECANCELED);
  }
  for (int q = 0; q < 2; q++) {
    prev = NULL;
    for (job = h->pend_head[q]; job; job = next) {
      next = job->next_;
      if (!owned_by(job, owner)) {
        prev = job;
        continue;
      }
      if (prev)
        prev->next_ = next;
      else
        h->pend_head[q] = next;
      if (h->pend_tail[q] == job)
        h->pend_tail[q] = prev;
      h->active++;               /* job_finish gives the slot back */
      job_finish(h, job, -ECANCELED);
    }
  }
}

static void
cancel_all(struct http *h)
{
  struct http_job *job;

  cancel_owned(h, NULL);
  pthread_mutex_lock(&h->lock);
  job = h->in_head;
  h->in_head = h->in_tail = NULL;
  pthread_mutex_unlock(&h->lock);
  while (job) {
    struct http_job *next = job->next_;
    h->active++;
    job_finish(h, job, -ECANCELED);
    job = next;
  }
}

/* curl tells which events a socket waits for; epoll follows. */
static int
socket_cb(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
  struct http *h = arg;
  struct epoll_event ev;

  (void) e;
  if (what == CURL_POLL_REMOVE) {
    /* curl may have closed it already: ENOENT/EBADF are fine. */
    (void) epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
    curl_multi_assign(h->multi, fd, NULL);
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.data.fd = fd;
  if (what & CURL_POLL_IN)
    ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT)
    ev.events |= EPOLLOUT;
  if (sockp == NULL) {
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
        (errno != EEXIST || epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)) {
      log_warn("http: cannot watch a socket: %s", strerror(errno));
      return -1;                 /* curl fails that transfer */
    }
    curl_multi_assign(h->multi, fd, h);       /* marks it watched */
  }
  else if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) {
    log_warn("http: cannot watch a socket: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* curl's single timer: -1 none, 0 now (the loop calls it at once). */
static int
timer_cb(CURLM *m, long timeout_ms, void *arg)
{
  struct http *h = arg;

  (void) m;
  h->curl_deadline = timeout_ms < 0 ? -1 : (int64_t) http_now_ms() + timeout_ms;
  return 0;
}

static void
wake(struct http *h)
{
  uint64_t one = 1;

  /* Fails only when the counter is saturated: a wakeup is pending anyway. */
  if (write(h->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
    log_debug(LOG_SUB_HTTP, "http: wakeup: %s", strerror(errno));
}

static void *
io_thread(void *arg)
{
  struct http *h = arg;
  struct http_job *job, *list;
  int running = 0, n;
  CURLMsg *msg;
  bool stop;
  struct epoll_event evs[64];
  struct promotion promo[HTTP_MAX_PROMOTIONS];
  unsigned npromo, cancel_seq;
  bool cancel;
  char cancel_owner[HTTP_KEY_MAX];

  for (;;) {
    uint64_t now;
    long timeout;

    pthread_mutex_lock(&h->lock);
    list = h->in_head;
    h->in_head = h->in_tail = NULL;
    npromo = h->npromo;
    memcpy(promo, h->promo, npromo * sizeof promo[0]);
    h->npromo = 0;
    cancel = h->cancel_asked != h->cancel_done;
    cancel_seq = h->cancel_asked;
    if (cancel)
      memcpy(cancel_owner, h->cancel_owner, sizeof cancel_owner);
    stop = h->stopping;
    pthread_mutex_unlock(&h->lock);
    while (list) {               /* keep arrival order */
      job = list;
      list = job->next_;
      pend_push(h, job);
    }
    for (unsigned i = 0; i < npromo; i++)
      promote(h, promo[i].key, promo[i].tag);
    if (cancel) {
      /* Jobs submitted before the cancel were in the incoming list: all
       * of them are in our queues now. */
      cancel_owned(h, cancel_owner);
      pthread_mutex_lock(&h->lock);
      h->cancel_done = cancel_seq;
      pthread_cond_broadcast(&h->cancel_cond);
      pthread_mutex_unlock(&h->lock);
    }
    if (stop)
      break;

    now = http_now_ms();
    while ((job = pend_take(h)) != NULL) {
      h->active++;
      atomic_store(&h->st_in_flight, h->active);
      job->first_ms_ = now;
      job_attempt(h, job, now);
    }
    while (h->nheap > 0 && h->heap[0]->wake_ms_ <= now) {
      job = heap_pop(h);
      if (job->state_ == JOB_WAIT_RETRY)
        job_attempt(h, job, now);
      else
        job_launch(h, job);
    }

    /* Sleep until a socket is ready, a timer (ours or curl's), or a wakeup. */
    timeout = 1000;
    now = http_now_ms();
    if (h->nheap > 0) {
      uint64_t w = h->heap[0]->wake_ms_;
      timeout = w <= now ? 0 : (long) (w - now < 1000 ? w - now : 1000);
    }
    if (h->curl_deadline >= 0) {
      long t = h->curl_deadline <= (int64_t) now ? 0 : (long) (h->curl_deadline - (int64_t) now);
      if (t < timeout)
        timeout = t;
    }
    if (pend_ready(h) >= 0)
      timeout = 0;
    n = epoll_wait(h->epfd, evs, (int) (sizeof evs / sizeof evs[0]), (int) timeout);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd, flags = 0;

      if (fd == h->wakefd) {
        uint64_t v;
        if (read(h->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
          log_debug(LOG_SUB_HTTP, "http: reading the wakeup: %s", strerror(errno));
        continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP))
        flags |= CURL_CSELECT_IN;
      if (evs[i].events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
      if (evs[i].events & EPOLLERR)
        flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(h->multi, fd, flags, &running);
    }
    if (h->curl_deadline >= 0 && h->curl_deadline <= (int64_t) http_now_ms()) {
      h->curl_deadline = -1;
      curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    while ((msg = curl_multi_info_read(h->multi, &n)) != NULL) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      job = NULL;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &job);
      if (job)
        job_attempt_done(h, job, msg->data.result);
    }
  }

  cancel_all(h);
  pthread_mutex_lock(&h->lock);
  h->cancel_done = h->cancel_asked;      /* a canceller waiting now has its answer */
  pthread_cond_broadcast(&h->cancel_cond);
  pthread_mutex_unlock(&h->lock);
  return NULL;
}

/* ---- setup and teardown ---------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void
curl_init_once(void)
{
  curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct http *
http_new(const struct http_config *cfg)
{
  struct http *h;
  int r;

  pthread_once(&curl_once, curl_init_once);
  if (curl_init_result != CURLE_OK) {
    errno = EIO;
    return NULL;
  }
  h = calloc(1, sizeof *h);
  if (h == NULL)
    return NULL;
  h->cfg = *cfg;
  h->epfd = h->wakefd = -1;
  h->curl_deadline = -1;
  if (h->cfg.max_in_flight == 0)
    h->cfg.max_in_flight = 128;
  if (h->cfg.connect_timeout_ms == 0)
    h->cfg.connect_timeout_ms = 5000;
  if (h->cfg.stall_timeout_ms == 0)
    h->cfg.stall_timeout_ms = 15000;
  h->cfg.ca_bundle = NULL;
  if (cfg->ca_bundle && (h->cfg.ca_bundle = strdup(cfg->ca_bundle)) == NULL)
    goto fail_nomem;
  retry_policy_init(&h->policy, h->cfg.max_attempts, h->cfg.retry_budget_ms);
  h->rnd = (uint32_t) (http_now_ms() ^ ((uint64_t) getpid() << 16)) | 1u;
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->rl_lock, NULL);
  pthread_cond_init(&h->cancel_cond, NULL);
  h->rl = ratelimit_new(h->cfg.rate_limit);
  h->easy_pool = calloc(h->cfg.max_in_flight, sizeof *h->easy_pool);
  h->multi = curl_multi_init();
  if (h->rl == NULL || h->easy_pool == NULL || h->multi == NULL)
    goto fail_nomem;
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) h->cfg.max_in_flight);
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long) h->cfg.max_in_flight);
  curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_NOTHING);
  h->epfd = epoll_create1(EPOLL_CLOEXEC);
  h->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (h->epfd < 0 || h->wakefd < 0)
    goto fail_errno;
  {
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = h->wakefd };
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wakefd, &ev) != 0)
      goto fail_errno;
  }
  if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
      curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
      curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
      curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK)
    goto fail_nomem;

  r = pthread_create(&h->thread, NULL, io_thread, h);
  if (r != 0) {
    errno = r;
    http_free(h);
    return NULL;
  }
  h->thread_started = true;
  return h;

 fail_nomem:
  http_free(h);
  errno = ENOMEM;
  return NULL;

 fail_errno:
  r = errno;
  http_free(h);
  errno = r;
  return NULL;
}

void
http_free(struct http *h)
{
  if (h == NULL)
    return;
  if (h->thread_started) {
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    pthread_mutex_unlock(&h->lock);
    wake(h);
    pthread_join(h->thread, NULL);
  }
  for (size_t i = 0; i < h->npool; i++)
    curl_easy_cleanup(h->easy_pool[i]);
  if (h->multi)
    curl_multi_cleanup(h->multi);      /* may call socket_cb: before the close */
  if (h->epfd >= 0)
    close(h->epfd);
  if (h->wakefd >= 0)
    close(h->wakefd);
  free(h->easy_pool);
  free(h->heap);
  ratelimit_free(h->rl);
  free((char *) h->cfg.ca_bundle);
  pthread_mutex_destroy(&h->lock);
  pthread_mutex_destroy(&h->rl_lock);
  pthread_cond_destroy(&h->cancel_cond);
  free(h);
}

int
http_submit(struct http *h, struct http_job *job)
{
  job->attempts = 0;
  job->next_ = job->prev_ = NULL;
  job->easy_ = NULL;
  job->state_ = JOB_PENDING;
  buf_init(&job->body, job->body_max);
  pthread_mutex_lock(&h->lock);
  if (h->stopping) {
    pthread_mutex_unlock(&h->lock);
    buf_free(&job->body);
    return -ECANCELED;
  }
  if (h->in_tail)
    h->in_tail->next_ = job;
  else
    h->in_head = job;
  h->in_tail = job;
  pthread_mutex_unlock(&h->lock);
  wake(h);
  return 0;
}

void
http_promote(struct http *h, const char *rate_key, uint64_t tag)
{
  size_t len = strlen(rate_key);

  if (len >= HTTP_KEY_MAX)
    return;
  pthread_mutex_lock(&h->lock);
  if (h->npromo == HTTP_MAX_PROMOTIONS || h->stopping) {
    pthread_mutex_unlock(&h->lock);
    return;
  }
  memcpy(h->promo[h->npromo].key, rate_key, len + 1);
  h->promo[h->npromo].tag = tag;
  /* Promotions already queued have woken the I/O thread: no second write. */
  if (h->npromo++ > 0) {
    pthread_mutex_unlock(&h->lock);
    return;
  }
  pthread_mutex_unlock(&h->lock);
  wake(h);
}

void
http_cancel_owner(struct http *h, const char *owner)
{
  size_t len = strlen(owner);
  unsigned mine;

  if (len >= HTTP_KEY_MAX)
    return;                      /* no job can have it: owners are snapshot IDs */
  pthread_mutex_lock(&h->lock);
  while (h->cancel_asked != h->cancel_done && !h->stopping)
    pthread_cond_wait(&h->cancel_cond, &h->lock);
  if (h->stopping) {             /* every job is being cancelled anyway */
    pthread_mutex_unlock(&h->lock);
    return;
  }
  memcpy(h->cancel_owner, owner, len + 1);
  mine = ++h->cancel_asked;
  pthread_mutex_unlock(&h->lock);
  wake(h);
  pthread_mutex_lock(&h->lock);
  while (h->cancel_done != mine)
    pthread_cond_wait(&h->cancel_cond, &h->lock);
  pthread_mutex_unlock(&h->lock);
}

void
http_get_stats(struct http *h, struct http_stats *out)
{
  out->requests = atomic_load(&h->st_requests);
  out->retries = atomic_load(&h->st_retries);
  out->throttles = atomic_load(&h->st_throttles);
  out->bytes_in = atomic_load(&h->st_bytes_in);
  out->bytes_out = atomic_load(&h->st_bytes_out);
  out->in_flight = atomic_load(&h->st_in_flight);
}

double
http_rate(struct http *h, const char *key)
{
  double r;
  pthread_mutex_lock(&h->rl_lock);
  r = ratelimit_rate(h->rl, key, (double) http_now_ms());
  pthread_mutex_unlock(&h->rl_lock);
  return r;
}
