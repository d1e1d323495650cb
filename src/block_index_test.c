/* block_index_test.c - lazy loading by grain, pages merged across NextToken,
 * sparse pages covering many grains, SEEK_DATA/SEEK_HOLE answers, token
 * refresh before expiry and after a rejected token, single-flight loads,
 * grain 0 preloaded from the page image_open already listed, or its short
 * first page used as the head while grain 0's page is listed beside it,
 * failed loads, and the memory spent per listed block.
 *
 * The lister here is a fake volume: a bitmap of listed blocks whose tokens
 * encode (generation, index) so a stale token is recognisable. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "block_index.h"
#include "ebs.h"
#include "testing.h"

struct fake {
  uint64_t nblocks;
  uint8_t *listed;              /* one byte per block */
  int page_cap;                 /* the most blocks a page returns */
  int generation;               /* tokens minted now carry this */
  bool raw_tokens;              /* tokens that are not canonical base64 */
  double now, ttl;
  int fail;                     /* > 0: that many calls fail with -EIO */
  int delay_ms;
  pthread_mutex_t lock;
  int calls;
};

struct fake_page {
  struct ebs_block_ref *refs;
  char *tokens;
  char next[32];
};

static const char b64c[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 44 bytes: 16 shared + generation + index + 23 pseudo-random -> 60 chars. */
static void
make_token(const struct fake *f, uint32_t index, int gen, char *out)
{
  uint8_t bin[44];
  uint64_t x = index * 0x9E3779B97F4A7C15ull + (uint64_t) gen;
  size_t i, o = 0;

  memcpy(bin, "ebs-fake-token-v", 16);
  bin[16] = (uint8_t) gen;
  bin[17] = (uint8_t) (index >> 24); bin[18] = (uint8_t) (index >> 16);
  bin[19] = (uint8_t) (index >> 8); bin[20] = (uint8_t) index;
  for (i = 21; i < 44; i++) {
    x ^= x >> 13; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;
    bin[i] = (uint8_t) x;
  }
  for (i = 0; i + 2 < 44; i += 3) {
    uint32_t v = (uint32_t) bin[i] << 16 | (uint32_t) bin[i + 1] << 8 | bin[i + 2];
    out[o++] = b64c[v >> 18]; out[o++] = b64c[(v >> 12) & 63];
    out[o++] = b64c[(v >> 6) & 63]; out[o++] = b64c[v & 63];
  }
  {                                     /* 2 bytes left: one '=' */
    uint32_t v = (uint32_t) bin[42] << 16 | (uint32_t) bin[43] << 8;
    out[o++] = b64c[v >> 18]; out[o++] = b64c[(v >> 12) & 63];
    out[o++] = b64c[(v >> 6) & 63]; out[o++] = '=';
  }
  out[o] = '\0';
  if (f->raw_tokens) {                  /* drop the padding: not canonical */
    out[o - 1] = 'x';
    out[o] = 'y';
    out[o + 1] = '\0';
  }
}

static int
fake_list(void *arg, const char *page_token, int64_t start, int max_results,
          struct ebs_block_page *out, struct ebs_error *err)
{
  struct fake *f = arg;
  struct fake_page *fp;
  uint64_t b;
  size_t n = 0;
  int limit = max_results < f->page_cap ? max_results : f->page_cap;

  if (f->delay_ms)
    usleep((useconds_t) f->delay_ms * 1000);
  pthread_mutex_lock(&f->lock);
  f->calls++;
  if (f->fail > 0) {
    f->fail--;
    pthread_mutex_unlock(&f->lock);
    memset(err, 0, sizeof *err);
    err->http_status = 500;
    err->errnum = EIO;
    snprintf(err->code, sizeof err->code, "InternalServerException");
    return -EIO;
  }
  pthread_mutex_unlock(&f->lock);
  if (page_token)
    start = strtoll(page_token + 5, NULL, 10);
  CHECK(max_results >= 100 && max_results <= 10000);
  fp = calloc(1, sizeof *fp);
  fp->refs = calloc((size_t) limit, sizeof *fp->refs);
  fp->tokens = calloc((size_t) limit, 64);
  memset(out, 0, sizeof *out);
  for (b = (uint64_t) start; b < f->nblocks && n < (size_t) limit; b++) {
    if (!f->listed[b])
      continue;
    fp->refs[n].index = (uint32_t) b;
    make_token(f, (uint32_t) b, f->generation, fp->tokens + n * 64);
    fp->refs[n].token = fp->tokens + n * 64;
    n++;
  }
  /* A NextToken whenever a listed block remains. */
  while (b < f->nblocks && !f->listed[b])
    b++;
  if (b < f->nblocks) {
    snprintf(fp->next, sizeof fp->next, "next:%" PRIu64, b);
    out->next_token = fp->next;
  }
  out->blocks = fp->refs;
  out->nblocks = n;
  out->volume_size_gib = (int64_t) (f->nblocks / 2048);
  out->block_size = EBS_BLOCK_SIZE;
  out->expiry_time = f->ttl > 0 ? f->now + f->ttl : 0;
  out->storage_ = fp;
  return 0;
}

static void
fake_free_page(void *arg, struct ebs_block_page *p)
{
  struct fake_page *fp = p->storage_;

  (void) arg;
  if (fp) {
    free(fp->refs);
    free(fp->tokens);
    free(fp);
  }
  p->storage_ = NULL;
}

static double
fake_now(void *arg)
{
  return ((struct fake *) arg)->now;
}

static struct block_index *
make_index(struct fake *f)
{
  struct block_lister l = { fake_list, fake_free_page, fake_now, f };
  return block_index_new(&l, f->nblocks);
}

static void
fake_init(struct fake *f, uint64_t nblocks)
{
  memset(f, 0, sizeof *f);
  f->nblocks = nblocks;
  f->listed = calloc(nblocks, 1);
  f->page_cap = 10000;
  f->now = 1.7e9;
  pthread_mutex_init(&f->lock, NULL);
}

static void
fake_fini(struct fake *f)
{
  free(f->listed);
  pthread_mutex_destroy(&f->lock);
}

/* Every block answers listed/unlisted as the fake says, with the right token. */
static void
check_all(struct block_index *idx, struct fake *f, uint64_t from, uint64_t to)
{
  char tok[BLOCK_TOKEN_MAX + 1], want[80];
  struct ebs_error err;
  uint64_t b;
  int bad = 0;

  for (b = from; b < to; b++) {
    int r = block_index_lookup(idx, b, tok, sizeof tok, &err);
    if (r != f->listed[b]) { bad++; continue; }
    if (r == 1) {
      make_token(f, (uint32_t) b, f->generation, want);
      if (strcmp(tok, want) != 0) bad++;
    }
  }
  CHECK_INTEQ(bad, 0);
}

static void
test_lazy_dense(void)
{
  struct fake f;
  struct block_index *idx;
  struct block_index_stats st;
  struct ebs_error err;
  uint64_t b;

  fake_init(&f, 100000);
  for (b = 0; b < f.nblocks; b++)
    f.listed[b] = b % 3 != 1;          /* dense: pages end mid-grain */
  idx = make_index(&f);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 0);       /* nothing listed up front */
  CHECK_INTEQ(block_index_lookup(idx, 5, NULL, 0, &err), 1);
  CHECK_INTEQ(block_index_lookup(idx, 7, NULL, 0, &err), 0);
  CHECK_INTEQ(block_index_lookup(idx, 9999, NULL, 0, &err), 1);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 1);
  CHECK_INTEQ(st.grains_loaded, 1);
  CHECK_INTEQ(block_index_lookup(idx, 55556, NULL, 0, &err), 1);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 2);       /* a grain far away: one more page */
  check_all(idx, &f, 0, f.nblocks);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.grains_loaded, 10);
  CHECK_INTEQ(st.list_calls, 10);      /* one page per grain, none twice */
  CHECK_INTEQ(st.listed_blocks, 100000 - 100000 / 3);
  fprintf(stderr, "dense 60-char tokens: %.1f bytes per listed block\n",
          (double) st.memory_bytes / (double) st.listed_blocks);
  CHECK((double) st.memory_bytes / (double) st.listed_blocks < 50.0);
  CHECK_INTEQ(block_index_lookup(idx, f.nblocks + 5, NULL, 0, &err), 0);
  block_index_free(idx);
  fake_fini(&f);
}

