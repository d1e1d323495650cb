/* image.c - one snapshot as a flat image (image.h): the read path.
 *
 * A read maps its byte range to 512 KiB blocks.  Unlisted blocks are served
 * from the cache's shared zero block with no request; listed ones through the
 * block cache, whose first reader of a missing block starts one
 * GetSnapshotBlock (ebs_get_snapshot_block_async) and whose later readers wait
 * for that same request.  All fetches of a read are started before the read
 * waits for any, then the readahead window's prefetches are queued behind
 * them; the transport paces them all with its per-snapshot rate limiter.
 *
 * The reply references cache memory (one reference per block) so FUSE can
 * send it without a copy; image_read_release() drops the references.
 *
 * Write mode (-o rw): img->staging (src/staging.c) holds the blocks written
 * locally.  Reads answer those from the staging file (fd segments), the rest
 * as above; a write into a block not yet staged first brings in the whole
 * base block through the same cache (zeros when unlisted, or for a new
 * volume, which has no source and no index), overlays the write and stages
 * the result.  No lock is held across the base block's fetch: writers of
 * other blocks proceed, writers of the same block wait for it.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block_cache.h"
#include "block_index.h"
#include "ebs.h"
#include "first_listing.h"
#include "image.h"
#include "layout_prefetch.h"
#include "log.h"
#include "readahead.h"
#include "staging.h"

#define DEFAULT_MAX_REQUESTS 128u
#define STALE_TOKEN (-ESTALE)           /* internal: token rejected, re-list and retry */
#define HEAD_PREFETCH_BLOCKS 16u        /* 8 MiB: see image_prefetch_head() */
#define PROBE_RESULTS 100               /* ListSnapshotBlocks' least maxResults */

struct image {
  char snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];
  struct ebs_client *client;
  struct block_cache *cache;
  struct block_index *index;            /* NULL: a new volume, no source */
  uint64_t size;
  uint64_t nblocks;
  unsigned readahead_max;
  unsigned max_requests;
  struct staging *staging;              /* NULL when read-only; borrowed */

  pthread_mutex_t lock;                 /* guards the counters below */
  pthread_cond_t idle;                  /* inflight or submitting reached 0 */
  unsigned inflight;                    /* our GetSnapshotBlock requests */
  bool closing;                         /* image_close: no new requests */
  unsigned submitting;                  /* start_fetch between check and queue */
  struct image_stats st;
  bool head_prefetched;                 /* atomic: HEAD_PREFETCH_BLOCKS queued once */
  bool fs_prefetch;                     /* -o fs_prefetch: parse the layout */
  struct layout_prefetch *layout;       /* atomic; set once with the head */
  struct first_listing *first;          /* grain 0's page, listed beside the probe */
};

struct image_reader {
  struct image *img;
  pthread_mutex_t lock;                 /* FUSE may read one handle from many threads */
  struct readahead ra;
};

/* ---- listing, wired to the transport ---------------------------------------- */

/* block_index_lookup, for an image that may have no source at all. */
static int
index_lookup(struct image *img, uint64_t block, char *token, size_t cap,
             struct ebs_error *err)
{
  if (img->index == NULL)
    return 0;                           /* a new volume: every block is zeros */
  return block_index_lookup(img->index, block, token, cap, err);
}

static int
list_page(void *arg, const char *page_token, int64_t start, int max_results,
          struct ebs_block_page *out, struct ebs_error *err)
{
  struct image *img = arg;
  int rc = ebs_list_snapshot_blocks(img->client, img->snapshot_id, page_token,
                                    start, max_results, out, err);

  if (rc > 0)
    rc = -rc;
  if (rc < 0 && rc != -ECANCELED) {     /* cancelled: image_close */
    char msg[800];
    log_warn("%s: listing blocks from %lld: %s", img->snapshot_id,
             (long long) start, ebs_error_string(err, msg, sizeof msg));
  }
  return rc;
}

static void
free_page(void *arg, struct ebs_block_page *p)
{
  (void) arg;
  ebs_block_page_free(p);
}

/* ---- fetching ---------------------------------------------------------------- */

