/* block_cache.c - LRU block cache with single-flight fetches (block_cache.h).
 *
 * One mutex guards the hash table, the LRU list and every entry's state; it is
 * held only for pointer work, never across a request or a 512 KiB allocation.
 * Each entry has its own condition variable so a reader sleeps only until its
 * own block arrives.  Entries evicted by the budget are recycled (struct and
 * buffer) for the next miss, so a steady stream of misses does not malloc.
 *
 * Drop-behind: a block a sequential reader has read to its end is in the
 * reader's hands (and, under a loop mount or with -o kernel_cache, in a page
 * cache above us), so keeping it here is worth less than any other block.
 * Such "consumed" blocks go on their own list, evicted before the LRU when the budget is full: a long stream cycles through its
 * own buffers instead of flushing the blocks random readers (a loop-mounted
 * file system's metadata) keep coming back to.
 *
 * Below the budget, the consumed list keeps a sixteenth of the budget (at
 * least 16 MiB) and then recycles its oldest buffer for the next miss: a
 * dd of a whole volume then touches about 120 MiB of fresh memory (the
 * readahead window, the reserve, these) instead of the whole budget.
 * First-touching memory is a fifth of the daemon's CPU in such a read on
 * the machine we measure on, more where fresh memory is slow: a quarter
 * of the default budget (64 MiB, 173 MiB touched in all) cost 8% of a dd's
 * throughput there (tests/bench/RESULTS.md).
 * But a reader can come back (the kernel dropped its pages under memory
 * pressure, or a direct-I/O reader reads again), and then those blocks were
 * worth keeping (an earlier version recycled unconditionally
 * and once re-fetched 699 blocks of a 1 GiB warm re-read).  So recycled
 * blocks are remembered as "ghosts" (owner and index only), as in ARC: a
 * miss on a ghost shows a reader wanted back what we gave up, and from
 * then on consumed blocks stay until the budget is full.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "block_cache.h"
#include "ebs.h"
#include "log.h"

#define DEFAULT_BUDGET (64ull * EBS_BLOCK_SIZE)
#define DONE_KEEP_MIN 32u               /* consumed blocks kept below the budget: */
#define DONE_KEEP_SHARE 16              /* max(16 MiB, a sixteenth of the budget) */
#define NO_GHOST UINT32_MAX
#define RESERVE_BUFS 32u                /* 16 MiB of buffers kept ready */
#define CHUNK_SIZE (2u << 20)           /* buffers come in 2 MiB chunks (below) */
#define BLOCKS_PER_CHUNK (CHUNK_SIZE / EBS_BLOCK_SIZE)

enum entry_state { E_FETCHING, E_READY, E_FAILED };

struct cache_entry {
  struct block_cache *cache;
  const void *owner;
  uint32_t index;
  enum entry_state state;
  int rc;                               /* -errno when E_FAILED */
  unsigned refs;                        /* readers + the fetch in progress */
  unsigned waiters;
  bool hashed;                          /* findable by get */
  bool in_lru;                          /* refs == 0, ready, hashed */
  bool consumed;                        /* read to its end by a stream */
  bool in_done;                         /* on the consumed list, not the LRU */
  struct cache_entry *hnext;
  struct cache_entry *lru_prev, *lru_next;
  pthread_cond_t cond;
  void *data;
};

struct block_cache {
  pthread_mutex_t lock;
  struct cache_entry **buckets;
  size_t nbuckets;                      /* power of two */
  uint64_t budget;
  struct cache_entry *lru_head, *lru_tail;  /* head: most recently used */
  struct cache_entry *done_head, *done_tail; /* consumed blocks; head: newest */
  uint64_t ndone;                       /* entries on the consumed list */
  uint64_t done_keep;                   /* ...kept below the budget, unless: */
  bool keep_consumed;                   /* a ghost was missed: keep them all */
  struct block_cache_stats st;

