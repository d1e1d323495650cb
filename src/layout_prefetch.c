/* layout_prefetch.c - filesystem-aware prefetch for one image
 * (layout_prefetch.h).
 *
 * The parse runs on its own thread so that neither the mount nor a reader
 * ever waits for it: it reads through image_pread(), i.e. through the block
 * cache.  The superblock and descriptors are in the head, already queued;
 * the inode tables it then reads it first names (hint_image), so that they
 * come in together rather than one group's round trip at a time, and each
 * directory is queued as soon as its inode is parsed.  The result
 * is published once with a release store; readers look at it without a lock
 * (a binary search over the files sorted by their first byte) and claim a
 * file with one atomic exchange, so each file's data is queued at most once.
 *
 * Small files: copying a tree (cp -r, tar, rsync) reads one small file after
 * another, each a round trip when its block is not in yet, and no stream
 * forms for readahead to follow.  So once reads begin in the data of two
 * small files in different blocks near each other - a copy under way, not
 * one file looked at - the blocks holding small files' data around the
 * second are queued at once, and with them the next few blocks of small
 * files past the window (the directories a copy reads next).  While a copy
 * goes on (a window was set off in the last few seconds), the first read in
 * another place is enough: a directory the copy takes out of order comes in
 * the round trip of its first file.
 * Per block, atomic flags say it was read, queued, or already set off a
 * window, so each is queued at most once.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"
#include "http.h"
#include "image.h"
#include "kernel_readahead.h"
#include "layout_prefetch.h"
#include "log.h"
#include "volume_layout.h"

#define FILE_START_SLACK 4096u          /* reads are page-aligned; ext4 blocks may be 1K */
/* The kernel reads ahead this far past what the filesystem asked for: FUSE's
 * max_readahead and the bdi's read_ahead_kb, both set from this one value. */
#define KERNEL_OVERSHOOT (KERNEL_READAHEAD_KB * 1024u)
/* Blocks holding small files' data this far either side of a read are one
 * window (ext4 puts a directory's files in its block group, 128 MiB): 33
 * blocks, 16.5 MiB at most, against a default cache of 256 MiB. */
#define SMALL_WINDOW_BLOCKS 16u
/* How long after a window the copy counts as going on.  Between two
 * directories a copy may spend a while on a large file. */
#define SMALL_COPY_MS 5000u
/* A window also queues this many of the next blocks holding small files past
 * it, however far: a copy goes on to the next directory, and trees written
 * by a copy (cp -r, tar, mkfs -d) lie on disk in the order a copy reads
 * them back.  8 MiB: the next directory's files come with the window, not
 * one round trip after the copy reaches them. */
#define SMALL_AHEAD_BLOCKS 16u

enum { SMALL_READ = 1, SMALL_QUEUED = 2, SMALL_WINDOW = 4 };