static void
fetch_finished(struct image *img)
{
  pthread_mutex_lock(&img->lock);
  if (--img->inflight == 0)
    pthread_cond_broadcast(&img->idle);
  pthread_mutex_unlock(&img->lock);
}

/* Completion, on the transport's I/O thread: brief locks only. */
static void
fetch_done(void *arg, int rc, const struct ebs_error *err)
{
  struct cache_entry *e = arg;
  struct image *img = (struct image *) block_cache_owner(e);
  uint32_t index = block_cache_index(e);

  if (rc > 0)
    rc = -rc;
  if (rc < 0) {
    char msg[800];

    if (err && ebs_error_is(err, "ValidationException", "INVALID_BLOCK_TOKEN")) {
      block_index_invalidate(img->index, index);
      rc = STALE_TOKEN;
      log_debug(LOG_SUB_CACHE, "%s: block %u: token rejected, re-listing",
                img->snapshot_id, index);
    } else if (rc != -ECANCELED) {
      log_warn("%s: block %u: %s", img->snapshot_id, index,
               err ? ebs_error_string(err, msg, sizeof msg) : strerror(-rc));
    }
    pthread_mutex_lock(&img->lock);
    img->st.fetch_failures++;
    pthread_mutex_unlock(&img->lock);
  }
  block_cache_fetch_done(e, rc);
  fetch_finished(img);                  /* last: img may be closed after */
}

/* We own the fetch of e (BLOCK_FETCH): find the token and send the request.
 * Every path ends in block_cache_fetch_done() exactly once. */
static void
start_fetch(struct image *img, struct cache_entry *e, uint64_t block, bool prefetch)
{
  char token[BLOCK_TOKEN_MAX + 1];
  struct ebs_error err;
  int rc;

  rc = index_lookup(img, block, token, sizeof token, &err);
  if (rc == 0) {                        /* not listed after all: zeros */
    memset(block_cache_data(e), 0, EBS_BLOCK_SIZE);
    block_cache_fetch_done(e, 0);
    return;
  }
  if (rc < 0) {
    block_cache_fetch_done(e, rc);
    return;
  }
  /* submitting lets image_close wait until what passed the closing check
   * is queued, so that its cancel reaches it. */
  pthread_mutex_lock(&img->lock);
  if (img->closing) {
    pthread_mutex_unlock(&img->lock);
    block_cache_fetch_done(e, -ECANCELED);
    return;
  }
  img->inflight++;
  img->submitting++;
  img->st.fetches++;
  if (prefetch)
    img->st.prefetches++;
  pthread_mutex_unlock(&img->lock);
  rc = ebs_get_snapshot_block_async(img->client, img->snapshot_id, (uint32_t) block,
                                    token, block_cache_data(e), prefetch, fetch_done, e);
  pthread_mutex_lock(&img->lock);
  if (--img->submitting == 0 && img->closing)   /* only image_cancel waits for it */
    pthread_cond_broadcast(&img->idle);
  if (rc != 0 && --img->inflight == 0)  /* done will not be called */
    pthread_cond_broadcast(&img->idle);
  pthread_mutex_unlock(&img->lock);
  if (rc != 0) {
    if (rc != -ECANCELED)
      log_warn("%s: block %llu: cannot queue the request: %s", img->snapshot_id,
               (unsigned long long) block, strerror(rc < 0 ? -rc : rc));
    block_cache_fetch_done(e, rc < 0 ? rc : -rc);
  }
}

/* Get a referenced, completed entry for a listed block: fetch it or wait for
 * the fetch in progress.  A rejected token is re-listed and tried once more. */
static int
get_block(struct image *img, uint64_t block, struct cache_entry **out)
{
  int attempt, rc = -EIO;

  for (attempt = 0; attempt < 2; attempt++) {
    struct cache_entry *e;
    enum block_state st;

    rc = block_cache_get(img->cache, img, (uint32_t) block, &e, &st);
    if (rc < 0)
      return rc;
    if (st == BLOCK_FETCH)
      start_fetch(img, e, block, false);
    else if (st == BLOCK_PENDING)
      ebs_promote_block(img->client, img->snapshot_id, (uint32_t) block);
    rc = block_cache_wait(e);
    if (rc == 0) {
      *out = e;
      return 0;
    }
    block_cache_release(e);
    if (rc != STALE_TOKEN)
      return rc;
  }
  return -EIO;
}