  /* Ghosts: the last nghosts consumed blocks recycled below the budget, in
   * a ring (ghost_pos: the next slot to reuse) with hash chains through
   * gnext from gbuckets[] (nbuckets of them).  Stale ghosts of a closed
   * image can only switch keep_consumed on: the cautious behaviour. */
  struct ghost {
    const void *owner;                  /* NULL: slot unused */
    uint32_t index;
    uint32_t gnext;
  } *ghosts;
  uint32_t *gbuckets;
  uint32_t nghosts, ghost_pos;
  void *zero;

  pthread_mutex_t pool_lock;            /* the buffer pool below, pointer work only */
  void **chunks;                        /* 2 MiB chunks, unmapped at block_cache_free */
  size_t nchunks, cap_chunks;
  void **free_bufs;                     /* buffers not in use; room for all of them */
  size_t nfree;
  /* The reserve: a thread keeps nfree at reserve, while the pool is under
   * max_chunks, so a burst of misses does not wait for fresh memory. */
  size_t reserve, max_chunks;
  pthread_cond_t pool_cond;             /* wakes the reserve thread */
  pthread_t reserve_thread;
  bool reserve_running, reserve_stop;   /* under pool_lock */
};

static size_t
bucket_of(const struct block_cache *c, const void *owner, uint32_t index)
{
  uint64_t h = (uint64_t) (uintptr_t) owner * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t) index * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  return (size_t) h & (c->nbuckets - 1);
}

static void *reserve_main(void *arg);

struct block_cache *
block_cache_new(uint64_t budget_bytes)
{
  struct block_cache *c = calloc(1, sizeof *c);
  uint64_t want;

  if (c == NULL)
    return NULL;
  c->budget = budget_bytes ? budget_bytes : DEFAULT_BUDGET;
  /* About two buckets per block the budget holds, at least 1024. */
  want = c->budget / EBS_BLOCK_SIZE * 2;
  c->nbuckets = 1024;
  while (c->nbuckets < want && c->nbuckets < (1u << 24))
    c->nbuckets <<= 1;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  c->zero = calloc(1, EBS_BLOCK_SIZE);
  /* As many ghosts as the budget holds blocks: a miss on any of them is a
   * block the budget could have kept. */
  c->done_keep = c->budget / EBS_BLOCK_SIZE / DONE_KEEP_SHARE;
  if (c->done_keep < DONE_KEEP_MIN)
    c->done_keep = DONE_KEEP_MIN;
  c->nghosts = (uint32_t) (c->budget / EBS_BLOCK_SIZE < (1u << 24)
                           ? c->budget / EBS_BLOCK_SIZE : (1u << 24));
  if (c->nghosts == 0)
    c->nghosts = 1;
  c->ghosts = calloc(c->nghosts, sizeof *c->ghosts);
  c->gbuckets = malloc(c->nbuckets * sizeof *c->gbuckets);
  if (c->buckets == NULL || c->zero == NULL || c->ghosts == NULL || c->gbuckets == NULL ||
      pthread_mutex_init(&c->lock, NULL) != 0)
    goto fail;
  if (pthread_mutex_init(&c->pool_lock, NULL) != 0) {
    pthread_mutex_destroy(&c->lock);
    goto fail;
  }
  if (pthread_cond_init(&c->pool_cond, NULL) != 0) {
    pthread_mutex_destroy(&c->pool_lock);
    pthread_mutex_destroy(&c->lock);
    goto fail;
  }
  /* A reserve of 16 MiB of buffers (an eighth of a small budget), and the
   * pool never grows past the budget plus that reserve. */
  c->reserve = RESERVE_BUFS;
  if (c->reserve > c->budget / EBS_BLOCK_SIZE / 8)
    c->reserve = c->budget / EBS_BLOCK_SIZE / 8;
  c->max_chunks = (size_t) ((c->budget / EBS_BLOCK_SIZE + c->reserve + BLOCKS_PER_CHUNK - 1)
                            / BLOCKS_PER_CHUNK);
  for (size_t b = 0; b < c->nbuckets; b++)
    c->gbuckets[b] = NO_GHOST;
  if (c->reserve > 0) {
    int r = pthread_create(&c->reserve_thread, NULL, reserve_main, c);
    if (r == 0)
      c->reserve_running = true;
    else          /* misses map their own buffers: slower, still correct */
      log_debug(LOG_SUB_CACHE, "cache: no buffer reserve thread: %s", strerror(r));
  }
  return c;

fail:
  free(c->ghosts);
  free(c->gbuckets);
  free(c->buckets);
  free(c->zero);
  free(c);
  return NULL;
}

