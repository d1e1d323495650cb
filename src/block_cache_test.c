/* block_cache_test.c - LRU by byte budget, references pin entries, single
 * flight (N readers, one fetch), failures reach every waiter and are not
 * cached, drop-behind (consumed blocks are evicted first, and recycled below
 * the budget until one is missed again), the buffer reserve, buffers resident
 * in small pages.  The "fetches" here are fake: a thread that fills the
 * buffer. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block_cache.h"
#include "ebs.h"
#include "testing.h"

static const int owner_a = 1, owner_b = 2;      /* distinct addresses */

/* Fetch and complete synchronously, then release. */
static void
fill(struct block_cache *c, const void *owner, uint32_t index)
{
  struct cache_entry *e;
  enum block_state st;

  CHECK_INTEQ(block_cache_get(c, owner, index, &e, &st), 0);
  CHECK_INTEQ(st, BLOCK_FETCH);
  memset(block_cache_data(e), (int) index, EBS_BLOCK_SIZE);
  block_cache_fetch_done(e, 0);
  CHECK_INTEQ(block_cache_wait(e), 0);
  block_cache_release(e);
}

static void
touch(struct block_cache *c, const void *owner, uint32_t index)
{
  struct cache_entry *e;
  enum block_state st;

  CHECK_INTEQ(block_cache_get(c, owner, index, &e, &st), 0);
  CHECK_INTEQ(st, BLOCK_READY);
  CHECK_INTEQ(((unsigned char *) block_cache_data(e))[1000], index & 0xff);
  block_cache_release(e);
}

static void
test_lru(void)
{
  struct block_cache *c = block_cache_new(3ull * EBS_BLOCK_SIZE);
  struct block_cache_stats st;

  fill(c, &owner_a, 0);
  fill(c, &owner_a, 1);
  fill(c, &owner_a, 2);
  touch(c, &owner_a, 0);                /* 1 is now least recently used */
  fill(c, &owner_a, 3);
  CHECK(block_cache_contains(c, &owner_a, 0));
  CHECK(!block_cache_contains(c, &owner_a, 1));
  CHECK(block_cache_contains(c, &owner_a, 2));
  CHECK(block_cache_contains(c, &owner_a, 3));
  CHECK(!block_cache_contains(c, &owner_b, 0));     /* keyed by owner too */
  block_cache_get_stats(c, &st);
  CHECK_INTEQ(st.bytes, 3ull * EBS_BLOCK_SIZE);
  CHECK_INTEQ(st.evictions, 1);
  CHECK_INTEQ(st.misses, 4);
  CHECK_INTEQ(st.hits, 1);

  block_cache_drop_owner(c, &owner_a);
  CHECK(!block_cache_contains(c, &owner_a, 0));
  block_cache_get_stats(c, &st);
  CHECK_INTEQ(st.bytes, 0);
  block_cache_free(c);
}

/* Fetch, complete, mark consumed (a stream read it to its end), release. */
static void
fill_consumed(struct block_cache *c, const void *owner, uint32_t index)
{
  struct cache_entry *e;
  enum block_state st;

  CHECK_INTEQ(block_cache_get(c, owner, index, &e, &st), 0);
  CHECK_INTEQ(st, BLOCK_FETCH);
  memset(block_cache_data(e), (int) index, EBS_BLOCK_SIZE);
  block_cache_fetch_done(e, 0);
  block_cache_mark_consumed(e);
  block_cache_release(e);
}