/* Queue fetches for [first, first+n) that are listed and not cached, while
 * fewer than max_requests of ours are in flight.  Never waits for data.
 * Returns the first block it did not get to (first + n when it went through
 * the range), so readahead can offer the rest again later. */
static uint64_t
prefetch(struct image *img, uint64_t first, unsigned n)
{
  uint64_t b;

  for (b = first; b < first + n && b < img->nblocks; b++) {
    struct cache_entry *e;
    enum block_state st;
    struct ebs_error err;
    unsigned inflight;

    pthread_mutex_lock(&img->lock);
    inflight = img->inflight;
    pthread_mutex_unlock(&img->lock);
    if (inflight >= img->max_requests)
      return b;
    if (block_cache_contains(img->cache, img, (uint32_t) b))
      continue;
    if (img->staging && staging_has_block(img->staging, b))
      continue;                         /* written locally: never fetched again */
    if (index_lookup(img, b, NULL, 0, &err) != 1)
      continue;                         /* a hole, or the listing failed */
    if (block_cache_get(img->cache, img, (uint32_t) b, &e, &st) < 0)
      return b;
    if (st == BLOCK_FETCH)
      start_fetch(img, e, b, true);
    block_cache_release(e);             /* the fetch keeps its own reference */
  }
  return first + n;
}

/* Whoever opens an image next reads block 0 (blkid, fdisk, mount, dd), then
 * the metadata at the head of the volume - a GPT and the first partition at
 * 1 MiB, ext4's group descriptors and first inode table within 5 MiB, XFS's
 * AG 0 headers - each a dependent round trip when fetched on demand (the
 * ext4 mount of the first-file benchmark: two).  So the head is queued once
 * per image: by main() as soon as the image is open, which overlaps the
 * fetch with mounting and losetup, or else by the first read of block 0. */
void
image_prefetch_head(struct image *img)
{
  /* One atomic test-and-set: later reads of block 0 take no lock here. */
  if (__atomic_exchange_n(&img->head_prefetched, true, __ATOMIC_RELAXED))
    return;
  (void) prefetch(img, 0, HEAD_PREFETCH_BLOCKS);
  /* The filesystem's own metadata, once the head is in: layout_prefetch.h. */
  if (img->fs_prefetch && img->index)
    __atomic_store_n(&img->layout, layout_prefetch_start(img), __ATOMIC_RELEASE);
}

/* ---- the contract ------------------------------------------------------------ */

int
image_open(const char *snapshot_id, const struct image_options *opts,
           struct image **out, struct ebs_error *err)
{
  struct ebs_block_page probe;
  struct block_lister lister;
  struct first_listing *first;
  struct image *img;
  uint64_t budget_blocks;
  int rc;

  *out = NULL;
  memset(err, 0, sizeof *err);
  if (!ebs_valid_snapshot_id(snapshot_id)) {
    err->errnum = EINVAL;
    snprintf(err->message, sizeof err->message, "not a snapshot ID: %s", snapshot_id);
    return -EINVAL;
  }
  if (opts == NULL || opts->client == NULL || opts->cache == NULL) {
    err->errnum = EINVAL;
    snprintf(err->message, sizeof err->message, "image_open: no client or cache");
    return -EINVAL;
  }

  /* The first page of the index: the snapshot exists, is completed and
   * readable by us, and how large it is.  Its blocks answer the first reads
   * (every loop mount and dd starts by reading block 0, so they would be
   * listed next anyway: this saves that read a round trip).  It is a short
   * page, quick to build, carry and parse; grain 0's long one is listed at
   * the same moment on a thread (first_listing.h).  The rest of the index is
   * listed only as reads need it. */
  first = first_listing_start(opts->client, snapshot_id);
  memset(&probe, 0, sizeof probe);
  rc = ebs_list_snapshot_blocks(opts->client, snapshot_id, NULL, 0,
                                first ? PROBE_RESULTS : (int) BLOCK_INDEX_GRAIN, &probe, err);
  if (rc != 0) {
    first_listing_end(first);
    if (rc > 0) rc = -rc;
    if (err->errnum == 0)
      err->errnum = -rc;
    return rc;
  }
  if (probe.block_size != EBS_BLOCK_SIZE || probe.volume_size_gib < 1 ||
      probe.volume_size_gib > (INT64_C(1) << 24)) {
    first_listing_end(first);
    err->errnum = EIO;
    snprintf(err->message, sizeof err->message,
             "%s: unexpected BlockSize %u / VolumeSize %lld", snapshot_id,
             probe.block_size, (long long) probe.volume_size_gib);
    ebs_block_page_free(&probe);
    return -EIO;
  }