/* Short pages (the service may answer fewer than asked): a grain is merged
 * from several pages through NextToken. */
/* The page image_open listed from block 0 becomes grain 0: no list call
 * for it; a short page is continued through its NextToken; a page for an
 * index whose grain 0 is already loaded is only freed. */
static void
test_preload(void)
{
  struct fake f;
  struct block_index *idx;
  struct block_index_stats st;
  struct ebs_block_page first;
  struct ebs_error err;
  uint64_t b;

  fake_init(&f, 30000);
  for (b = 0; b < f.nblocks; b++)
    f.listed[b] = b % 5 != 0;
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &first, &err), 0);
  f.calls = 0;
  CHECK_INTEQ(block_index_preload(idx, &first, &err), 0);
  check_all(idx, &f, 0, 10000);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 0);
  CHECK_INTEQ(f.calls, 0);
  CHECK_INTEQ(st.grains_loaded, 1);
  CHECK_INTEQ(block_index_lookup(idx, 10001, NULL, 0, &err), 1);
  CHECK_INTEQ(f.calls, 1);              /* the next grain is listed lazily */
  /* Grain 0 already loaded: the page is freed, nothing listed. */
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &first, &err), 0);
  f.calls = 0;
  CHECK_INTEQ(block_index_preload(idx, &first, &err), 0);
  CHECK_INTEQ(f.calls, 0);
  block_index_free(idx);

  /* A short first page: the rest of grain 0 follows its NextToken. */
  f.page_cap = 3000;
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &first, &err), 0);
  f.calls = 0;
  CHECK_INTEQ(block_index_preload(idx, &first, &err), 0);
  CHECK_INTEQ(f.calls, 2);              /* 8000 listed blocks, 3000 a page */
  check_all(idx, &f, 0, 10000);
  CHECK_INTEQ(f.calls, 2);
  block_index_free(idx);

  /* Continuing fails: grain 0 is listed again when a read needs it. */
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &first, &err), 0);
  f.fail = 1;
  CHECK_INTEQ(block_index_preload(idx, &first, &err), -EIO);
  check_all(idx, &f, 0, 10000);
  block_index_free(idx);
  fake_fini(&f);
}

