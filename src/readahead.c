/* readahead.c - the sequential window of one open file (readahead.h). */
#include <config.h>

#include "ebs.h"
#include "readahead.h"

void
readahead_init(struct readahead *ra, unsigned max_blocks)
{
  ra->next_off = 0;             /* a first read at 0 starts a stream */
  ra->stream_bytes = 0;
  ra->stream_start = 0;
  ra->prefetched_end = 0;
  ra->window = 0;
  ra->max_window = max_blocks ? max_blocks : READAHEAD_DEFAULT_MAX_BLOCKS;
}

/* The first window of a stream.  A reader that asks for whole blocks at a
 * time (dd bs=1M, cp, the kernel's own 1 MiB readahead under a loop mount)
 * is streaming: start at 4x its request, as Linux does for small requests,
 * so that a file of a few MiB read through a loop mount needs two round
 * trips rather than four.  Sub-block reads (filesystem metadata, which
 * often looks sequential by chance) start at READAHEAD_INITIAL_BLOCKS. */
static unsigned
initial_window(size_t len, unsigned max_window)
{
  uint64_t w = (uint64_t) (len / EBS_BLOCK_SIZE) * 4;

  if (w < READAHEAD_INITIAL_BLOCKS)
    w = READAHEAD_INITIAL_BLOCKS;
  return w < max_window ? (unsigned) w : max_window;
}

unsigned
readahead_on_read(struct readahead *ra, uint64_t off, size_t len,
                  uint64_t nblocks, uint64_t *first)
{
  uint64_t last_block, start, end, limit;
  /* A forward skip within the current window (or one block when none) is
   * still the same stream: the kernel's own readahead reorders a little. */
  uint64_t slack = (uint64_t) (ra->window ? ra->window : 1) * EBS_BLOCK_SIZE;
  int sequential = off >= ra->next_off && off - ra->next_off <= slack;

  *first = 0;
  if (len == 0)
    return 0;
  ra->next_off = off + len;
  if (!sequential) {
    ra->window = 0;
    ra->stream_bytes = 0;
    ra->stream_start = off;
    ra->prefetched_end = 0;
    /* A read of whole blocks elsewhere starts a tentative stream at once:
     * it is the kernel's readahead of a file read through a loop mount, or
     * a reader with large requests.  Sub-block reads must prove it first. */
    if (len < EBS_BLOCK_SIZE)
      return 0;
    ra->window = READAHEAD_INITIAL_BLOCKS < ra->max_window
                 ? READAHEAD_INITIAL_BLOCKS : ra->max_window;
    ra->stream_bytes = len;
  } else if (ra->window == 0) {
    ra->window = initial_window(len, ra->max_window);
    ra->stream_bytes = len;
  } else {
    ra->stream_bytes += len;
    if (ra->window < ra->max_window) {
      /* Doubling per read ramps up in a few reads; the limit keeps the data
       * fetched past the end of a short stream to about twice what it read
       * (on a 2-core test host those extra requests delay the needed ones). */
      limit = 2 * ((ra->stream_bytes + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
      end = (uint64_t) ra->window * 2;
      if (end > limit)
        end = limit;
      if (end > ra->max_window)
        end = ra->max_window;
      if (end > ra->window)
        ra->window = (unsigned) end;
    }
  }

  last_block = (off + len - 1) / EBS_BLOCK_SIZE;
  start = last_block + 1;
  if (start < ra->prefetched_end)
    start = ra->prefetched_end;
  end = last_block + 1 + ra->window;
  if (end > nblocks)
    end = nblocks;
  if (start >= end)
    return 0;
  ra->prefetched_end = end;
  *first = start;
  return (unsigned) (end - start);
}

void
readahead_unqueue(struct readahead *ra, uint64_t from)
{
  if (from < ra->prefetched_end)
    ra->prefetched_end = from;
}