  img = calloc(1, sizeof *img);
  if (img == NULL) {
    first_listing_end(first);
    ebs_block_page_free(&probe);
    err->errnum = ENOMEM;
    return -ENOMEM;
  }
  snprintf(img->snapshot_id, sizeof img->snapshot_id, "%s", snapshot_id);
  img->client = opts->client;
  img->cache = opts->cache;
  img->size = (uint64_t) probe.volume_size_gib << 30;
  img->nblocks = img->size / EBS_BLOCK_SIZE;
  img->fs_prefetch = opts->fs_prefetch;
  img->max_requests = opts->max_requests ? opts->max_requests : DEFAULT_MAX_REQUESTS;
  img->readahead_max = opts->readahead_max_blocks ? opts->readahead_max_blocks
                                                  : READAHEAD_DEFAULT_MAX_BLOCKS;
  /* Prefetched-but-unread data must not push out what readers still use. */
  budget_blocks = block_cache_budget(img->cache) / EBS_BLOCK_SIZE / 4;
  if (budget_blocks < 1)
    budget_blocks = 1;
  if (img->readahead_max > budget_blocks)
    img->readahead_max = (unsigned) budget_blocks;

  lister.list = list_page;
  lister.free_page = free_page;
  lister.now = NULL;
  lister.arg = img;
  img->index = block_index_new(&lister, img->nblocks);
  if (img->index == NULL || pthread_mutex_init(&img->lock, NULL) != 0) {
    first_listing_end(first);
    block_index_free(img->index);
    ebs_block_page_free(&probe);
    free(img);
    err->errnum = ENOMEM;
    return -ENOMEM;
  }
  pthread_cond_init(&img->idle, NULL);
  {
    struct ebs_error perr;
    int pr;

    /* A failure lands here when the page was bad, or (without the thread)
     * listing the rest of grain 0 failed; grain 0 is then listed again when
     * a read needs it. */
    pr = first ? block_index_preload_head(img->index, &probe, &perr)
               : block_index_preload(img->index, &probe, &perr);
    if (pr < 0) {
      char msg[800];
      log_warn("%s: listing the first blocks: %s", img->snapshot_id,
               ebs_error_string(&perr, msg, sizeof msg));
    }
    first_listing_attach(first, img->index, pr == 1);
    img->first = first;
  }
  log_debug(LOG_SUB_INDEX, "%s: %llu bytes, %llu blocks", img->snapshot_id,
            (unsigned long long) img->size, (unsigned long long) img->nblocks);
  *out = img;
  return 0;
}

void
image_cancel(struct image *img)
{
  pthread_mutex_lock(&img->lock);
  img->closing = true;
  while (img->submitting > 0)
    pthread_cond_wait(&img->idle, &img->lock);
  pthread_mutex_unlock(&img->lock);
  ebs_cancel_snapshot(img->client, img->snapshot_id);
}

void
image_close(struct image *img)
{
  if (img == NULL)
    return;
  /* Nobody will read what is still queued or on the wire (the readers are
   * gone): cancel it rather than wait for it, which could take a stalled
   * server's timeouts times every queued prefetch. */
  image_cancel(img);
  layout_prefetch_stop(img->layout);    /* its thread reads through img */
  first_listing_end(img->first);        /* its thread writes the index */
  /* Completions of cancelled requests may still be running; they touch img. */
  pthread_mutex_lock(&img->lock);
  while (img->inflight > 0)
    pthread_cond_wait(&img->idle, &img->lock);
  pthread_mutex_unlock(&img->lock);
  block_cache_drop_owner(img->cache, img);
  block_index_free(img->index);
  pthread_cond_destroy(&img->idle);
  pthread_mutex_destroy(&img->lock);
  free(img);
}

