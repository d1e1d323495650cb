/* image_test.c - the read path end to end over a fake transport.
 *
 * This program defines the ebs_* functions image.c uses, so libebsfs.a's
 * real transport is not linked in: a fake volume of 1 GiB (2048 blocks) whose
 * listed blocks hold a pattern derived from (block, offset), served by
 * worker threads that play the transport's I/O thread.  It checks byte
 * identity at unaligned offsets, holes costing no request, cached re-reads
 * costing none, sequential reads costing one fetch per block, zero-copy
 * segments, concurrent readers, SEEK_DATA/SEEK_HOLE, a permanently failing
 * block giving EIO for its reads only, a rejected token being re-listed, and
 * the first read of block 0 queueing the volume's first 8 MiB.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "block_cache.h"
#include "ebs.h"
#include "image.h"
#include "testing.h"

#define NBLOCKS 2048u
#define BS ((uint64_t) EBS_BLOCK_SIZE)

/* ---- the fake transport ------------------------------------------------------ */

struct job {
  struct job *next;
  uint32_t index;
  char token[64];
  void *buf;
  ebs_done_fn done;
  void *arg;
};

struct ebs_client {
  uint8_t listed[NBLOCKS];
  int generation;               /* tokens of older generations are rejected */
  int64_t failing_block;        /* -1: none */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct job *head, *tail;
  bool stop;
  pthread_t workers[4];
  unsigned gets[NBLOCKS];
  unsigned total_gets, lists, rejected;
  unsigned outstanding, max_outstanding;  /* queued or being served */
  int64_t slow_block;                   /* -1: none; else held until cleared */
  bool paused;                          /* workers take no job */
  unsigned cancelled;                   /* by ebs_cancel_snapshot */
};

static unsigned char
pattern(uint64_t block, size_t i)
{
  return (unsigned char) ((block * 131 + i * 7 + (i >> 9)) & 0xff);
}

static void
fill_block(uint64_t block, unsigned char *buf)
{
  size_t i;
  for (i = 0; i < BS; i++)
    buf[i] = pattern(block, i);
}

static void
set_error(struct ebs_error *e, int status, const char *code, const char *reason, int errnum)
{
  memset(e, 0, sizeof *e);
  e->http_status = status;
  snprintf(e->code, sizeof e->code, "%s", code);
  snprintf(e->reason, sizeof e->reason, "%s", reason);
  e->errnum = errnum;
  e->attempts = 1;
}

static void *
worker(void *arg)
{
  struct ebs_client *c = arg;

  for (;;) {
    struct job *j;
    struct ebs_error err;
    char want[64];
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    while ((c->head == NULL || c->paused) && !c->stop)
      pthread_cond_wait(&c->cond, &c->lock);
    if (c->head == NULL) {
      pthread_mutex_unlock(&c->lock);
      return NULL;
    }
    j = c->head;
    c->head = j->next;
    if (c->head == NULL)
      c->tail = NULL;
    c->gets[j->index]++;
    c->total_gets++;
    snprintf(want, sizeof want, "Tk%010u%04d", j->index, c->generation);
    if ((int64_t) j->index == c->failing_block) {
      set_error(&err, 500, "InternalServerException", "", EIO);
      rc = -EIO;
    } else if (strcmp(want, j->token) != 0) {
      set_error(&err, 400, "ValidationException", "INVALID_BLOCK_TOKEN", EINVAL);
      c->rejected++;
      rc = -EINVAL;
    }
    while ((int64_t) j->index == c->slow_block)
      pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
    usleep(2000);
    if (rc == 0)
      fill_block(j->index, j->buf);
    pthread_mutex_lock(&c->lock);
    c->outstanding--;                   /* before done: the image counts until done */
    pthread_mutex_unlock(&c->lock);
    j->done(j->arg, rc, rc ? &err : NULL);
    free(j);
  }
}

static struct ebs_client *
fake_client_new(void)
{
  struct ebs_client *c = calloc(1, sizeof *c);
  int i;

  c->failing_block = -1;
  c->slow_block = -1;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
  for (i = 0; i < 4; i++)
    pthread_create(&c->workers[i], NULL, worker, c);
  return c;
}

