/* layout_prefetch.h - filesystem-aware prefetch for one image.
 *
 * Once the head of the volume is in, a thread parses the filesystem's
 * layout (volume_layout.h) through the image and queues, all at once, what
 * every mount reads next: directories and the journal's superblock.  The
 * kernel would otherwise find them one dependent round trip at a time.
 * Afterwards, the first read of a large file's first byte queues the rest of
 * the file's first 32 MiB, so `cp` or `sha256sum` of it takes one round trip
 * instead of a readahead window growing over several.  And a copy of many
 * small files, seen by where its reads begin, has the blocks holding small
 * files' data around it queued together instead of one round trip per block.
 *
 * Hints only: a volume it does not understand gets none, and nothing it does
 * changes what a read returns.
 */
#ifndef EBSFS_LAYOUT_PREFETCH_H
#define EBSFS_LAYOUT_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

struct image;
struct layout_prefetch;

/* Start parsing in the background; returns at once.  NULL if the thread
 * could not be started (logged; the image simply gets no hints). */
struct layout_prefetch *layout_prefetch_start(struct image *img);

/* A read of [off, off+len) is being served: queue the data of each listed
 * file whose first byte it covers, once per file, and, when off lies in a
 * small file's data and a copy looks under way, the blocks of small files'
 * data around it (layout_prefetch.c).  Cheap; does nothing before the parse
 * is done. */
void layout_prefetch_on_read(struct layout_prefetch *lp, uint64_t off, size_t len);

/* A stream read at off, in a stream that began at stream_start, is about
 * to queue blocks [ra_first, ra_first+nra): how many of them to queue.  When
 * the stream began in a file that was read from its start and whose whole
 * data we know, the window stops at the file's end plus the kernel's
 * readahead past it: the rest of the volume belongs to other files, and on
 * a busy link those requests only delay this file's.  A stream that began
 * before the file (dd of the volume), or that reads on past that point, is
 * not clipped.  A stream that began in a block holding small files' data,
 * while it reads in one, takes only such blocks: the copy's windows queue
 * those, and past them lie other files. */
unsigned layout_prefetch_clip(struct layout_prefetch *lp, uint64_t off, uint64_t stream_start,
                              uint64_t ra_first, unsigned nra);

/* Stop (a read in progress finishes first) and free.  NULL is fine. */
void layout_prefetch_stop(struct layout_prefetch *lp);

#endif
