/* readahead.c - the sequential window of one open file (readahead.h). */
#include <config.h>

#include "ebs.h"
#include "readahead.h"

void
readahead_init(struct readahead *ra, unsigned max_blocks)
{
  ra->next_off = 0;             /* a first read at 0 starts a stream */
  ra->prefetched_end = 0;
  ra->window = 0;
  ra->max_window = max_blocks ? max_blocks : READAHEAD_DEFAULT_MAX_BLOCKS;
}

unsigned
readahead_on_read(struct readahead *ra, uint64_t off, size_t len,
                  uint64_t nblocks, uint64_t *first)
{
  uint64_t last_block, start, end;
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
    ra->prefetched_end = 0;
    return 0;
  }
  if (ra->window == 0)
    ra->window = READAHEAD_INITIAL_BLOCKS < ra->max_window
                 ? READAHEAD_INITIAL_BLOCKS : ra->max_window;
  else if (ra->window < ra->max_window)
    ra->window = ra->window * 2 < ra->max_window ? ra->window * 2 : ra->max_window;

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