uint64_t
image_size(const struct image *img)
{
  return img->size;
}

const char *
image_snapshot_id(const struct image *img)
{
  return img->snapshot_id;
}

bool
image_writable(const struct image *img)
{
  return img->staging != NULL;
}

struct image_reader *
image_reader_new(struct image *img)
{
  struct image_reader *r = calloc(1, sizeof *r);

  if (r == NULL)
    return NULL;
  r->img = img;
  if (pthread_mutex_init(&r->lock, NULL) != 0) {
    free(r);
    return NULL;
  }
  readahead_init(&r->ra, img->readahead_max);
  return r;
}

void
image_reader_free(struct image_reader *r)
{
  if (r == NULL)
    return;
  pthread_mutex_destroy(&r->lock);
  free(r);
}

ssize_t
image_read(struct image_reader *r, uint64_t off, size_t len, struct image_read *rd)
{
  struct image *img = r->img;
  struct cache_entry *ent[IMAGE_READ_MAX_SEGS];
  struct layout_prefetch *lp;
  bool listed[IMAGE_READ_MAX_SEGS], staged[IMAGE_READ_MAX_SEGS];
  uint64_t first, last, ra_first = 0, stream_start, b;
  unsigned nra, i, n;
  struct ebs_error err;
  bool stream;
  size_t done;
  int rc = 0;

  rd->nseg = 0;
  rd->nref_ = 0;
  for (i = 0; i < IMAGE_READ_MAX_SEGS; i++) {
    ent[i] = NULL;
    listed[i] = false;
    staged[i] = false;
  }
  if (off >= img->size || len == 0)
    return 0;
  if (len > img->size - off)
    len = (size_t) (img->size - off);
  /* At most IMAGE_READ_MAX_SEGS blocks per reply; FUSE's max_read is below. */
  first = off / EBS_BLOCK_SIZE;
  if ((off + len - 1) / EBS_BLOCK_SIZE >= first + IMAGE_READ_MAX_SEGS)
    len = (size_t) ((first + IMAGE_READ_MAX_SEGS) * EBS_BLOCK_SIZE - off);
  last = (off + len - 1) / EBS_BLOCK_SIZE;
  n = (unsigned) (last - first + 1);

  /* Blocks written locally are answered from the staging file. */
  if (img->staging)
    for (i = 0; i < n; i++)
      staged[i] = staging_has_block(img->staging, first + i);

  pthread_mutex_lock(&r->lock);
  nra = readahead_on_read(&r->ra, off, len, img->nblocks, &ra_first);
  stream = r->ra.window > 0;
  stream_start = r->ra.stream_start;
  pthread_mutex_unlock(&r->lock);

  /* Start every missing block of this read before waiting for any. */
  for (i = 0; i < n; i++) {
    enum block_state st;

    b = first + i;
    if (staged[i])
      continue;
    rc = index_lookup(img, b, NULL, 0, &err);
    if (rc < 0)
      break;
    listed[i] = rc == 1;
    rc = 0;
    if (!listed[i])
      continue;
    rc = block_cache_get(img->cache, img, (uint32_t) b, &ent[i], &st);
    if (rc < 0)
      break;
    if (st == BLOCK_FETCH)
      start_fetch(img, ent[i], b, false);
    else if (st == BLOCK_PENDING)         /* a prefetch, maybe not sent yet: first now */
      ebs_promote_block(img->client, img->snapshot_id, (uint32_t) b);
  }
  lp = __atomic_load_n(&img->layout, __ATOMIC_ACQUIRE);
  if (rc == 0 && nra) {
    /* A stream through a file read from its start stops at the file's end
     * (layout_prefetch.h); nothing past it is that reader's. */
    unsigned take = lp ? layout_prefetch_clip(lp, off, stream_start, ra_first, nra) : nra;
    uint64_t stopped = take ? prefetch(img, ra_first, take) : ra_first;

    /* At max_requests in flight, or clipped: the rest of the window is
     * offered again by the next read.  Marked as handed out, it would only
     * be fetched when the reader reached it, one stalled round trip per
     * block (a dd at 50 ms: 60-68 such blocks in 2 GiB, 384-396 vs
     * 416 MiB/s without). */
    if (stopped < ra_first + nra) {
      pthread_mutex_lock(&r->lock);
      readahead_unqueue(&r->ra, stopped);
      pthread_mutex_unlock(&r->lock);
    }
  }
  if (rc == 0 && first == 0)
    image_prefetch_head(img);
  if (rc == 0 && lp)
    layout_prefetch_on_read(lp, off, len);

  for (i = 0; rc == 0 && i < n; i++) {
    if (!listed[i])
      continue;
    rc = block_cache_wait(ent[i]);
    if (rc == STALE_TOKEN) {            /* re-listed: fetch once more */
      block_cache_release(ent[i]);
      ent[i] = NULL;
      rc = get_block(img, first + i, &ent[i]);
    }
  }
  if (rc < 0) {
    for (i = 0; i < n; i++)
      if (ent[i])
        block_cache_release(ent[i]);
    if (rc == STALE_TOKEN)
      rc = -EIO;
    return rc;
  }

  done = 0;
  pthread_mutex_lock(&img->lock);
  img->st.reads++;
  for (i = 0; i < n; i++)
    if (!listed[i] && !staged[i])
      img->st.zero_blocks++;
  pthread_mutex_unlock(&img->lock);
  for (i = 0; i < n; i++) {
    size_t skip = i == 0 ? (size_t) (off % EBS_BLOCK_SIZE) : 0;
    size_t take = EBS_BLOCK_SIZE - skip;
    struct image_seg *s = &rd->seg[rd->nseg++];

    if (take > len - done)
      take = len - done;
    if (staged[i]) {
      off_t boff = 0;
      int fd = staging_block_fd(img->staging, first + i, &boff);

      if (fd < 0) {                     /* cannot happen: staged means written */
        rd->nseg--;
        for (unsigned k = 0; k < n; k++)
          if (ent[k])
            block_cache_release(ent[k]);
        rd->nref_ = 0;
        rd->nseg = 0;
        return fd;
      }
      s->mem = NULL;
      s->fd = fd;
      s->fd_offset = boff + (off_t) skip;
      s->len = take;
      done += take;
      continue;
    }
    s->mem = (const char *) (listed[i] ? block_cache_data(ent[i])
                                       : block_cache_zero_block(img->cache)) + skip;
    s->fd = -1;
    s->fd_offset = 0;
    s->len = take;
    if (ent[i]) {
      /* A stream that read this block to its end will not come back for it:
       * drop-behind (block_cache.h). */
      if (stream && skip + take == EBS_BLOCK_SIZE)
        block_cache_mark_consumed(ent[i]);
      rd->ref_[rd->nref_++] = ent[i];
    }
    done += take;
  }
  return (ssize_t) done;
}