static void
fake_client_free(struct ebs_client *c)
{
  int i;

  pthread_mutex_lock(&c->lock);
  c->stop = true;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
  for (i = 0; i < 4; i++)
    pthread_join(c->workers[i], NULL);
  free(c);
}

struct page_store {
  struct ebs_block_ref refs[10000];
  char tokens[10000][20];
  char next[32];
};

int
ebs_list_snapshot_blocks(struct ebs_client *c, const char *snapshot_id,
                         const char *page_token, int64_t starting_block,
                         int max_results, struct ebs_block_page *out,
                         struct ebs_error *err)
{
  struct page_store *ps;
  uint64_t b;
  size_t n = 0;

  memset(out, 0, sizeof *out);
  if (strcmp(snapshot_id, "snap-0123456789abcdef0") != 0) {
    set_error(err, 404, "ResourceNotFoundException", "SNAPSHOT_NOT_FOUND", ENOENT);
    return -ENOENT;
  }
  CHECK(max_results >= 100 && max_results <= 10000);
  ps = calloc(1, sizeof *ps);
  pthread_mutex_lock(&c->lock);
  c->lists++;
  if (page_token)
    starting_block = strtoll(page_token, NULL, 10);
  for (b = starting_block < 0 ? 0 : (uint64_t) starting_block;
       b < NBLOCKS && n < (size_t) max_results; b++) {
    if (!c->listed[b])
      continue;
    snprintf(ps->tokens[n], sizeof ps->tokens[n], "Tk%010u%04d", (unsigned) b, c->generation);
    ps->refs[n].index = (uint32_t) b;
    ps->refs[n].token = ps->tokens[n];
    n++;
  }
  pthread_mutex_unlock(&c->lock);
  while (b < NBLOCKS && !c->listed[b])
    b++;
  if (b < NBLOCKS) {
    snprintf(ps->next, sizeof ps->next, "%u", (unsigned) b);
    out->next_token = ps->next;
  }
  out->blocks = ps->refs;
  out->nblocks = n;
  out->volume_size_gib = 1;
  out->block_size = EBS_BLOCK_SIZE;
  out->storage_ = ps;
  return 0;
}

void
ebs_block_page_free(struct ebs_block_page *p)
{
  free(p->storage_);
  p->storage_ = NULL;
}

void
ebs_promote_block(struct ebs_client *c, const char *snapshot_id, uint32_t index)
{
  (void) c; (void) snapshot_id; (void) index;
}

/* Like the transport: what no worker has taken yet ends with -ECANCELED
 * before this returns; what a worker serves ends as it ends. */
void
ebs_cancel_snapshot(struct ebs_client *c, const char *snapshot_id)
{
  struct job *list, *j;

  (void) snapshot_id;
  pthread_mutex_lock(&c->lock);
  list = c->head;
  c->head = c->tail = NULL;
  for (j = list; j; j = j->next) {
    c->outstanding--;
    c->cancelled++;
  }
  pthread_mutex_unlock(&c->lock);
  while ((j = list) != NULL) {
    list = j->next;
    j->done(j->arg, -ECANCELED, NULL);
    free(j);
  }
}

int
ebs_get_snapshot_block_async(struct ebs_client *c, const char *snapshot_id,
                             uint32_t index, const char *block_token, void *buf,
                             bool background, ebs_done_fn done, void *arg)
{
  (void) background;
  struct job *j = calloc(1, sizeof *j);

  (void) snapshot_id;
  if (j == NULL)
    return -ENOMEM;
  j->index = index;
  snprintf(j->token, sizeof j->token, "%s", block_token);
  j->buf = buf;
  j->done = done;
  j->arg = arg;
  pthread_mutex_lock(&c->lock);
  if (++c->outstanding > c->max_outstanding)
    c->max_outstanding = c->outstanding;
  if (c->tail) c->tail->next = j;
  else c->head = j;
  c->tail = j;
  pthread_cond_signal(&c->cond);
  pthread_mutex_unlock(&c->lock);
  return 0;
}

bool
ebs_error_is(const struct ebs_error *e, const char *code, const char *reason)
{
  return strcmp(e->code, code) == 0 && (reason == NULL || strcmp(e->reason, reason) == 0);
}