static void
test_drop_behind(void)
{
  /* Budget 4 blocks: consumed blocks are evicted before older ordinary ones. */
  struct block_cache *c = block_cache_new(4ull * EBS_BLOCK_SIZE);
  struct block_cache_stats st;
  uint32_t i;

  fill(c, &owner_a, 0);
  fill_consumed(c, &owner_a, 1);
  fill_consumed(c, &owner_a, 2);
  fill(c, &owner_a, 3);
  fill(c, &owner_a, 4);                 /* evicts 1, the oldest consumed */
  CHECK(block_cache_contains(c, &owner_a, 0));
  CHECK(!block_cache_contains(c, &owner_a, 1));
  CHECK(block_cache_contains(c, &owner_a, 2));
  touch(c, &owner_a, 2);                /* read again: ordinary, most recent */
  fill(c, &owner_a, 5);                 /* so the LRU's oldest, 0, goes */
  CHECK(!block_cache_contains(c, &owner_a, 0));
  CHECK(block_cache_contains(c, &owner_a, 2));
  block_cache_drop_owner(c, &owner_a);
  block_cache_free(c);

  /* Below the budget (4096 blocks), a stream keeps a sixteenth of it (256
   * consumed blocks) and then recycles its oldest buffers: the cache stops
   * growing.  Ordinary blocks are never recycled below the budget. */
  c = block_cache_new(4096ull * EBS_BLOCK_SIZE);
  for (i = 0; i < 10; i++)
    fill(c, &owner_b, i);
  for (i = 0; i < 1500; i++)
    fill_consumed(c, &owner_a, i);
  block_cache_get_stats(c, &st);
  CHECK_INTEQ(st.entries, 10 + 257);
  CHECK_INTEQ(st.recycled, 1500 - 257);
  CHECK_INTEQ(st.evictions, 0);
  CHECK_INTEQ(st.ghost_hits, 0);
  CHECK(!block_cache_contains(c, &owner_a, 0));
  CHECK(block_cache_contains(c, &owner_a, 1499));
  for (i = 0; i < 10; i++)
    CHECK(block_cache_contains(c, &owner_b, i));
  /* A recycled block read again (the kernel dropped its pages): from now
   * on consumed blocks are kept up to the budget, as ordinary ones. */
  fill(c, &owner_a, 0);
  for (i = 1500; i < 2500; i++)
    fill_consumed(c, &owner_a, i);
  block_cache_get_stats(c, &st);
  CHECK_INTEQ(st.ghost_hits, 1);
  CHECK_INTEQ(st.recycled, 1500 - 257);
  CHECK_INTEQ(st.entries, 10 + 257 + 1 + 1000);
  CHECK_INTEQ(st.evictions, 0);
  block_cache_drop_owner(c, &owner_a);
  block_cache_drop_owner(c, &owner_b);
  block_cache_free(c);
}

static void
test_refs_pin(void)
{
  struct block_cache *c = block_cache_new(2ull * EBS_BLOCK_SIZE);
  struct cache_entry *held;
  enum block_state st;
  uint32_t i;

  CHECK_INTEQ(block_cache_get(c, &owner_a, 7, &held, &st), 0);
  CHECK_INTEQ(st, BLOCK_FETCH);
  memset(block_cache_data(held), 0x77, EBS_BLOCK_SIZE);
  block_cache_fetch_done(held, 0);
  for (i = 100; i < 110; i++)
    fill(c, &owner_b, i);
  CHECK(block_cache_contains(c, &owner_a, 7));      /* pinned by our ref */
  CHECK_INTEQ(((unsigned char *) block_cache_data(held))[EBS_BLOCK_SIZE - 1], 0x77);
  /* Detached while held: no longer found, still readable, freed on release. */
  block_cache_drop_owner(c, &owner_a);
  CHECK(!block_cache_contains(c, &owner_a, 7));
  CHECK_INTEQ(((unsigned char *) block_cache_data(held))[0], 0x77);
  block_cache_release(held);
  block_cache_free(c);
}

/* ---- single flight -------------------------------------------------------- */

struct flight {
  struct block_cache *c;
  uint32_t index;
  int fetch_rc;                 /* what the fake fetch completes with */
  pthread_mutex_t lock;
  int fetches;
  int results[16];
  int nresults;
  int ok_data;
  int arrived, expected;        /* readers past block_cache_get */
  pthread_cond_t cond;
};

struct fake_job { struct cache_entry *e; int rc; struct flight *f; };

static void *
fake_fetch_rc(void *arg)
{
  struct fake_job *j = arg;

  /* Complete only once every reader has found the entry: they all share
   * this one fetch, however slowly the threads start. */
  pthread_mutex_lock(&j->f->lock);
  while (j->f->arrived < j->f->expected)
    pthread_cond_wait(&j->f->cond, &j->f->lock);
  pthread_mutex_unlock(&j->f->lock);
  usleep(10 * 1000);
  if (j->rc == 0)
    memset(block_cache_data(j->e), 0xab, EBS_BLOCK_SIZE);
  block_cache_fetch_done(j->e, j->rc);
  free(j);
  return NULL;
}

static void *
reader(void *arg)
{
  struct flight *f = arg;
  struct cache_entry *e;
  enum block_state st;
  int rc;

  if (block_cache_get(f->c, &owner_a, f->index, &e, &st) != 0)
    return NULL;
  if (st == BLOCK_FETCH) {
    struct fake_job *j = malloc(sizeof *j);
    pthread_t t;

    pthread_mutex_lock(&f->lock);
    f->fetches++;
    pthread_mutex_unlock(&f->lock);
    j->e = e;
    j->rc = f->fetch_rc;
    j->f = f;
    pthread_create(&t, NULL, fake_fetch_rc, j);
    pthread_detach(t);
  }
  pthread_mutex_lock(&f->lock);
  f->arrived++;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->lock);
  rc = block_cache_wait(e);
  pthread_mutex_lock(&f->lock);
  f->results[f->nresults++] = rc;
  if (rc == 0 && ((unsigned char *) block_cache_data(e))[12345] == 0xab)
    f->ok_data++;
  pthread_mutex_unlock(&f->lock);
  block_cache_release(e);
  return NULL;
}