void
image_read_release(struct image_read *rd)
{
  size_t i;

  for (i = 0; i < rd->nref_; i++)
    block_cache_release(rd->ref_[i]);
  rd->nref_ = 0;
  rd->nseg = 0;
}

/* First listed-or-staged block >= from (nblocks when none), or -errno. */
static int64_t
next_data(struct image *img, uint64_t from, struct ebs_error *err)
{
  int64_t b = (int64_t) img->nblocks;

  if (img->index) {
    b = block_index_next_data(img->index, from, err);
    if (b < 0)
      return b;
  }
  if (img->staging) {
    uint64_t s = staging_next_staged(img->staging, from);
    if ((int64_t) s < b)
      b = (int64_t) s;
  }
  return b;
}

/* First block >= from that is neither listed nor staged, or -errno. */
static int64_t
next_hole(struct image *img, uint64_t from, struct ebs_error *err)
{
  uint64_t b = from;

  while (b < img->nblocks) {
    int64_t h = (int64_t) b;

    if (img->index) {
      h = block_index_next_hole(img->index, b, err);
      if (h < 0)
        return h;
    }
    if ((uint64_t) h >= img->nblocks || !img->staging ||
        !staging_has_block(img->staging, (uint64_t) h))
      return h;
    b = (uint64_t) h + 1;               /* a hole in the source, written here */
  }
  return (int64_t) img->nblocks;
}