const char *
ebs_error_string(const struct ebs_error *e, char *buf, size_t len)
{
  snprintf(buf, len, "%s (%s) [HTTP %d]", e->code, e->reason, e->http_status);
  return buf;
}

bool
ebs_valid_snapshot_id(const char *s)
{
  size_t i;

  if (strncmp(s, "snap-", 5) != 0 || strlen(s) > EBS_SNAPSHOT_ID_MAX || s[5] == '\0')
    return false;
  for (i = 5; s[i]; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

/* ---- helpers ------------------------------------------------------------------ */

static const char snap[] = "snap-0123456789abcdef0";

/* A counter of the fake client, read under its lock (transport threads
 * and grain 0's listing thread bump them). */
static unsigned
counter(struct ebs_client *c, const unsigned *field)
{
  unsigned n;
  pthread_mutex_lock(&c->lock);
  n = *field;
  pthread_mutex_unlock(&c->lock);
  return n;
}

static unsigned
lists(struct ebs_client *c)
{
  return counter(c, &c->lists);
}

static unsigned
gets(struct ebs_client *c)
{
  return counter(c, &c->total_gets);
}

/* Read [off, off+len) and compare with the fake volume; returns the rc. */
static ssize_t
read_check(struct image_reader *r, struct ebs_client *c, uint64_t off, size_t len,
           int *mismatches)
{
  struct image_read rd;
  ssize_t n = image_read(r, off, len, &rd);
  size_t s, k;
  uint64_t pos = off;

  if (n < 0)
    return n;
  for (s = 0; s < rd.nseg; s++) {
    const unsigned char *m = rd.seg[s].mem;
    for (k = 0; k < rd.seg[s].len; k++, pos++) {
      uint64_t b = pos / BS;
      unsigned char want = c->listed[b] ? pattern(b, pos % BS) : 0;
      if (m[k] != want) {
        (*mismatches)++;
        break;
      }
    }
  }
  if (pos - off != (uint64_t) n)
    (*mismatches)++;
  image_read_release(&rd);
  return n;
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_open_errors(struct ebs_client *c, struct block_cache *cache)
{
  struct image_options o = { .client = c, .cache = cache };
  struct image *img;
  struct ebs_error err;

  CHECK_INTEQ(image_open("vol-123", &o, &img, &err), -EINVAL);
  CHECK(img == NULL);
  CHECK_INTEQ(image_open("snap-0000000000000000f", &o, &img, &err), -ENOENT);
  CHECK_INTEQ(err.errnum, ENOENT);
}

/* Until every request of img is done (prefetches are counted when a
 * worker takes them). */
static void
wait_idle(struct image *img)
{
  struct image_stats st;

  for (;;) {
    image_get_stats(img, &st);
    if (st.inflight == 0)
      return;
    usleep(1000);
  }
}

static void
test_reads(struct ebs_client *c, struct block_cache *cache)
{
  struct image_options o = { .client = c, .cache = cache, .readahead_max_blocks = 8 };
  struct image *img;
  struct image_reader *r;
  struct image_stats st;
  struct image_read rd, rd2;
  struct ebs_error err;
  int bad = 0;
  unsigned g0, listed_in_range, b;
  uint64_t off;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL)
    return;
  CHECK_INTEQ(image_size(img), 1ull << 30);
  CHECK_STREQ(image_snapshot_id(img), snap);
  CHECK(!image_writable(img));
  /* The open's short probe, and grain 0's page listed beside it (which may
   * still be on its way): nothing else, now or later, as every read below
   * is in grain 0. */
  CHECK(lists(c) >= 1 && lists(c) <= 2);
  r = image_reader_new(img);

  /* Holes cost nothing (sub-block reads here: a read of whole blocks
   * would also start a tentative stream, below). */
  g0 = gets(c);
  CHECK_INTEQ(read_check(r, c, 3 * BS + 17, BS - 17, &bad), BS - 17);
  CHECK_INTEQ(read_check(r, c, 6 * BS + 4096, 8192, &bad), 8192);
  CHECK_INTEQ(gets(c), g0);

  /* Unaligned reads of listed data, across block boundaries.  The second
   * covers whole blocks, which starts a tentative stream: 2 blocks ahead. */
  CHECK_INTEQ(read_check(r, c, 10 * BS - 100, 300, &bad), 300);
  CHECK_INTEQ(read_check(r, c, 12 * BS + 4095, 3 * BS + 1, &bad), 3 * BS + 1);
  wait_idle(img);                       /* 17 is a prefetch: maybe not taken yet */
  CHECK_INTEQ(gets(c) - g0, 7);          /* blocks 9, 10, 12-15, then 17 (16: hole) */
  CHECK_INTEQ(bad, 0);

  /* Re-reading cached blocks costs nothing, and hands out the same memory. */
  g0 = gets(c);
  CHECK_INTEQ(image_read(r, 12 * BS, 4096, &rd), 4096);
  CHECK_INTEQ(image_read(r, 12 * BS + 8192, 4096, &rd2), 4096);
  CHECK_INTEQ(rd.nseg, 1);
  CHECK((const char *) rd2.seg[0].mem == (const char *) rd.seg[0].mem + 8192);
  image_read_release(&rd);
  image_read_release(&rd2);
  CHECK_INTEQ(gets(c), g0);

  /* EOF and clipping. */
  CHECK_INTEQ(image_read(r, 1ull << 30, 4096, &rd), 0);
  CHECK_INTEQ(read_check(r, c, (1ull << 30) - 1000, 4096, &bad), 1000);
  /* A read spanning more than IMAGE_READ_MAX_SEGS blocks is shortened. */
  CHECK_INTEQ(image_read(r, 100 * BS + 1, 20 * BS, &rd), IMAGE_READ_MAX_SEGS * BS - 1);
  CHECK_INTEQ(rd.nseg, IMAGE_READ_MAX_SEGS);
  image_read_release(&rd);

  /* A sequential stream costs one fetch per listed block, no more. */
  image_reader_free(r);
  r = image_reader_new(img);
  g0 = gets(c);
  listed_in_range = 0;
  for (b = 400; b < 600; b++)
    listed_in_range += c->listed[b];
  for (off = 400 * BS; off < 600 * BS; off += 128 * 1024)
    CHECK_INTEQ(read_check(r, c, off, 128 * 1024, &bad), 128 * 1024);
  image_get_stats(img, &st);
  CHECK(st.prefetches > 0);
  /* Prefetching may run up to the window past the end of the stream. */
  CHECK(gets(c) - g0 >= listed_in_range);
  CHECK(gets(c) - g0 <= listed_in_range + 8);
  CHECK_INTEQ(bad, 0);

  /* SEEK_DATA / SEEK_HOLE. */
  CHECK_INTEQ(image_seek(img, 0, SEEK_DATA), 9 * BS);
  CHECK_INTEQ(image_seek(img, 11 * BS, SEEK_DATA), 12 * BS);
  CHECK_INTEQ(image_seek(img, 11 * BS + 5, SEEK_HOLE), 11 * BS + 5);
  CHECK_INTEQ(image_seek(img, 12 * BS + 5, SEEK_HOLE), 16 * BS);
  CHECK_INTEQ(image_seek(img, 1500 * BS + 3, SEEK_DATA), 2047 * BS);
  CHECK_INTEQ(image_seek(img, 2047 * BS + 3, SEEK_HOLE), 1ull << 30);
  CHECK_INTEQ(image_seek(img, 1ull << 30, SEEK_DATA), -ENXIO);
  CHECK_INTEQ(image_seek(img, 5, 42), -EINVAL);

  CHECK_INTEQ(image_write(img, "x", 1, 0), -EROFS);
  CHECK_INTEQ(image_fsync(img, false), -EROFS);
  image_reader_free(r);
  image_close(img);
  CHECK_INTEQ(lists(c), 2);
}

struct rand_reader {
  struct image *img;
  struct ebs_client *c;
  unsigned seed;
  int bad, errors;
};

static void *
random_reads(void *arg)
{
  struct rand_reader *rr = arg;
  struct image_reader *r = image_reader_new(rr->img);
  int i;

  for (i = 0; i < 100; i++) {
    uint64_t off = ((uint64_t) rand_r(&rr->seed) * 4099) % (1ull << 30);
    size_t len = 1 + (size_t) rand_r(&rr->seed) % (3 * BS / 2);
    if (read_check(r, rr->c, off, len, &rr->bad) < 0)
      rr->errors++;
  }
  image_reader_free(r);
  return NULL;
}

static void
test_concurrent(struct ebs_client *c, struct block_cache *cache)
{
  struct image_options o = { .client = c, .cache = cache };
  struct image *img;
  struct ebs_error err;
  struct rand_reader rr[6];
  pthread_t t[6];
  int i;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL)
    return;
  for (i = 0; i < 6; i++) {
    rr[i] = (struct rand_reader) { img, c, (unsigned) i * 7919u + 1, 0, 0 };
    pthread_create(&t[i], NULL, random_reads, &rr[i]);
  }
  for (i = 0; i < 6; i++) {
    pthread_join(t[i], NULL);
    CHECK_INTEQ(rr[i].bad, 0);
    CHECK_INTEQ(rr[i].errors, 0);
  }
  image_close(img);
}

static void
test_faults(struct ebs_client *c, struct block_cache *cache)
{
  struct image_options o = { .client = c, .cache = cache };
  struct image *img;
  struct image_reader *r;
  struct ebs_error err;
  int bad = 0;
  unsigned g0;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL)
    return;
  r = image_reader_new(img);
  /* A block that always fails: its reads get EIO, every time (not cached),
   * and its neighbours still read fine. */
  c->failing_block = 1001;
  CHECK_INTEQ(read_check(r, c, 1001 * BS + 5, 100, &bad), -EIO);
  g0 = gets(c);
  CHECK_INTEQ(read_check(r, c, 1000 * BS, 2 * BS, &bad), -EIO);
  CHECK(gets(c) > g0);                  /* tried again, not a cached failure */
  CHECK_INTEQ(read_check(r, c, 1002 * BS, BS, &bad), BS);
  c->failing_block = -1;
  CHECK_INTEQ(read_check(r, c, 1001 * BS, BS, &bad), BS);

  /* Tokens change under us: the rejected token is re-listed, the read works. */
  pthread_mutex_lock(&c->lock);
  c->generation++;
  pthread_mutex_unlock(&c->lock);
  CHECK_INTEQ(read_check(r, c, 1201 * BS + 7, 1000, &bad), 1000);
  CHECK(c->rejected >= 1);
  CHECK_INTEQ(bad, 0);
  image_reader_free(r);
  image_close(img);
}