/* ---- block buffers ------------------------------------------------------------
 *
 * Buffers are carved from 2 MiB chunks whose memory is made resident in one
 * call (MADV_POPULATE_WRITE), and are kept for reuse (never given back
 * before block_cache_free): first-touching fresh memory is the expensive
 * part of filling the cache.  On the build machine, 256 MiB took 0.53-0.55 s
 * as 512 KiB buffers faulted in page by page, 0.11-0.13 s populated in one
 * call.
 *
 * In 4 KiB pages, not transparent huge pages.  Huge pages were faster to
 * populate on a quiet machine (0.03 s for 256 MiB), but a VM whose balloon
 * reports free memory to its host (free page reporting) hands back exactly
 * the free 2 MiB blocks a huge page needs, and the host must back each of
 * them again on first touch: 2.3-2.4 s for the same 256 MiB there, for
 * minutes after another process freed memory.  Small pages come from the
 * blocks the guest still holds and cost the same in every state.  Measured
 * with the default budget, huge pages against small ones, alternating
 * (tests/bench/RESULTS.md, run 26): random 4 KiB reads 501-523 against
 * 630-632 IOPS (the daemon populating memory for the first 3.7 s of 8),
 * a dd 474.6 against 498.7 MiB/s, a first file after a download 420 against
 * 260 ms.  Without MADV_POPULATE_WRITE (kernels before 5.14) the pages
 * fault in as they are written. */