off_t
image_seek(struct image *img, off_t off, int whence)
{
  struct ebs_error err;
  int64_t b;

  if (off < 0)
    return -EINVAL;
  if ((uint64_t) off >= img->size)
    return -ENXIO;
  if (whence == SEEK_DATA) {
    b = next_data(img, (uint64_t) off / EBS_BLOCK_SIZE, &err);
    if (b < 0)
      return b;
    if ((uint64_t) b >= img->nblocks)
      return -ENXIO;
  } else if (whence == SEEK_HOLE) {
    b = next_hole(img, (uint64_t) off / EBS_BLOCK_SIZE, &err);
    if (b < 0)
      return b;
    if ((uint64_t) b >= img->nblocks)
      return (off_t) img->size;
  } else {
    return -EINVAL;
  }
  if ((uint64_t) b * EBS_BLOCK_SIZE < (uint64_t) off)
    return off;
  return (off_t) ((uint64_t) b * EBS_BLOCK_SIZE);
}

/* ---- copies through the cache: the layout parser, the write path ---------------- */

/* Copy [skip, skip+len) of a block not staged into buf: the source's data
 * (through the cache, shared with readers) or zeros. */
static int
copy_base(struct image *img, uint64_t block, size_t skip, void *buf, size_t len)
{
  struct cache_entry *e;
  struct ebs_error err;
  int rc = index_lookup(img, block, NULL, 0, &err);

  if (rc < 0)
    return rc;
  if (rc == 0) {
    memset(buf, 0, len);
    return 0;
  }
  rc = get_block(img, block, &e);
  if (rc < 0)
    return rc == STALE_TOKEN ? -EIO : rc;
  memcpy(buf, (const char *) block_cache_data(e) + skip, len);
  block_cache_release(e);
  return 0;
}

int
image_pread(struct image *img, void *buf, size_t len, uint64_t off)
{
  char *p = buf;

  if (off > img->size || len > img->size - off)
    return -EINVAL;
  while (len > 0) {
    uint64_t block = off / EBS_BLOCK_SIZE;
    size_t skip = (size_t) (off % EBS_BLOCK_SIZE);
    size_t take = EBS_BLOCK_SIZE - skip < len ? EBS_BLOCK_SIZE - skip : len;
    int rc;

    if (img->staging && staging_has_block(img->staging, block)) {
      off_t boff = 0;
      int fd = staging_block_fd(img->staging, block, &boff);
      ssize_t n;

      if (fd < 0)
        return fd;
      n = pread(fd, p, take, boff + (off_t) skip);
      if (n < 0)
        return -errno;
      rc = (size_t) n == take ? 0 : -EIO;
    } else {
      rc = copy_base(img, block, skip, p, take);
    }
    if (rc < 0)
      return rc;
    p += take;
    off += take;
    len -= take;
  }
  return 0;
}

uint64_t
image_prefetch_ahead_bytes(const struct image *img)
{
  return (uint64_t) img->readahead_max * EBS_BLOCK_SIZE;
}

void
image_prefetch_range(struct image *img, uint64_t off, uint64_t len)
{
  uint64_t first, last;

  if (off >= img->size || len == 0)
    return;
  if (len > img->size - off)
    len = img->size - off;
  first = off / EBS_BLOCK_SIZE;
  last = (off + len - 1) / EBS_BLOCK_SIZE;
  if (last - first >= UINT_MAX)
    last = first + UINT_MAX - 1;
  (void) prefetch(img, first, (unsigned) (last - first + 1));
}

/* ---- the write path (-o rw) ---------------------------------------------------- */