static void
set_paused(struct ebs_client *c, bool paused)
{
  pthread_mutex_lock(&c->lock);
  c->paused = paused;
  c->max_outstanding = c->outstanding;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

/* With the transport paused, read blocks 16-17 (cached beforehand) as a
 * stream: the window's prefetches are all queued at once, never more than
 * max_requests of them.  Returns how many were outstanding at most. */
static unsigned
queued_by_stream(struct ebs_client *c, struct block_cache *cache, unsigned max_requests)
{
  struct image_options o = { .client = c, .cache = cache, .max_requests = max_requests };
  struct image *img;
  struct image_reader *r;
  struct ebs_error err;
  uint64_t off;
  unsigned most;
  int bad = 0;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL)
    return 0;
  /* Blocks 16-23 cached first, read backwards (no readahead): the stream
   * below reads them without waiting, and its window grows with what it
   * has read. */
  r = image_reader_new(img);
  for (off = 22 * BS; off >= 16 * BS; off -= 2 * BS)
    CHECK_INTEQ(read_check(r, c, off, 2 * BS, &bad), 2 * BS);
  image_reader_free(r);
  r = image_reader_new(img);
  set_paused(c, true);
  for (off = 16 * BS; off < 24 * BS; off += 128 * 1024)
    CHECK_INTEQ(read_check(r, c, off, 128 * 1024, &bad), 128 * 1024);
  pthread_mutex_lock(&c->lock);
  most = c->max_outstanding;
  pthread_mutex_unlock(&c->lock);
  set_paused(c, false);
  CHECK_INTEQ(bad, 0);
  image_reader_free(r);
  image_close(img);                     /* cancels what is still queued */
  return most;
}

