/* block_index.h - which blocks of a snapshot are listed, and their tokens.
 *
 * The index is loaded lazily: the volume is cut into "grains" of
 * BLOCK_INDEX_GRAIN blocks (= ListSnapshotBlocks' largest page), and a grain
 * is listed the first time a read, a token lookup or a seek needs it, with
 * startingBlockIndex at the grain's start.  Because a page holds up to as many
 * blocks as a grain has indexes, one page always covers the rest of its first
 * grain; in a sparse region it covers many grains at once, and each of those
 * is marked loaded too.  Mounting never lists the whole snapshot.
 *
 * Memory per listed block is small: a grain keeps its blocks as 16-bit
 * offsets plus one arena of tokens, base64-decoded to raw bytes with the
 * prefix common to the grain's tokens stored once (and no per-block length
 * when all tokens are the same size, the usual case).
 *
 * Loading is single-flight per grain: concurrent readers of an unloaded grain
 * wait for the one ListSnapshotBlocks in progress, and no lock is held across
 * it.  At mount, a short first page can stand in for grain 0's first blocks
 * while grain 0 itself is listed (block_index_preload_head).  Tokens are refreshed (the grain re-listed) shortly before ExpiryTime,
 * and after block_index_invalidate() when the service rejected a token.
 *
 * The listing function is injected (struct block_lister) so unit tests can
 * use fakes; the image wires ebs_list_snapshot_blocks().
 */
#ifndef EBSFS_BLOCK_INDEX_H
#define EBSFS_BLOCK_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define BLOCK_INDEX_GRAIN 10000u        /* blocks per grain = maxResults used */
#define BLOCK_TOKEN_MAX 256             /* the API's limit on blockToken */

struct ebs_block_page;
struct ebs_error;

struct block_lister {
  /* One ListSnapshotBlocks page (ebs_list_snapshot_blocks semantics). */
  int (*list)(void *arg, const char *page_token, int64_t starting_block,
              int max_results, struct ebs_block_page *out, struct ebs_error *err);
  void (*free_page)(void *arg, struct ebs_block_page *p);
  /* Wall clock in epoch seconds (ExpiryTime's clock); NULL: the real one. */
  double (*now)(void *arg);
  void *arg;
};

struct block_index_stats {
  uint64_t listed_blocks;       /* blocks held in loaded grains */
  uint64_t memory_bytes;        /* everything the index allocated */
  uint64_t list_calls;          /* ListSnapshotBlocks pages requested */
  uint64_t grains_loaded;       /* grains currently loaded */
  uint64_t refreshes;           /* grains re-listed for their tokens */
};

struct block_index;

/* nblocks: volume size in blocks.  The lister is copied. */
struct block_index *block_index_new(const struct block_lister *lister,
                                    uint64_t nblocks);
void block_index_free(struct block_index *idx);

/* Install a page a caller already listed from block 0 as the first page of
 * grain 0 (used only while grain 0 is unlisted), so the first read near the
 * start of the volume costs no ListSnapshotBlocks.  Lists more only if that
 * page ends inside grain 0 with a NextToken.  The page is taken in every
 * case (freed through the lister).  Returns 0 or -errno with err filled;
 * after a failure grain 0 is listed lazily. */
int block_index_preload(struct block_index *idx, struct ebs_block_page *first,
                        struct ebs_error *err);

/* Mounting without waiting for grain 0's long page: install a short page
 * listed from block 0 (e.g. maxResults 100, the API's least) as the "head",
 * which answers lookups of blocks up to its last entry at once, while the
 * caller lists grain 0 itself (started beside the short one) and hands the
 * result to block_index_finish_preload().  Lookups of grain 0's other blocks
 * wait for that.  Returns 1 when the head was installed (the caller must
 * then call block_index_finish_preload exactly once), 0 when the page was
 * enough for grain 0 by itself (it ends the listing or reaches past grain 0:
 * installed as block_index_preload() would), or -errno with err filled (the
 * page was bad: nothing installed, grain 0 is listed lazily).  The page is
 * taken in every case. */
int block_index_preload_head(struct block_index *idx, struct ebs_block_page *first,
                             struct ebs_error *err);

/* grain0: the page listed from block 0 with maxResults BLOCK_INDEX_GRAIN, or
 * NULL with list_rc the listing's -errno and list_err its error.  Installs
 * grain 0 (listing more if the page ends inside it) and wakes the lookups
 * waiting for it; the head is dropped.  On failure those lookups get the
 * error and the next lookup past the head lists grain 0 again.  The page is
 * taken.  Returns 0 or -errno with err filled. */
int block_index_finish_preload(struct block_index *idx, struct ebs_block_page *grain0,
                               int list_rc, const struct ebs_error *list_err,
                               struct ebs_error *err);

/* Is block listed?  Returns 1 (listed), 0 (not listed: reads as zeros) or
 * -errno with err filled.  With token != NULL (token_cap >= BLOCK_TOKEN_MAX+1)
 * the block's current token is copied there, refreshing it first if it is
 * near expiry or was invalidated. */
int block_index_lookup(struct block_index *idx, uint64_t block,
                       char *token, size_t token_cap, struct ebs_error *err);

/* The service rejected a token of this block's grain (INVALID_BLOCK_TOKEN):
 * its next token lookup re-lists the grain.  Never blocks for long. */
void block_index_invalidate(struct block_index *idx, uint64_t block);

/* First listed block >= from (nblocks when none), or -errno. */
int64_t block_index_next_data(struct block_index *idx, uint64_t from,
                              struct ebs_error *err);
/* First unlisted block >= from (nblocks when none), or -errno. */
int64_t block_index_next_hole(struct block_index *idx, uint64_t from,
                              struct ebs_error *err);

void block_index_get_stats(struct block_index *idx, struct block_index_stats *out);

#endif