static void
test_page_merge(void)
{
  struct fake f;
  struct block_index *idx;
  struct block_index_stats st;
  uint64_t b;

  fake_init(&f, 30000);
  for (b = 0; b < f.nblocks; b++)
    f.listed[b] = 1;
  f.page_cap = 3000;
  idx = make_index(&f);
  check_all(idx, &f, 10000, 20000);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 4);       /* 10000 blocks, 3000 a page */
  CHECK_INTEQ(st.grains_loaded, 1);
  check_all(idx, &f, 0, f.nblocks);
  block_index_free(idx);

  /* Tokens that are not canonical base64 are kept as text, still exact. */
  f.raw_tokens = true;
  f.page_cap = 10000;
  idx = make_index(&f);
  check_all(idx, &f, 0, f.nblocks);
  block_index_free(idx);
  fake_fini(&f);
}

static void
test_sparse_and_seek(void)
{
  struct fake f;
  struct block_index *idx;
  struct block_index_stats st;
  struct ebs_error err;

  fake_init(&f, 1000000);               /* 100 grains */
  f.listed[5] = f.listed[6] = f.listed[7] = 1;
  f.listed[9999] = f.listed[10000] = 1; /* a run across a grain boundary */
  f.listed[500000] = 1;
  f.listed[999999] = 1;                 /* the last block */
  idx = make_index(&f);

  CHECK_INTEQ(block_index_next_data(idx, 0, &err), 5);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 1);       /* one sparse page covers it all */
  CHECK_INTEQ(st.grains_loaded, 100);
  CHECK_INTEQ(block_index_next_data(idx, 5, &err), 5);
  CHECK_INTEQ(block_index_next_hole(idx, 5, &err), 8);
  CHECK_INTEQ(block_index_next_hole(idx, 0, &err), 0);
  CHECK_INTEQ(block_index_next_data(idx, 8, &err), 9999);
  CHECK_INTEQ(block_index_next_hole(idx, 9999, &err), 10001);
  CHECK_INTEQ(block_index_next_data(idx, 10001, &err), 500000);
  CHECK_INTEQ(block_index_next_hole(idx, 500000, &err), 500001);
  CHECK_INTEQ(block_index_next_data(idx, 500001, &err), 999999);
  CHECK_INTEQ(block_index_next_hole(idx, 999999, &err), 1000000);  /* EOF */
  CHECK_INTEQ(block_index_next_data(idx, 1000000, &err), 1000000);
  CHECK_INTEQ(block_index_lookup(idx, 500000, NULL, 0, &err), 1);
  CHECK_INTEQ(block_index_lookup(idx, 500001, NULL, 0, &err), 0);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 1);
  block_index_free(idx);

  /* Seeking into the middle loads only from there. */
  idx = make_index(&f);
  CHECK_INTEQ(block_index_next_data(idx, 600000, &err), 999999);
  CHECK_INTEQ(block_index_lookup(idx, 500000, NULL, 0, &err), 1);
  block_index_free(idx);

  /* A full grain: the hole is at the next grain's first unlisted block. */
  memset(f.listed, 1, 20005);
  idx = make_index(&f);
  CHECK_INTEQ(block_index_next_hole(idx, 3, &err), 20005);
  block_index_free(idx);
  fake_fini(&f);
}