/* Readahead queues its window in parallel, but never more than max_requests
 * of its own requests. */
static void
test_in_flight(struct ebs_client *c, struct block_cache *cache)
{
  unsigned n;

  n = queued_by_stream(c, cache, 4);
  CHECK_INTEQ(n, 4);
  n = queued_by_stream(c, cache, 0);    /* default 128: the window decides */
  if (n <= 8)
    fprintf(stderr, "only %u prefetches queued\n", n);
  CHECK(n > 8);
}

/* Blocks of the window that could not be queued (max_requests in flight)
 * are offered again by the next read, not left for the reader to fetch
 * one round trip at a time when it gets there. */
static void
test_window_requeued(struct ebs_client *c)
{
  struct block_cache *cache = block_cache_new(256 * BS);
  struct image_options o = { .client = c, .cache = cache, .max_requests = 2,
                             .readahead_max_blocks = 16 };
  struct image *img;
  struct image_reader *r;
  struct ebs_error err;
  unsigned before[NBLOCKS], b, seen;
  uint64_t first_skipped = 0, second_skipped = 0;
  int bad = 0;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL) {
    block_cache_free(cache);
    return;
  }
  /* Cache blocks 1100-1131 with 4 KiB reads, backwards: no readahead. */
  r = image_reader_new(img);
  for (b = 1131; b >= 1100; b--)
    CHECK_INTEQ(read_check(r, c, (uint64_t) b * BS, 4096, &bad), 4096);
  image_reader_free(r);
  wait_idle(img);
  pthread_mutex_lock(&c->lock);
  memcpy(before, c->gets, sizeof before);
  pthread_mutex_unlock(&c->lock);

  /* A stream over the cached blocks, transport paused: its window (16
   * blocks) reaches past 1131 and queues only 2 of the blocks there. */
  r = image_reader_new(img);
  set_paused(c, true);
  for (b = 1100; b < 1124; b++)
    CHECK_INTEQ(read_check(r, c, (uint64_t) b * BS, BS, &bad), (ssize_t) BS);
  set_paused(c, false);
  wait_idle(img);
  /* The third and fourth listed blocks past 1131 were handed out, not queued. */
  for (b = 1132, seen = 0; b < NBLOCKS && seen < 4; b++) {
    if (!c->listed[b])
      continue;
    if (++seen == 3) first_skipped = b;
    if (seen == 4) second_skipped = b;
  }
  pthread_mutex_lock(&c->lock);
  CHECK_INTEQ(c->gets[first_skipped] - before[first_skipped], 0);
  pthread_mutex_unlock(&c->lock);

  /* The next read of the stream queues them. */
  set_paused(c, true);
  CHECK_INTEQ(read_check(r, c, 1124ull * BS, BS, &bad), (ssize_t) BS);
  set_paused(c, false);
  wait_idle(img);
  pthread_mutex_lock(&c->lock);
  CHECK_INTEQ(c->gets[first_skipped] - before[first_skipped], 1);
  CHECK_INTEQ(c->gets[second_skipped] - before[second_skipped], 1);
  pthread_mutex_unlock(&c->lock);
  CHECK_INTEQ(bad, 0);
  image_reader_free(r);
  image_close(img);
  block_cache_free(cache);
}

