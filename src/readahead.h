/* readahead.h - sequential-stream detection for one open file.
 *
 * Pure bookkeeping, no I/O: image_read() reports each read here and gets back
 * the blocks worth prefetching.  As in mountpoint-s3, the window starts small
 * (2 blocks, or 4x the request for reads of whole blocks) and doubles on
 * every read that continues the stream, up to a cap and never beyond twice
 * what the stream has read so far (a short file read through a loop mount
 * must not set off a 32 MiB prefetch past its end); a small
 * forward skip keeps the stream, a backward or large jump resets it.  Blocks
 * already handed out for prefetch are not handed out again (unless the
 * caller could not queue them: readahead_unqueue), so the unread
 * prefetched data stays bounded by the window.
 */
#ifndef EBSFS_READAHEAD_H
#define EBSFS_READAHEAD_H

#include <stdint.h>
#include <stddef.h>

#define READAHEAD_DEFAULT_MAX_BLOCKS 64u        /* 32 MiB */
#define READAHEAD_INITIAL_BLOCKS 2u             /* for sub-block reads */

struct readahead {
  uint64_t next_off;            /* where the stream would continue */
  uint64_t stream_bytes;        /* read by the stream so far */
  uint64_t stream_start;        /* where the current stream began */
  uint64_t prefetched_end;      /* blocks below this were already handed out */
  unsigned window;              /* blocks ahead of the read; 0: no stream */
  unsigned max_window;
};

void readahead_init(struct readahead *ra, unsigned max_blocks);

/* Record a read of [off, off+len) on an image of nblocks blocks.  Returns how
 * many blocks to prefetch, starting at *first (0: none). */
unsigned readahead_on_read(struct readahead *ra, uint64_t off, size_t len,
                           uint64_t nblocks, uint64_t *first);

/* Blocks from `from` on, handed out by the last call, were not queued after
 * all (too many requests in flight): offer them again next time. */
void readahead_unqueue(struct readahead *ra, uint64_t from);

#endif