static void
test_token_refresh(void)
{
  struct fake f;
  struct block_index *idx;
  struct block_index_stats st;
  struct ebs_error err;
  char tok[BLOCK_TOKEN_MAX + 1], want[80];
  uint64_t b;

  fake_init(&f, 50000);
  for (b = 0; b < f.nblocks; b += 2)
    f.listed[b] = 1;
  f.ttl = 7 * 86400;
  idx = make_index(&f);
  CHECK_INTEQ(block_index_lookup(idx, 100, tok, sizeof tok, &err), 1);
  make_token(&f, 100, 0, want);
  CHECK_STREQ(tok, want);

  /* Tokens change; until near expiry the old ones are still used. */
  f.generation = 1;
  f.now += 6 * 86400;
  CHECK_INTEQ(block_index_lookup(idx, 100, tok, sizeof tok, &err), 1);
  CHECK_STREQ(tok, want);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 1);
  /* Within 5 minutes of ExpiryTime: re-listed. */
  f.now += 86400 - 200;
  CHECK_INTEQ(block_index_lookup(idx, 100, tok, sizeof tok, &err), 1);
  make_token(&f, 100, 1, want);
  CHECK_STREQ(tok, want);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 2);
  CHECK_INTEQ(st.refreshes, 1);
  /* Membership questions never re-list. */
  f.now += 86400 * 30;
  CHECK_INTEQ(block_index_lookup(idx, 101, NULL, 0, &err), 0);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 2);

  /* A rejected token: the grain is re-listed on the next token lookup. */
  f.now = 1.7e9 + 10 * 86400;
  f.generation = 2;
  CHECK_INTEQ(block_index_lookup(idx, 30000, tok, sizeof tok, &err), 1);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 3);       /* first look at that grain */
  f.generation = 3;
  block_index_invalidate(idx, 30002);
  CHECK_INTEQ(block_index_lookup(idx, 30004, NULL, 0, &err), 1);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 3);
  CHECK_INTEQ(block_index_lookup(idx, 30004, tok, sizeof tok, &err), 1);
  make_token(&f, 30004, 3, want);
  CHECK_STREQ(tok, want);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.list_calls, 4);
  check_all(idx, &f, 30000, 40000);
  block_index_free(idx);
  fake_fini(&f);
}