struct layout_prefetch {
  struct image *img;
  pthread_t thread;
  bool stopping;                        /* atomic: image closing, stop reading */
  int done;                             /* atomic: 0 parsing, 1 ready, -errno */
  struct volume_layout layout;          /* read-only once done == 1 */
  unsigned char *claimed;               /* atomic, one per file: data queued */
  uint32_t *small_blocks;               /* blocks holding small files' data, ascending */
  size_t nsmall_blocks;
  unsigned char *small_state;           /* atomic, one per small block: SMALL_* */
  uint64_t last_window_ms;              /* atomic: http_now_ms() of the last window, or 0 */
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

/* The scan is about to read [off, off+len) (an inode table), or found a
 * directory the mount will: fetch it now, rather than a round trip at a
 * time once needed. */
static void
hint_image(void *ctx, uint64_t off, uint64_t len, enum layout_hint what)
{
  struct layout_prefetch *lp = ctx;

  (void) what;
  if (!__atomic_load_n(&lp->stopping, __ATOMIC_RELAXED))
    image_prefetch_range(lp->img, off, len);
}

/* The blocks that hold small files' data, from the layout's sorted ranges
 * (which do not overlap, so their blocks come in order).  0 or -ENOMEM. */
static int
small_blocks(struct layout_prefetch *lp)
{
  const struct volume_layout *l = &lp->layout;
  size_t i, n = 0;

  if (l->nsmall == 0)
    return 0;
  /* At most two blocks per range more than its length's worth. */
  for (i = 0; i < l->nsmall; i++)
    n += (size_t) (l->small[i].len / EBS_BLOCK_SIZE) + 2;
  lp->small_blocks = malloc(n * sizeof *lp->small_blocks);
  if (lp->small_blocks == NULL)
    return -ENOMEM;
  for (i = 0; i < l->nsmall; i++) {
    uint64_t b = l->small[i].off / EBS_BLOCK_SIZE;
    uint64_t last = (l->small[i].off + l->small[i].len - 1) / EBS_BLOCK_SIZE;

    for (; b <= last; b++)
      if (lp->nsmall_blocks == 0 || lp->small_blocks[lp->nsmall_blocks - 1] < b)
        lp->small_blocks[lp->nsmall_blocks++] = (uint32_t) b;
  }
  lp->small_state = calloc(lp->nsmall_blocks, 1);
  return lp->small_state ? 0 : -ENOMEM;
}

static void *
parse(void *arg)
{
  struct layout_prefetch *lp = arg;
  struct volume_layout *l = &lp->layout;
  const char *id = image_snapshot_id(lp->img);
  struct layout_limits lim;
  size_t i;
  int rc;

  volume_layout_default_limits(&lim);
  if (lim.hint_ahead_bytes > image_prefetch_ahead_bytes(lp->img))
    lim.hint_ahead_bytes = image_prefetch_ahead_bytes(lp->img);
  rc = volume_layout_scan_hinted(read_image, hint_image, lp, image_size(lp->img), &lim, l);
  if (rc == 0 && l->nfiles > 0 && (lp->claimed = calloc(l->nfiles, 1)) == NULL)
    rc = -ENOMEM;
  if (rc == 0)
    rc = small_blocks(lp);
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
  /* Queued as they were found (hint_image), unless max_requests were in
   * flight then: offered once more. */
  for (i = 0; i < l->nmeta; i++) {
    image_prefetch_range(lp->img, l->meta[i].off, l->meta[i].len);
    lp->meta_bytes += l->meta[i].len;
  }
  log_debug(LOG_SUB_READAHEAD, "%s: layout: %u ext4 filesystem(s), %llu inodes read, "
            "%zu directory ranges (%llu bytes) queued, %zu large files known, "
            "small files in %zu blocks", id,
            l->nfilesystems, (unsigned long long) l->inodes_scanned, l->nmeta,
            (unsigned long long) lp->meta_bytes, l->nfiles, lp->nsmall_blocks);
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

/* Index of the small file range holding off, or SIZE_MAX. */
static size_t
small_range_at(const struct volume_layout *l, uint64_t off)
{
  size_t lo = 0, hi = l->nsmall;

  while (lo < hi) {                     /* the first range starting after off */
    size_t mid = lo + (hi - lo) / 2;

    if (l->small[mid].off <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0 || off - l->small[lo - 1].off >= l->small[lo - 1].len)
    return SIZE_MAX;
  return lo - 1;
}

/* Index of block b in small_blocks, which holds it. */
static size_t
small_block_index(const struct layout_prefetch *lp, uint64_t b)
{
  size_t lo = 0, hi = lp->nsmall_blocks;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (lp->small_blocks[mid] < b)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static bool
is_small_block(const struct layout_prefetch *lp, uint64_t b)
{
  size_t j = small_block_index(lp, b);

  return j < lp->nsmall_blocks && lp->small_blocks[j] == b;
}

/* A read began in a small file's data, in block b: if another block of the
 * window around it was read before, or a copy is going on, queue the
 * window's small-file blocks. */
static void
small_file_read(struct layout_prefetch *lp, uint64_t b)
{
  const uint32_t *blk = lp->small_blocks;
  uint32_t take[2 * SMALL_WINDOW_BLOCKS + 1 + SMALL_AHEAD_BLOCKS];   /* window, then ahead */
  size_t i = small_block_index(lp, b), lo, hi, ahead, j, n = 0, k, next;
  uint64_t now = http_now_ms(), last = __atomic_load_n(&lp->last_window_ms, __ATOMIC_RELAXED);
  bool other = last != 0 && now - last < SMALL_COPY_MS;

  if (i >= lp->nsmall_blocks || blk[i] != b)
    return;                             /* cannot happen: the ranges' blocks are all in */
  if (__atomic_fetch_or(&lp->small_state[i], SMALL_READ, __ATOMIC_RELAXED) & SMALL_WINDOW)
    return;
  for (lo = i; lo > 0 && b - blk[lo - 1] <= SMALL_WINDOW_BLOCKS; lo--)
    ;
  for (hi = i; hi + 1 < lp->nsmall_blocks && blk[hi + 1] - b <= SMALL_WINDOW_BLOCKS; hi++)
    ;
  for (j = lo; j <= hi && !other; j++)
    other = j != i && (__atomic_load_n(&lp->small_state[j], __ATOMIC_RELAXED) & SMALL_READ);
  if (!other ||
      (__atomic_fetch_or(&lp->small_state[i], SMALL_WINDOW, __ATOMIC_RELAXED) & SMALL_WINDOW))
    return;
  __atomic_store_n(&lp->last_window_ms, now ? now : 1, __ATOMIC_RELAXED);
  ahead = lp->nsmall_blocks - 1 - hi;
  if (ahead > SMALL_AHEAD_BLOCKS)
    ahead = SMALL_AHEAD_BLOCKS;
  for (j = lo; j <= hi + ahead; j++)
    if (!(__atomic_fetch_or(&lp->small_state[j], SMALL_QUEUED, __ATOMIC_RELAXED) & SMALL_QUEUED))
      take[n++] = blk[j];
  /* Consecutive blocks go as one range. */
  for (k = 0; k < n; k = next) {
    for (next = k + 1; next < n && take[next] == take[next - 1] + 1; next++)
      ;
    image_prefetch_range(lp->img, (uint64_t) take[k] * EBS_BLOCK_SIZE,
                         (uint64_t) (take[next - 1] - take[k] + 1) * EBS_BLOCK_SIZE);
  }
  log_debug(LOG_SUB_READAHEAD, "%s: small files read near block %llu: queuing %zu block(s)",
            image_snapshot_id(lp->img), (unsigned long long) b, n);
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
  if (l->nsmall && lp->nsmall_blocks && small_range_at(l, off) != SIZE_MAX)
    small_file_read(lp, off / EBS_BLOCK_SIZE);
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
  /* A stream through small files (a copy reading them in disk order): their
   * blocks are the windows' to queue (small_file_read), and past them lie
   * other files - a copy's next directory's large file, which it may never
   * read.  So the window takes only blocks holding small files' data, up to
   * the first that holds none. */
  if (is_small_block(lp, stream_start / EBS_BLOCK_SIZE) &&
      is_small_block(lp, off / EBS_BLOCK_SIZE)) {
    unsigned k = 0;

    for (size_t j = small_block_index(lp, ra_first);
         k < nra && j < lp->nsmall_blocks && lp->small_blocks[j] == ra_first + k; j++)
      k++;
    return k;
  }
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
  free(lp->small_blocks);
  free(lp->small_state);
  free(lp);
}