struct slow_reader {
  struct image *img;
  struct ebs_client *c;
  int bad;
  ssize_t n;
  int finished;
  pthread_mutex_t *lock;
};

static void *
slow_read(void *arg)
{
  struct slow_reader *s = arg;
  struct image_reader *r = image_reader_new(s->img);

  s->n = read_check(r, s->c, 501 * BS + 10, 1000, &s->bad);
  pthread_mutex_lock(s->lock);
  s->finished = 1;
  pthread_mutex_unlock(s->lock);
  image_reader_free(r);
  return NULL;
}

/* A reader is never held up by another reader's slow block. */
static void
test_no_head_of_line(struct ebs_client *c, struct block_cache *cache)
{
  struct image_options o = { .client = c, .cache = cache };
  struct slow_reader s = { 0 };
  struct image *img;
  struct image_reader *r;
  struct ebs_error err;
  pthread_t t;
  int bad = 0, slow_done;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL)
    return;
  pthread_mutex_lock(&c->lock);
  c->slow_block = 501;
  pthread_mutex_unlock(&c->lock);
  s.img = img;
  s.c = c;
  s.lock = &c->lock;
  /* The slow reader asks for block 501, which is held back... */
  pthread_create(&t, NULL, slow_read, &s);
  for (;;) {
    unsigned asked;
    pthread_mutex_lock(&c->lock);
    asked = c->gets[501];
    pthread_mutex_unlock(&c->lock);
    if (asked)
      break;
    usleep(1000);
  }
  /* ...meanwhile blocks 601 and 602 are read (this would hang if readers
   * waited on each other), and the slow reader is still waiting. */
  r = image_reader_new(img);
  CHECK_INTEQ(read_check(r, c, 601 * BS + 5, BS, &bad), BS);
  pthread_mutex_lock(&c->lock);
  slow_done = s.finished;
  c->slow_block = -1;                   /* let block 501 through */
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
  CHECK_INTEQ(slow_done, 0);
  pthread_join(t, NULL);
  CHECK_INTEQ(s.n, 1000);
  CHECK_INTEQ(s.bad + bad, 0);
  image_reader_free(r);
  image_close(img);
}