static void *
chunk_map(void)
{
  void *p = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

  if (p == MAP_FAILED)
    return NULL;
  /* Hints, failure harmless: NOHUGEPAGE matters where THP is "always". */
#ifdef MADV_NOHUGEPAGE
  (void) madvise(p, CHUNK_SIZE, MADV_NOHUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
  (void) madvise(p, CHUNK_SIZE, MADV_POPULATE_WRITE);
#endif
  return p;
}

/* Add a mapped chunk to the pool, under pool_lock; its buffers go on the
 * free list but the first when keep_first (the caller's).  0, or -ENOMEM
 * with the chunk unmapped. */
static int
pool_add_chunk(struct block_cache *c, void *chunk, bool keep_first)
{
  if (c->nchunks == c->cap_chunks) {
    size_t ncap = c->cap_chunks ? c->cap_chunks * 2 : 16;
    void **nc = realloc(c->chunks, ncap * sizeof *nc);
    void **nf = nc ? realloc(c->free_bufs, ncap * BLOCKS_PER_CHUNK * sizeof *nf) : NULL;

    if (nc)
      c->chunks = nc;
    if (nf == NULL) {
      (void) munmap(chunk, CHUNK_SIZE);
      return -ENOMEM;
    }
    c->free_bufs = nf;
    c->cap_chunks = ncap;
  }
  c->chunks[c->nchunks++] = chunk;
  for (unsigned i = keep_first ? 1 : 0; i < BLOCKS_PER_CHUNK; i++)
    c->free_bufs[c->nfree++] = (char *) chunk + (size_t) i * EBS_BLOCK_SIZE;
  return 0;
}

/* The reserve thread.  Making a chunk resident takes about 1 ms here (in
 * huge pages, while we used them, up to 90 ms in the VM state above: a
 * first-file read whose 22 blocks were all missing once waited 28 ms just
 * for buffers before its requests went out).  This thread does that work
 * ahead, while the first requests of a mount are in flight and after each
 * burst, so a miss seldom waits for memory at all. */
static void *
reserve_main(void *arg)
{
  struct block_cache *c = arg;

  pthread_mutex_lock(&c->pool_lock);
  for (;;) {
    void *chunk;

    while (!c->reserve_stop && (c->nfree >= c->reserve || c->nchunks >= c->max_chunks))
      pthread_cond_wait(&c->pool_cond, &c->pool_lock);
    if (c->reserve_stop)
      break;
    pthread_mutex_unlock(&c->pool_lock);
    chunk = chunk_map();
    pthread_mutex_lock(&c->pool_lock);
    /* Out of memory: leave it to the misses, which report it. */
    if (chunk == NULL || pool_add_chunk(c, chunk, false) < 0)
      break;
  }
  pthread_mutex_unlock(&c->pool_lock);
  return NULL;
}

static void *
block_alloc(struct block_cache *c)
{
  void *chunk, *p = NULL;

  pthread_mutex_lock(&c->pool_lock);
  if (c->nfree)
    p = c->free_bufs[--c->nfree];
  if (c->reserve_running && c->nfree < c->reserve && c->nchunks < c->max_chunks)
    pthread_cond_signal(&c->pool_cond);
  pthread_mutex_unlock(&c->pool_lock);
  if (p)
    return p;

  /* The reserve is empty: a new chunk, mapped without the lock held. */
  if ((chunk = chunk_map()) == NULL)
    return NULL;
  pthread_mutex_lock(&c->pool_lock);
  if (pool_add_chunk(c, chunk, true) < 0)
    chunk = NULL;
  pthread_mutex_unlock(&c->pool_lock);
  return chunk;
}

static void
block_free(struct block_cache *c, void *p)
{
  if (p == NULL)
    return;
  pthread_mutex_lock(&c->pool_lock);
  c->free_bufs[c->nfree++] = p;      /* room: sized for every buffer of every chunk */
  pthread_mutex_unlock(&c->pool_lock);
}

static void
entry_destroy(struct block_cache *c, struct cache_entry *e)
{
  pthread_cond_destroy(&e->cond);
  block_free(c, e->data);
  free(e);
}

/* An unreferenced, ready entry is on exactly one of two lists (in_lru):
 * the LRU, or the consumed list when in_done. */
static void
lru_unlink(struct block_cache *c, struct cache_entry *e)
{
  struct cache_entry **head = e->in_done ? &c->done_head : &c->lru_head;
  struct cache_entry **tail = e->in_done ? &c->done_tail : &c->lru_tail;

  if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
  else *head = e->lru_next;
  if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
  else *tail = e->lru_prev;
  if (e->in_done)
    c->ndone--;
  e->lru_prev = e->lru_next = NULL;
  e->in_lru = false;
  e->in_done = false;
}

static void
lru_push_head(struct block_cache *c, struct cache_entry *e)
{
  struct cache_entry **head = e->consumed ? &c->done_head : &c->lru_head;
  struct cache_entry **tail = e->consumed ? &c->done_tail : &c->lru_tail;

  e->lru_prev = NULL;
  e->lru_next = *head;
  if (*head) (*head)->lru_prev = e;
  else *tail = e;
  *head = e;
  e->in_lru = true;
  e->in_done = e->consumed;
  if (e->in_done)
    c->ndone++;
}

/* The next victim: the oldest consumed block, else the LRU tail. */
static struct cache_entry *
victim_locked(struct block_cache *c)
{
  return c->done_tail ? c->done_tail : c->lru_tail;
}

static void
unhash(struct block_cache *c, struct cache_entry *e)
{
  struct cache_entry **pp = &c->buckets[bucket_of(c, e->owner, e->index)];

  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = e->hnext;
  e->hnext = NULL;
  e->hashed = false;
}

/* Under the lock: take entries off the LRU tail until `extra` more bytes fit
 * in the budget.  They are chained through hnext onto *victims, to be freed
 * or recycled by the caller after unlocking. */
static void
evict_locked(struct block_cache *c, uint64_t extra, struct cache_entry **victims)
{
  struct cache_entry *e;

  while ((e = victim_locked(c)) != NULL && c->st.bytes + extra > c->budget) {
    lru_unlink(c, e);
    unhash(c, e);
    c->st.bytes -= EBS_BLOCK_SIZE;
    c->st.entries--;
    c->st.evictions++;
    e->hnext = *victims;
    *victims = e;
  }
}

static void
free_chain(struct block_cache *c, struct cache_entry *e)
{
  while (e) {
    struct cache_entry *next = e->hnext;
    entry_destroy(c, e);
    e = next;
  }
}

/* ---- ghosts: consumed blocks recycled below the budget ------------------- */

static void
ghost_add_locked(struct block_cache *c, const void *owner, uint32_t index)
{
  uint32_t slot = c->ghost_pos;
  struct ghost *g = &c->ghosts[slot];
  uint32_t *pp;

  c->ghost_pos = (slot + 1) % c->nghosts;
  if (g->owner != NULL) {               /* the oldest ghost goes */
    pp = &c->gbuckets[bucket_of(c, g->owner, g->index)];
    while (*pp != slot)
      pp = &c->ghosts[*pp].gnext;
    *pp = g->gnext;
  }
  pp = &c->gbuckets[bucket_of(c, owner, index)];
  g->owner = owner;
  g->index = index;
  g->gnext = *pp;
  *pp = slot;
}

static bool
ghost_find_locked(const struct block_cache *c, const void *owner, uint32_t index)
{
  uint32_t i = c->gbuckets[bucket_of(c, owner, index)];

  while (i != NO_GHOST && !(c->ghosts[i].owner == owner && c->ghosts[i].index == index))
    i = c->ghosts[i].gnext;
  return i != NO_GHOST;
}

/* Under the lock, on a miss below the budget: recycle the oldest consumed
 * block if the consumed list is over its share (see the top of the file). */
static void
recycle_consumed_locked(struct block_cache *c, struct cache_entry **victims)
{
  struct cache_entry *e = c->done_tail;

  if (c->keep_consumed || e == NULL || c->ndone <= c->done_keep)
    return;
  lru_unlink(c, e);
  unhash(c, e);
  ghost_add_locked(c, e->owner, e->index);
  c->st.bytes -= EBS_BLOCK_SIZE;
  c->st.entries--;
  c->st.recycled++;
  e->hnext = *victims;
  *victims = e;
}

static struct cache_entry *
find_locked(struct block_cache *c, const void *owner, uint32_t index)
{
  struct cache_entry *e = c->buckets[bucket_of(c, owner, index)];

  while (e && !(e->owner == owner && e->index == index))
    e = e->hnext;
  return e;
}

static enum block_state
take_locked(struct block_cache *c, struct cache_entry *e)
{
  if (e->in_lru)
    lru_unlink(c, e);
  e->consumed = false;                  /* wanted again: an ordinary block */
  e->refs++;
  c->st.hits++;
  return e->state == E_READY ? BLOCK_READY : BLOCK_PENDING;
}

int
block_cache_get(struct block_cache *c, const void *owner, uint32_t index,
                struct cache_entry **out, enum block_state *state)
{
  struct cache_entry *e, *victims = NULL, *fresh = NULL;

  pthread_mutex_lock(&c->lock);
  e = find_locked(c, owner, index);
  if (e) {
    *state = take_locked(c, e);
    pthread_mutex_unlock(&c->lock);
    *out = e;
    return 0;
  }
  if (!c->keep_consumed && ghost_find_locked(c, owner, index)) {
    c->keep_consumed = true;            /* the kernel did not keep it either */
    c->st.ghost_hits++;
    log_debug(LOG_SUB_CACHE, "block %u was recycled and is read again: streamed "
              "blocks are kept up to the budget from now on", index);
  }
  evict_locked(c, EBS_BLOCK_SIZE, &victims);
  if (victims == NULL)
    recycle_consumed_locked(c, &victims);
  pthread_mutex_unlock(&c->lock);

  /* Allocate (or recycle a victim) with the lock dropped. */
  if (victims) {
    fresh = victims;
    victims = victims->hnext;
    free_chain(c, victims);
  } else {
    fresh = calloc(1, sizeof *fresh);
    if (fresh == NULL)
      return -ENOMEM;
    fresh->data = block_alloc(c);
    if (fresh->data == NULL || pthread_cond_init(&fresh->cond, NULL) != 0) {
      block_free(c, fresh->data);
      free(fresh);
      return -ENOMEM;
    }
  }

  pthread_mutex_lock(&c->lock);
  e = find_locked(c, owner, index);
  if (e) {                              /* someone created it meanwhile */
    *state = take_locked(c, e);
    pthread_mutex_unlock(&c->lock);
    entry_destroy(c, fresh);
    *out = e;
    return 0;
  }
  fresh->cache = c;
  fresh->owner = owner;
  fresh->index = index;
  fresh->state = E_FETCHING;
  fresh->rc = 0;
  fresh->refs = 2;                      /* the caller and the fetch */
  fresh->waiters = 0;
  fresh->in_lru = false;
  fresh->in_done = false;
  fresh->consumed = false;
  fresh->lru_prev = fresh->lru_next = NULL;
  fresh->hashed = true;
  {
    size_t b = bucket_of(c, owner, index);
    fresh->hnext = c->buckets[b];
    c->buckets[b] = fresh;
  }
  c->st.bytes += EBS_BLOCK_SIZE;
  c->st.entries++;
  c->st.misses++;
  pthread_mutex_unlock(&c->lock);
  *out = fresh;
  *state = BLOCK_FETCH;
  return 0;
}

bool
block_cache_contains(struct block_cache *c, const void *owner, uint32_t index)
{
  bool found;

  pthread_mutex_lock(&c->lock);
  found = find_locked(c, owner, index) != NULL;
  pthread_mutex_unlock(&c->lock);
  return found;
}

/* Under the lock: drop one reference.  Returns the entry if it must be
 * destroyed (after unlocking), else NULL; may add LRU victims. */
static struct cache_entry *
unref_locked(struct block_cache *c, struct cache_entry *e,
             struct cache_entry **victims)
{
  if (--e->refs > 0)
    return NULL;
  if (e->hashed && e->state == E_READY) {
    lru_push_head(c, e);
    evict_locked(c, 0, victims);
    return NULL;
  }
  /* Failed, or detached by drop_owner: nobody can find it any more. */
  if (e->hashed)
    unhash(c, e);
  c->st.bytes -= EBS_BLOCK_SIZE;
  c->st.entries--;
  return e;
}

void
block_cache_fetch_done(struct cache_entry *e, int rc)
{
  struct block_cache *c = e->cache;
  struct cache_entry *victims = NULL, *dead;

  pthread_mutex_lock(&c->lock);
  if (rc == 0) {
    e->state = E_READY;
  } else {
    e->state = E_FAILED;
    e->rc = rc < 0 ? rc : -EIO;
    c->st.failures++;
    if (e->hashed)
      unhash(c, e);                     /* failures are not cached */
  }
  if (e->waiters)
    pthread_cond_broadcast(&e->cond);
  dead = unref_locked(c, e, &victims);
  pthread_mutex_unlock(&c->lock);
  if (dead)
    entry_destroy(c, dead);
  free_chain(c, victims);
}

int
block_cache_wait(struct cache_entry *e)
{
  struct block_cache *c = e->cache;
  int rc;

  pthread_mutex_lock(&c->lock);
  while (e->state == E_FETCHING) {
    e->waiters++;
    pthread_cond_wait(&e->cond, &c->lock);
    e->waiters--;
  }
  rc = e->state == E_READY ? 0 : e->rc;
  pthread_mutex_unlock(&c->lock);
  return rc;
}

void *
block_cache_data(struct cache_entry *e)
{
  return e->data;
}

const void *
block_cache_owner(const struct cache_entry *e)
{
  return e->owner;
}

uint32_t
block_cache_index(const struct cache_entry *e)
{
  return e->index;
}

void
block_cache_mark_consumed(struct cache_entry *e)
{
  struct block_cache *c = e->cache;

  pthread_mutex_lock(&c->lock);
  e->consumed = true;
  pthread_mutex_unlock(&c->lock);
}

void
block_cache_release(struct cache_entry *e)
{
  struct block_cache *c = e->cache;
  struct cache_entry *victims = NULL, *dead;

  pthread_mutex_lock(&c->lock);
  dead = unref_locked(c, e, &victims);
  pthread_mutex_unlock(&c->lock);
  if (dead)
    entry_destroy(c, dead);
  free_chain(c, victims);
}

void
block_cache_drop_owner(struct block_cache *c, const void *owner)
{
  struct cache_entry *victims = NULL;
  size_t b;

  pthread_mutex_lock(&c->lock);
  for (b = 0; b < c->nbuckets; b++) {
    struct cache_entry **pp = &c->buckets[b];

    while (*pp) {
      struct cache_entry *e = *pp;

      if (e->owner != owner) {
        pp = &e->hnext;
        continue;
      }
      *pp = e->hnext;
      e->hnext = NULL;
      e->hashed = false;
      if (e->in_lru) {
        lru_unlink(c, e);
        c->st.bytes -= EBS_BLOCK_SIZE;
        c->st.entries--;
        e->hnext = victims;
        victims = e;
      }
      /* else: in use or being fetched; freed by its last unref */
    }
  }
  pthread_mutex_unlock(&c->lock);
  free_chain(c, victims);
}

const void *
block_cache_zero_block(const struct block_cache *c)
{
  return c->zero;
}

uint64_t
block_cache_budget(const struct block_cache *c)
{
  return c->budget;
}

void
block_cache_get_stats(struct block_cache *c, struct block_cache_stats *out)
{
  pthread_mutex_lock(&c->lock);
  *out = c->st;
  pthread_mutex_unlock(&c->lock);
  pthread_mutex_lock(&c->pool_lock);
  out->pool_bytes = (uint64_t) c->nchunks * CHUNK_SIZE;
  out->pool_free = c->nfree;
  pthread_mutex_unlock(&c->pool_lock);
}

void
block_cache_free(struct block_cache *c)
{
  size_t b;

  if (c == NULL)
    return;
  if (c->reserve_running) {
    pthread_mutex_lock(&c->pool_lock);
    c->reserve_stop = true;
    pthread_cond_signal(&c->pool_cond);
    pthread_mutex_unlock(&c->pool_lock);
    pthread_join(c->reserve_thread, NULL);
  }
  for (b = 0; b < c->nbuckets; b++) {
    struct cache_entry *e = c->buckets[b];

    while (e) {
      struct cache_entry *next = e->hnext;

      if (e->refs)
        log_warn("block cache freed with block %u still referenced", e->index);
      entry_destroy(c, e);
      e = next;
    }
  }
  for (b = 0; b < c->nchunks; b++)
    (void) munmap(c->chunks[b], CHUNK_SIZE);
  free(c->chunks);
  free(c->free_bufs);
  pthread_cond_destroy(&c->pool_cond);
  pthread_mutex_destroy(&c->pool_lock);
  pthread_mutex_destroy(&c->lock);
  free(c->buckets);
  free(c->ghosts);
  free(c->gbuckets);
  free(c->zero);
  free(c);
}