struct worker { struct block_index *idx; uint64_t block; int rc; };

static void *
lookup_worker(void *arg)
{
  struct worker *w = arg;
  char tok[BLOCK_TOKEN_MAX + 1];
  struct ebs_error err;

  __atomic_store_n(&w->rc, block_index_lookup(w->idx, w->block, tok, sizeof tok, &err),
                   __ATOMIC_RELEASE);
  return NULL;
}

#define STILL_WAITING 99

/* Start a lookup of block on a thread; after 50 ms it must still be waiting. */
static void
start_waiting_lookup(struct worker *w, pthread_t *t, struct block_index *idx, uint64_t block)
{
  w->idx = idx;
  w->block = block;
  w->rc = STILL_WAITING;
  CHECK_INTEQ(pthread_create(t, NULL, lookup_worker, w), 0);
  usleep(50000);
  CHECK_INTEQ(__atomic_load_n(&w->rc, __ATOMIC_ACQUIRE), STILL_WAITING);
}

/* image_open's short first page as the head: its blocks answer at once
 * while grain 0's page is still coming, grain 0's other blocks wait for
 * that page (and do not list it themselves); a failed page hands its error
 * to them; a rejected head token sends its block to wait for grain 0 too. */
static void
test_preload_head(void)
{
  struct fake f;
  struct block_index *idx, *ref;
  struct block_index_stats st, st_ref;
  struct ebs_block_page first, grain0;
  struct ebs_error err, lerr;
  struct worker w;
  pthread_t t;
  uint64_t b;

  fake_init(&f, 30000);
  for (b = 0; b < f.nblocks; b++)
    f.listed[b] = b % 3 != 0;           /* 100 entries: blocks 1..149 */
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 100, &first, &err), 0);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &grain0, &err), 0);
  f.calls = 0;
  CHECK_INTEQ(block_index_preload_head(idx, &first, &err), 1);
  check_all(idx, &f, 0, 150);
  CHECK_INTEQ(f.calls, 0);
  start_waiting_lookup(&w, &t, idx, 5000);
  check_all(idx, &f, 0, 150);           /* the head answers meanwhile */
  CHECK_INTEQ(f.calls, 0);
  CHECK_INTEQ(block_index_finish_preload(idx, &grain0, 0, NULL, &err), 0);
  pthread_join(t, NULL);
  CHECK_INTEQ(w.rc, 1);
  check_all(idx, &f, 0, 10000);
  CHECK_INTEQ(f.calls, 0);
  /* The head is gone: the index is what preloading grain 0 alone makes. */
  ref = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &grain0, &err), 0);
  CHECK_INTEQ(block_index_preload(ref, &grain0, &err), 0);
  block_index_get_stats(idx, &st);
  block_index_get_stats(ref, &st_ref);
  CHECK_INTEQ(st.memory_bytes, st_ref.memory_bytes);
  CHECK_INTEQ(st.listed_blocks, st_ref.listed_blocks);
  CHECK_INTEQ(st.grains_loaded, 1);
  block_index_free(ref);
  block_index_free(idx);

  /* Grain 0's page failed: its waiter gets the error, the head still
   * answers, the next lookup past the head lists grain 0 itself. */
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 100, &first, &err), 0);
  f.calls = 0;
  CHECK_INTEQ(block_index_preload_head(idx, &first, &err), 1);
  start_waiting_lookup(&w, &t, idx, 7000);
  memset(&lerr, 0, sizeof lerr);
  lerr.errnum = EIO;
  lerr.http_status = 500;
  CHECK_INTEQ(block_index_finish_preload(idx, NULL, -EIO, &lerr, &err), -EIO);
  CHECK_INTEQ(err.http_status, 500);
  pthread_join(t, NULL);
  CHECK_INTEQ(w.rc, -EIO);
  check_all(idx, &f, 0, 150);
  CHECK_INTEQ(f.calls, 0);
  CHECK_INTEQ(block_index_lookup(idx, 7000, NULL, 0, &err), 1);
  CHECK_INTEQ(f.calls, 1);
  check_all(idx, &f, 0, 10000);
  CHECK_INTEQ(f.calls, 1);
  block_index_free(idx);

  /* A head token rejected: that block waits for grain 0's page, whose
   * tokens (a later generation) every block then gets. */
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 100, &first, &err), 0);
  f.generation = 1;
  CHECK_INTEQ(fake_list(&f, NULL, 0, 10000, &grain0, &err), 0);
  f.calls = 0;
  CHECK_INTEQ(block_index_preload_head(idx, &first, &err), 1);
  block_index_invalidate(idx, 4);
  start_waiting_lookup(&w, &t, idx, 4);
  CHECK_INTEQ(block_index_finish_preload(idx, &grain0, 0, NULL, &err), 0);
  pthread_join(t, NULL);
  CHECK_INTEQ(w.rc, 1);
  check_all(idx, &f, 0, 10000);
  CHECK_INTEQ(f.calls, 0);
  /* Finishing twice, or without a head, is refused. */
  CHECK_INTEQ(block_index_finish_preload(idx, NULL, 0, NULL, &err), -EINVAL);
  block_index_free(idx);
  fake_fini(&f);

  /* A page that ends the listing is grain 0 by itself: no head. */
  fake_init(&f, 4096);
  for (b = 0; b < 60; b++)
    f.listed[b * 7] = 1;
  idx = make_index(&f);
  CHECK_INTEQ(fake_list(&f, NULL, 0, 100, &first, &err), 0);
  CHECK(first.next_token == NULL);
  CHECK_INTEQ(block_index_preload_head(idx, &first, &err), 0);
  block_index_get_stats(idx, &st);
  CHECK_INTEQ(st.grains_loaded, 1);
  check_all(idx, &f, 0, f.nblocks);
  CHECK_INTEQ(f.calls, 1);              /* the fake_list above: none by the index */
  block_index_free(idx);
  fake_fini(&f);
}

