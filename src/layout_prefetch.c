/* layout_prefetch.c - filesystem-aware prefetch for one image
 * (layout_prefetch.h).
 *
 * The parse runs on its own thread so that neither the mount nor a reader
 * ever waits for it: it reads through image_pread(), i.e. through the block
 * cache, and the blocks it needs are the head's, already queued.  The result
 * is published once with a release store; readers look at it without a lock
 * (a binary search over the files sorted by their first byte) and claim a
 * file with one atomic exchange, so each file's data is queued at most once.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"
#include "image.h"
#include "kernel_readahead.h"
#include "layout_prefetch.h"
#include "log.h"
#include "volume_layout.h"

#define FILE_START_SLACK 4096u          /* reads are page-aligned; ext4 blocks may be 1K */
/* The kernel reads ahead this far past what the filesystem asked for: FUSE's
 * max_readahead and the bdi's read_ahead_kb, both set from this one value. */
#define KERNEL_OVERSHOOT (KERNEL_READAHEAD_KB * 1024u)

struct layout_prefetch {
  struct image *img;
  pthread_t thread;
  bool stopping;                        /* atomic: image closing, stop reading */
  int done;                             /* atomic: 0 parsing, 1 ready, -errno */
  struct volume_layout layout;          /* read-only once done == 1 */
  unsigned char *claimed;               /* atomic, one per file: data queued */
  uint64_t meta_bytes;                  /* for the log */
};

static int
read_image(void *ctx, uint64_t off, void *buf, size_t len)
{
  struct layout_prefetch *lp = ctx;

  if (__atomic_load_n(&lp->stopping, __ATOMIC_RELAXED))
    return -ECANCELED;
  return image_pread(lp->img, buf, len, off);
}

static void *
parse(void *arg)
{
  struct layout_prefetch *lp = arg;
  struct volume_layout *l = &lp->layout;
  const char *id = image_snapshot_id(lp->img);
  size_t i;
  int rc;

  rc = volume_layout_scan(read_image, lp, image_size(lp->img), NULL, l);
  if (rc == 0 && l->nfiles > 0 && (lp->claimed = calloc(l->nfiles, 1)) == NULL)
    rc = -ENOMEM;
  if (rc < 0) {
    /* A failed read was already reported by the fetch that failed. */
    if (rc == -ENOMEM)
      log_warn("%s: no filesystem-aware prefetch: %s", id, strerror(-rc));
    else
      log_debug(LOG_SUB_READAHEAD, "%s: no filesystem-aware prefetch: %s", id, strerror(-rc));
    volume_layout_free(l);
    __atomic_store_n(&lp->done, rc, __ATOMIC_RELEASE);
    return NULL;
  }
  for (i = 0; i < l->nmeta; i++) {
    image_prefetch_range(lp->img, l->meta[i].off, l->meta[i].len);
    lp->meta_bytes += l->meta[i].len;
  }
  log_debug(LOG_SUB_READAHEAD, "%s: layout: %u ext4 filesystem(s), %llu inodes read, "
            "%zu directory ranges (%llu bytes) queued, %zu large files known", id,
            l->nfilesystems, (unsigned long long) l->inodes_scanned, l->nmeta,
            (unsigned long long) lp->meta_bytes, l->nfiles);
  __atomic_store_n(&lp->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

struct layout_prefetch *
layout_prefetch_start(struct image *img)
{
  struct layout_prefetch *lp = calloc(1, sizeof *lp);
  int rc;

  if (lp == NULL) {
    log_warn("%s: no filesystem-aware prefetch: out of memory", image_snapshot_id(img));
    return NULL;
  }
  lp->img = img;
  rc = pthread_create(&lp->thread, NULL, parse, lp);
  if (rc != 0) {
    log_warn("%s: no filesystem-aware prefetch: cannot start a thread: %s",
             image_snapshot_id(img), strerror(rc));
    free(lp);
    return NULL;
  }
  return lp;
}

/* Index of the first file whose data starts at or after off. */
static size_t
first_at_or_after(const struct volume_layout *l, uint64_t off)
{
  size_t lo = 0, hi = l->nfiles;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (l->files[mid].start < off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void
layout_prefetch_on_read(struct layout_prefetch *lp, uint64_t off, size_t len)
{
  const struct volume_layout *l = &lp->layout;
  size_t i, r;

  if (__atomic_load_n(&lp->done, __ATOMIC_ACQUIRE) != 1)
    return;
  /* Only a read that begins at the file's first page: that is how a file
   * read from its start reaches us.  A read merely running over it (the
   * kernel's readahead past the end of the previous file) does not. */
  for (i = first_at_or_after(l, off); i < l->nfiles && l->files[i].start - off < FILE_START_SLACK &&
               l->files[i].start - off < len; i++) {
    const struct layout_file *f = &l->files[i];
    const struct layout_range *last = &l->ranges[f->first_range + f->nranges - 1];

    if (__atomic_exchange_n(&lp->claimed[i], 1, __ATOMIC_RELAXED))
      continue;
    log_debug(LOG_SUB_READAHEAD, "%s: first read of the file at %llu: queuing %u extent(s)",
              image_snapshot_id(lp->img), (unsigned long long) f->start, f->nranges);
    for (r = 0; r < f->nranges; r++)
      image_prefetch_range(lp->img, l->ranges[f->first_range + r].off,
                           l->ranges[f->first_range + r].len);
    /* The kernel's readahead of the image reads past the file's last page
     * (up to FUSE's max_readahead), and that read waits for its whole
     * range: without this, the file's tail waited one more round trip. */
    image_prefetch_range(lp->img, last->off + last->len, KERNEL_OVERSHOOT);
  }
}

unsigned
layout_prefetch_clip(struct layout_prefetch *lp, uint64_t off, uint64_t stream_start,
                     uint64_t ra_first, unsigned nra)
{
  const struct volume_layout *l = &lp->layout;
  const struct layout_file *f;
  uint64_t limit;
  size_t i, r;

  if (__atomic_load_n(&lp->done, __ATOMIC_ACQUIRE) != 1)
    return nra;
  /* The file the stream began in: the last one starting at or before that
   * point, if the point lies in its data.  A stream that began before the
   * file (dd of the volume) or has run on past its end and the kernel's
   * overshoot (a loop device reading file after file) is not clipped. */
  i = first_at_or_after(l, stream_start + 1);
  if (i == 0)
    return nra;
  f = &l->files[i - 1];
  if (f->end == 0 || off >= f->end + KERNEL_OVERSHOOT ||
      !__atomic_load_n(&lp->claimed[i - 1], __ATOMIC_RELAXED))
    return nra;
  for (r = 0; r < f->nranges; r++) {
    const struct layout_range *rg = &l->ranges[f->first_range + r];

    if (stream_start >= rg->off && stream_start - rg->off < rg->len)
      break;
  }
  if (r == f->nranges)
    return nra;
  limit = (f->end + KERNEL_OVERSHOOT + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE;
  if (ra_first >= limit)
    return 0;
  return limit - ra_first < nra ? (unsigned) (limit - ra_first) : nra;
}

void
layout_prefetch_stop(struct layout_prefetch *lp)
{
  int rc;

  if (lp == NULL)
    return;
  __atomic_store_n(&lp->stopping, true, __ATOMIC_RELAXED);
  rc = pthread_join(lp->thread, NULL);
  if (rc != 0)                          /* cannot happen: we started it, once */
    log_warn("%s: layout thread: %s", image_snapshot_id(lp->img), strerror(rc));
  volume_layout_free(&lp->layout);
  free(lp->claimed);
  free(lp);
}