static void
run_flight(struct flight *f, int n)
{
  pthread_t t[16];
  int i;

  f->arrived = 0;
  f->expected = n;
  for (i = 0; i < n; i++)
    pthread_create(&t[i], NULL, reader, f);
  for (i = 0; i < n; i++)
    pthread_join(t[i], NULL);
}

static void
test_single_flight(void)
{
  struct flight f = { .index = 42, .fetch_rc = 0 };
  struct block_cache_stats st;
  int i;

  f.c = block_cache_new(8ull * EBS_BLOCK_SIZE);
  pthread_mutex_init(&f.lock, NULL);
  pthread_cond_init(&f.cond, NULL);
  run_flight(&f, 12);
  CHECK_INTEQ(f.fetches, 1);
  CHECK_INTEQ(f.nresults, 12);
  CHECK_INTEQ(f.ok_data, 12);
  block_cache_get_stats(f.c, &st);
  CHECK_INTEQ(st.misses, 1);
  CHECK_INTEQ(st.hits, 11);

  /* Failure: every waiter gets the error, and nothing is cached. */
  f.index = 43;
  f.fetch_rc = -EIO;
  f.fetches = f.nresults = f.ok_data = 0;
  run_flight(&f, 8);
  CHECK_INTEQ(f.fetches, 1);
  CHECK_INTEQ(f.nresults, 8);
  for (i = 0; i < f.nresults; i++)
    CHECK_INTEQ(f.results[i], -EIO);
  CHECK(!block_cache_contains(f.c, &owner_a, 43));
  block_cache_get_stats(f.c, &st);
  CHECK_INTEQ(st.failures, 1);
  CHECK_INTEQ(st.bytes, 1ull * EBS_BLOCK_SIZE);     /* only block 42 */

  /* The next reader fetches again and can succeed. */
  f.fetch_rc = 0;
  f.fetches = f.nresults = f.ok_data = 0;
  run_flight(&f, 4);
  CHECK_INTEQ(f.fetches, 1);
  CHECK_INTEQ(f.ok_data, 4);
  pthread_mutex_destroy(&f.lock);
  pthread_cond_destroy(&f.cond);
  block_cache_free(f.c);
}

/* A reader of a ready block is not held up by another block's slow fetch. */
static void
test_no_head_of_line(void)
{
  struct block_cache *c = block_cache_new(8ull * EBS_BLOCK_SIZE);
  struct cache_entry *slow, *e;
  enum block_state st;

  fill(c, &owner_a, 1);
  CHECK_INTEQ(block_cache_get(c, &owner_a, 2, &slow, &st), 0);
  CHECK_INTEQ(st, BLOCK_FETCH);         /* never completed until below */
  CHECK_INTEQ(block_cache_get(c, &owner_a, 1, &e, &st), 0);
  CHECK_INTEQ(st, BLOCK_READY);
  CHECK_INTEQ(block_cache_wait(e), 0);
  block_cache_release(e);
  block_cache_fetch_done(slow, -ETIMEDOUT);
  CHECK_INTEQ(block_cache_wait(slow), -ETIMEDOUT);
  block_cache_release(slow);
  block_cache_free(c);
}

/* Wait up to 10 s for the reserve to hold want free buffers. */
static void
wait_reserve(struct block_cache *c, uint64_t want, struct block_cache_stats *st)
{
  for (int i = 0; i < 1000; i++) {
    block_cache_get_stats(c, st);
    if (st->pool_free >= want)
      return;
    usleep(10000);
  }
}

/* The reserve thread makes buffers ready before any miss, refills after a
 * burst, and never grows the pool past the budget plus the reserve. */