static void
test_single_flight_and_failure(void)
{
  struct fake f;
  struct block_index *idx;
  struct worker w[8];
  pthread_t t[8];
  struct ebs_error err;
  int i;

  fake_init(&f, 40000);
  memset(f.listed, 1, f.nblocks);
  f.delay_ms = 100;
  idx = make_index(&f);
  for (i = 0; i < 8; i++) {
    w[i].idx = idx;
    w[i].block = 20000 + (uint64_t) i * 1000;
    pthread_create(&t[i], NULL, lookup_worker, &w[i]);
  }
  for (i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
    CHECK_INTEQ(w[i].rc, 1);
  }
  CHECK_INTEQ(f.calls, 1);              /* one listing for all eight */

  /* A failing listing: every waiter gets the error, nothing is marked
   * loaded, the next lookup lists again. */
  f.fail = 1;
  for (i = 0; i < 4; i++) {
    w[i].block = 100 + (uint64_t) i;
    pthread_create(&t[i], NULL, lookup_worker, &w[i]);
  }
  for (i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  {
    int errors = 0, ok = 0;
    for (i = 0; i < 4; i++) {
      if (w[i].rc == -EIO) errors++;
      if (w[i].rc == 1) ok++;
    }
    /* The waiters of the failed call fail with it; a thread that came
     * after it finished may have listed again successfully. */
    CHECK(errors >= 1);
    CHECK_INTEQ(errors + ok, 4);
  }
  f.fail = 1;
  f.delay_ms = 0;
  CHECK_INTEQ(block_index_lookup(idx, 35000, NULL, 0, &err), -EIO);
  CHECK_INTEQ(err.errnum, EIO);
  CHECK_INTEQ(block_index_lookup(idx, 35000, NULL, 0, &err), 1);
  block_index_free(idx);
  fake_fini(&f);
}

int
main(void)
{
  test_lazy_dense();
  test_page_merge();
  test_preload();
  test_sparse_and_seek();
  test_token_refresh();
  test_single_flight_and_failure();
  test_preload_head();
  TEST_EXIT();
}