/* GetSnapshotBlock counts of blocks 0-19 so far. */
static void
gets_of_head(struct ebs_client *c, unsigned before[20])
{
  unsigned b;

  pthread_mutex_lock(&c->lock);
  for (b = 0; b < 20; b++)
    before[b] = c->gets[b];
  pthread_mutex_unlock(&c->lock);
}

/* The volume's first 8 MiB, where filesystems keep their metadata, is
 * queued once per image: by main() at mount (image_prefetch_head, asked
 * twice here: nothing is fetched twice), or else by the first read of
 * block 0 (a superblock probe), where readahead alone would fetch 2 blocks. */
static void
test_head_prefetch(struct ebs_client *c)
{
  struct block_cache *cache = block_cache_new(64 * BS);
  struct image_options o = { .client = c, .cache = cache };
  struct ebs_error err;
  unsigned before[20], b;
  int bad = 0, by_read;

  for (by_read = 0; by_read < 2; by_read++) {
    struct image *img;

    gets_of_head(c, before);
    CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
    if (img == NULL)
      break;
    if (by_read) {
      struct image_reader *r = image_reader_new(img);

      CHECK_INTEQ(read_check(r, c, 1024, 4096, &bad), 4096);
      image_reader_free(r);
    } else {
      image_prefetch_head(img);
      image_prefetch_head(img);
    }
    wait_idle(img);                     /* every head prefetch served */
    image_close(img);
    pthread_mutex_lock(&c->lock);
    for (b = 0; b < 20; b++)            /* listed in 1-15: 9, 10, 12-15 */
      CHECK_INTEQ(c->gets[b] - before[b], b < 16 ? c->listed[b] : 0);
    pthread_mutex_unlock(&c->lock);
  }
  CHECK_INTEQ(bad, 0);
  block_cache_free(cache);
}

/* image_prefetch_range queues exactly the listed blocks under a byte range;
 * image_pread copies through the same cache, zeros for holes. */
static void
test_range_and_pread(struct ebs_client *c)
{
  struct block_cache *cache = block_cache_new(64 * BS);
  struct image_options o = { .client = c, .cache = cache };
  struct ebs_error err;
  struct image *img;
  unsigned before[20], b;
  unsigned char *buf = malloc(4 * BS);
  uint64_t pos;
  int bad = 0;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL || buf == NULL) {
    free(buf);
    block_cache_free(cache);
    return;
  }
  gets_of_head(c, before);
  /* [10.5, 13.0) blocks: 10 and 12 (11 is a hole); 13 not touched. */
  image_prefetch_range(img, 10 * BS + BS / 2, 2 * BS + BS / 2);
  image_prefetch_range(img, 10 * BS, 1);          /* already queued: nothing */
  image_prefetch_range(img, 1ull << 30, BS);      /* past the end: nothing */
  /* 9.75 to 12.25 blocks: 9 is fetched here, 10 and 12 were queued above. */
  CHECK_INTEQ(image_pread(img, buf, 2 * BS + BS / 2, 9 * BS + 3 * BS / 4), 0);
  for (pos = 0; pos < 2 * BS + BS / 2; pos++) {
    uint64_t at = 9 * BS + 3 * BS / 4 + pos, blk = at / BS;
    unsigned char want = c->listed[blk] ? pattern(blk, at % BS) : 0;

    if (buf[pos] != want)
      bad++;
  }
  CHECK_INTEQ(bad, 0);
  CHECK_INTEQ(image_pread(img, buf, 2, (1ull << 30) - 1), -EINVAL);
  CHECK_INTEQ(image_pread(img, buf, 1, 1ull << 30), -EINVAL);
  image_close(img);
  pthread_mutex_lock(&c->lock);
  for (b = 0; b < 20; b++)
    CHECK_INTEQ(c->gets[b] - before[b], b >= 9 && b <= 12 ? c->listed[b] : 0);
  pthread_mutex_unlock(&c->lock);
  free(buf);
  block_cache_free(cache);
}

