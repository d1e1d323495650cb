/* first_listing.h - grain 0's ListSnapshotBlocks page, listed on a thread.
 *
 * A mount needs the snapshot's first page before anything else: it proves
 * the snapshot is readable, gives its size and holds the tokens of the
 * volume's head.  A page of 10,000 entries (one grain of the index) takes
 * the service longer to build, the network longer to carry and us longer to
 * parse than one of 100; so image_open lists 100 entries to mount with, and
 * this lists grain 0's 10,000 at the same moment on a thread, handing the
 * page to the index when both are in.  Reads of blocks in the short page do
 * not wait for the long one; the index makes reads of grain 0's other
 * blocks wait for it (block_index_preload_head).
 */
#ifndef EBSFS_FIRST_LISTING_H
#define EBSFS_FIRST_LISTING_H

#include <stdbool.h>

struct block_index;
struct ebs_client;
struct first_listing;

/* Start listing grain 0 of snapshot_id.  NULL when the thread could not be
 * started (the caller then does without: grain 0 is listed lazily). */
struct first_listing *first_listing_start(struct ebs_client *client,
                                          const char *snapshot_id);

/* Hand the page to idx when it arrives: with head true (after
 * block_index_preload_head returned 1) through block_index_finish_preload,
 * else as block_index_preload (used only if grain 0 is still unlisted).
 * Returns at once. */
void first_listing_attach(struct first_listing *fl, struct block_index *idx, bool head);

/* Wait for the thread and free.  Before first_listing_attach, the page is
 * dropped.  NULL is fine. */
void first_listing_end(struct first_listing *fl);

#endif