static void
test_reserve(void)
{
  struct block_cache *c = block_cache_new(64ull * EBS_BLOCK_SIZE);
  struct block_cache_stats st;
  struct cache_entry *e[40];
  enum block_state s;
  const uint64_t reserve = 8;           /* an eighth of 64 blocks */
  const uint64_t cap = (64 + reserve) * EBS_BLOCK_SIZE;

  wait_reserve(c, reserve, &st);
  CHECK_INTEQ(st.pool_free, reserve);   /* ready before the first miss */
  CHECK_INTEQ(st.pool_bytes, reserve * EBS_BLOCK_SIZE);
  CHECK_INTEQ(st.misses, 0);
  for (uint32_t i = 0; i < 40; i++) {   /* a burst, all in flight at once */
    CHECK_INTEQ(block_cache_get(c, &owner_a, i, &e[i], &s), 0);
    CHECK_INTEQ(s, BLOCK_FETCH);
  }
  for (uint32_t i = 0; i < 40; i++) {
    memset(block_cache_data(e[i]), (int) i, EBS_BLOCK_SIZE);
    block_cache_fetch_done(e[i], 0);
    block_cache_release(e[i]);
  }
  wait_reserve(c, reserve, &st);
  /* Refilled: the thread maps whole chunks of 4, and a miss that found the
   * list empty may have mapped one of its own meanwhile. */
  CHECK(st.pool_free >= reserve && st.pool_free < reserve + 2 * 4);
  CHECK_INTEQ(st.pool_bytes, (40 + st.pool_free) * EBS_BLOCK_SIZE);
  /* Many more misses than the budget: the pool stops at budget + reserve. */
  for (uint32_t i = 40; i < 400; i++)
    fill(c, &owner_a, i);
  wait_reserve(c, reserve, &st);
  CHECK(st.pool_bytes <= cap);
  CHECK(st.pool_bytes >= 64ull * EBS_BLOCK_SIZE);
  block_cache_free(c);

  /* A budget too small for a reserve: buffers are made on demand only. */
  c = block_cache_new(4ull * EBS_BLOCK_SIZE);
  usleep(50000);
  block_cache_get_stats(c, &st);
  CHECK_INTEQ(st.pool_bytes, 0);
  fill(c, &owner_a, 0);
  block_cache_get_stats(c, &st);
  CHECK_INTEQ(st.pool_bytes, 4ull * EBS_BLOCK_SIZE);        /* one chunk */
  block_cache_free(c);
}

/* What /proc/self/smaps says of the mapping holding addr: its Rss and
 * AnonHugePages in KiB, and whether VmFlags has "nh" (MADV_NOHUGEPAGE).
 * false when smaps cannot be read or has no such mapping. */
static bool
smaps_of(const void *addr, long *rss_kib, long *huge_kib, bool *nohuge)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  bool in = false, found = false;

  if (f == NULL)
    return false;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    long v;

    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {          /* a mapping's first line */
      if (found)
        break;                          /* past our mapping */
      in = (uintptr_t) addr >= lo && (uintptr_t) addr < hi;
      found = in;
      continue;
    }
    if (!in)
      continue;
    if (sscanf(line, "Rss: %ld kB", &v) == 1)
      *rss_kib = v;
    else if (sscanf(line, "AnonHugePages: %ld kB", &v) == 1)
      *huge_kib = v;
    else if (strncmp(line, "VmFlags:", 8) == 0)
      *nohuge = strstr(line, " nh") != NULL;
  }
  fclose(f);
  return found;
}

/* Buffers are resident before a fetch writes them (populated in one call)
 * and in small pages: huge pages are slow to back on a VM that reports free
 * memory to its host (block_cache.c). */
static void
test_buffer_pages(void)
{
  struct block_cache *c = block_cache_new(4ull * EBS_BLOCK_SIZE);  /* no reserve */
  struct cache_entry *e;
  enum block_state s;
  long rss = -1, huge = -1;
  bool nohuge = false;
  bool populate = false;

  CHECK_INTEQ(block_cache_get(c, &owner_a, 0, &e, &s), 0);
  CHECK_INTEQ(s, BLOCK_FETCH);
  if (!smaps_of(block_cache_data(e), &rss, &huge, &nohuge)) {
    fprintf(stderr, "no /proc/self/smaps: page checks skipped\n");
  }
  else {
#ifdef MADV_NOHUGEPAGE
    CHECK(nohuge);
#endif
    CHECK_INTEQ(huge, 0);
    /* Resident though nothing wrote it yet, where the kernel can populate. */
#ifdef MADV_POPULATE_WRITE
    void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (probe != MAP_FAILED) {
      populate = madvise(probe, 4096, MADV_POPULATE_WRITE) == 0;
      munmap(probe, 4096);
    }
#endif
    if (populate)
      CHECK(rss >= 2048);               /* the whole 2 MiB chunk */
  }
  block_cache_fetch_done(e, -EIO);
  block_cache_release(e);
  block_cache_free(c);
}

int
main(void)
{
  test_lru();
  test_drop_behind();
  test_refs_pin();
  test_single_flight();
  test_no_head_of_line();
  test_reserve();
  test_buffer_pages();
  TEST_EXIT();
}