/* Resumes the paused transport after 10 s, unless told to stop first. */
struct unpauser {
  struct ebs_client *c;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool stop;
};

static void *
unpause_later(void *arg)
{
  struct unpauser *u = arg;
  struct timespec until;

  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&u->lock);
  while (!u->stop && pthread_cond_timedwait(&u->cond, &u->lock, &until) != ETIMEDOUT)
    ;
  pthread_mutex_unlock(&u->lock);
  set_paused(u->c, false);
  return NULL;
}

/* Closing an image cancels the prefetches nobody will read.  With the
 * transport paused, the head's 6 listed blocks are queued; image_close
 * returns with all 6 cancelled and none fetched.  A close that waited for
 * them would wait until the transport resumed (after 10 s, below), and
 * the counts would show 6 GETs. */
static void
test_close_cancels(struct ebs_client *c)
{
  struct block_cache *cache = block_cache_new(64 * BS);
  struct image_options o = { .client = c, .cache = cache };
  struct unpauser u = { .c = c, .stop = false };
  struct ebs_error err;
  struct image *img;
  unsigned before[20], b, cancelled;
  pthread_t t;

  CHECK_INTEQ(image_open(snap, &o, &img, &err), 0);
  if (img == NULL) {
    block_cache_free(cache);
    return;
  }
  gets_of_head(c, before);
  pthread_mutex_lock(&c->lock);
  cancelled = c->cancelled;
  pthread_mutex_unlock(&c->lock);
  set_paused(c, true);
  image_prefetch_head(img);
  pthread_mutex_init(&u.lock, NULL);
  pthread_cond_init(&u.cond, NULL);
  CHECK_INTEQ(pthread_create(&t, NULL, unpause_later, &u), 0);
  image_close(img);
  pthread_mutex_lock(&u.lock);
  u.stop = true;
  pthread_cond_signal(&u.cond);
  pthread_mutex_unlock(&u.lock);
  pthread_join(t, NULL);
  pthread_mutex_lock(&c->lock);
  CHECK_INTEQ(c->cancelled - cancelled, 6);
  for (b = 0; b < 20; b++)
    CHECK_INTEQ(c->gets[b] - before[b], 0);
  pthread_mutex_unlock(&c->lock);
  pthread_cond_destroy(&u.cond);
  pthread_mutex_destroy(&u.lock);
  block_cache_free(cache);
}

int
main(void)
{
  struct ebs_client *c = fake_client_new();
  struct block_cache *cache = block_cache_new(256 * BS);
  unsigned b;

  /* Blocks 9-10 and 12-15 listed, 11 a hole; then 3 of every 4 from 16, with
   * a long hole in the middle and the very last block listed. */
  c->listed[9] = c->listed[10] = 1;
  for (b = 12; b < 16; b++)
    c->listed[b] = 1;
  for (b = 16; b < 1400; b++)
    c->listed[b] = (b % 4) != 0;
  c->listed[NBLOCKS - 1] = 1;

  test_open_errors(c, cache);
  test_reads(c, cache);
  test_concurrent(c, cache);
  test_faults(c, cache);
  test_in_flight(c, cache);
  test_no_head_of_line(c, cache);
  test_head_prefetch(c);
  test_close_cancels(c);
  test_window_requeued(c);
  test_range_and_pread(c);
  block_cache_free(cache);
  fake_client_free(c);
  TEST_EXIT();
}