/* One block's part of a write. */
static int
write_block(struct image *img, uint64_t block, size_t skip, const char *buf,
            size_t len, char **scratch)
{
  int rc = staging_begin_block(img->staging, block);

  if (rc < 0)
    return rc;
  if (rc == 0)
    return staging_write(img->staging, block, skip, buf, len);
  /* We bring the block in; other writers of it wait for us. */
  if (len == EBS_BLOCK_SIZE)
    return staging_fill_block(img->staging, block, buf);
  if (*scratch == NULL && (*scratch = malloc(EBS_BLOCK_SIZE)) == NULL) {
    staging_abort_block(img->staging, block);
    return -ENOMEM;
  }
  rc = copy_base(img, block, 0, *scratch, EBS_BLOCK_SIZE);
  if (rc < 0) {
    staging_abort_block(img->staging, block);
    log_warn("%s: block %llu: cannot read the base of a partial write: %s",
             img->snapshot_id, (unsigned long long) block, strerror(-rc));
    return rc;
  }
  memcpy(*scratch + skip, buf, len);
  return staging_fill_block(img->staging, block, *scratch);
}

ssize_t
image_write(struct image *img, const void *buf, size_t len, uint64_t off)
{
  char *scratch = NULL;
  size_t done = 0;
  int rc = 0;

  if (img->staging == NULL)
    return -EROFS;
  if (off >= img->size)
    return len == 0 ? 0 : -ENOSPC;      /* a volume cannot grow */
  if (len > img->size - off)
    len = (size_t) (img->size - off);
  staging_writers_enter(img->staging);
  while (done < len) {
    uint64_t pos = off + done;
    uint64_t block = pos / EBS_BLOCK_SIZE;
    size_t skip = (size_t) (pos % EBS_BLOCK_SIZE);
    size_t take = EBS_BLOCK_SIZE - skip;

    if (take > len - done)
      take = len - done;
    rc = write_block(img, block, skip, (const char *) buf + done, take, &scratch);
    if (rc < 0)
      break;
    done += take;
  }
  staging_writers_leave(img->staging);
  free(scratch);
  /* Blocks already staged stay written; report them, as write(2) does. */
  if (rc < 0 && done == 0)
    return rc;
  return (ssize_t) done;
}

int
image_fsync(struct image *img, bool datasync)
{
  (void) datasync;                      /* the journal is metadata we need either way */
  if (img->staging == NULL)
    return -EROFS;
  return staging_sync(img->staging);
}

void
image_attach_staging(struct image *img, struct staging *staging)
{
  img->staging = staging;
}

struct staging *
image_staging(const struct image *img)
{
  return img->staging;
}

int
image_new_volume(const char *name, uint64_t size, const struct image_options *opts,
                 struct image **out, struct ebs_error *err)
{
  struct image *img;

  *out = NULL;
  memset(err, 0, sizeof *err);
  if (size == 0 || size % EBS_BLOCK_SIZE || opts == NULL || opts->cache == NULL) {
    err->errnum = EINVAL;
    snprintf(err->message, sizeof err->message,
             "a new volume needs a size that is a multiple of 512 KiB");
    return -EINVAL;
  }
  img = calloc(1, sizeof *img);
  if (img == NULL || pthread_mutex_init(&img->lock, NULL) != 0) {
    free(img);
    err->errnum = ENOMEM;
    return -ENOMEM;
  }
  pthread_cond_init(&img->idle, NULL);
  snprintf(img->snapshot_id, sizeof img->snapshot_id, "%s", name);
  img->client = opts->client;
  img->cache = opts->cache;
  img->size = size;
  img->nblocks = size / EBS_BLOCK_SIZE;
  img->max_requests = opts->max_requests ? opts->max_requests : DEFAULT_MAX_REQUESTS;
  img->readahead_max = 1;               /* nothing to fetch ahead */
  *out = img;
  return 0;
}

void
image_get_stats(struct image *img, struct image_stats *out)
{
  struct block_index_stats is;

  pthread_mutex_lock(&img->lock);
  *out = img->st;
  out->inflight = img->inflight;
  pthread_mutex_unlock(&img->lock);
  if (img->index == NULL) {
    out->index_listed_blocks = out->index_memory_bytes = out->index_list_calls = 0;
    return;
  }
  block_index_get_stats(img->index, &is);
  out->index_listed_blocks = is.listed_blocks;
  out->index_memory_bytes = is.memory_bytes;
  out->index_list_calls = is.list_calls;
}
