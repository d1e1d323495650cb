/* block_cache.h - the LRU cache of 512 KiB snapshot blocks, shared by every
 * image of a mount.
 *
 * Entries are keyed by (owner, block index); the owner is the image.  The
 * cache never talks to the network itself: block_cache_get() tells the first
 * caller of a missing block to start the fetch (state BLOCK_FETCH) and every
 * later caller that one is already under way (BLOCK_PENDING).  The fetcher
 * calls block_cache_fetch_done() when the request completes - typically from
 * the transport's I/O thread, which it does without blocking - and that wakes
 * exactly the waiters of that entry.  So concurrent readers of one block share
 * one GetSnapshotBlock, and no lock is held across a network request.
 *
 * Entries are reference counted so a read can hand the cache's memory to FUSE
 * without copying; an entry with references is never evicted.  Eviction is
 * LRU over unreferenced, completed entries, by a byte budget.  A failed fetch
 * is not cached: its waiters get the error, the next reader fetches again.
 */
#ifndef EBSFS_BLOCK_CACHE_H
#define EBSFS_BLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_cache;
struct cache_entry;

enum block_state {
  BLOCK_READY,        /* data is valid; use it */
  BLOCK_PENDING,      /* someone else fetches it: block_cache_wait() */
  BLOCK_FETCH,        /* you must fetch it into block_cache_data() */
};

struct block_cache_stats {
  uint64_t hits;          /* get found the entry (ready or pending) */
  uint64_t misses;        /* get created the entry (a fetch) */
  uint64_t evictions;     /* to fit the budget */
  uint64_t recycled;      /* consumed blocks recycled below the budget */
  uint64_t ghost_hits;    /* misses on recycled blocks (0 or 1: see .c) */
  uint64_t failures;      /* fetches completed with an error */
  uint64_t bytes;         /* block memory currently held */
  uint64_t entries;
  uint64_t pool_bytes;    /* buffer memory mapped (held, free or in flight) */
  uint64_t pool_free;     /* buffers ready for the next misses */
};

/* budget_bytes: the most block memory kept for unreferenced entries (it can
 * be exceeded only by entries in use or being fetched).  0: a small default.
 * A thread keeps a reserve of up to 16 MiB of buffers made resident ahead of
 * the misses (an eighth of the budget when that is less); buffer memory
 * stays within the budget plus that reserve and entries in use. */
struct block_cache *block_cache_new(uint64_t budget_bytes);
/* Every entry must have been released and every fetch completed. */
void block_cache_free(struct block_cache *c);

/* Find or create the entry for (owner, index) and take a reference on it.
 * *state says what the caller must do; on BLOCK_FETCH the caller owns the
 * fetch and must call block_cache_fetch_done() exactly once (the cache holds
 * an extra reference on the entry until then).  Returns 0 or -ENOMEM. */
int block_cache_get(struct block_cache *c, const void *owner, uint32_t index,
                    struct cache_entry **out, enum block_state *state);

/* Whether (owner, index) is cached or being fetched; takes no reference.
 * Lets readahead skip blocks without creating entries. */
bool block_cache_contains(struct block_cache *c, const void *owner, uint32_t index);

/* Complete a fetch: rc 0 makes the data visible to all; rc < 0 wakes the
 * waiters with rc and removes the entry from the cache.  Never blocks for
 * long (one mutex, briefly): safe from the transport's I/O thread. */
void block_cache_fetch_done(struct cache_entry *e, int rc);

/* Wait until the entry's fetch completed.  Returns 0 or the fetch's -errno. */
int block_cache_wait(struct cache_entry *e);

/* The block's memory: EBS_BLOCK_SIZE bytes. */
void *block_cache_data(struct cache_entry *e);
const void *block_cache_owner(const struct cache_entry *e);
uint32_t block_cache_index(const struct cache_entry *e);

/* Drop-behind hint: a sequential reader has read the block to its end (the
 * kernel's page cache holds it now).  When its last reference goes, it is
 * evicted before any ordinary block, and once consumed blocks fill a
 * sixteenth of the budget their buffers are recycled even below it - until
 * a recycled block is asked for again.  A later get of the block makes it
 * ordinary. */
void block_cache_mark_consumed(struct cache_entry *e);

void block_cache_release(struct cache_entry *e);

/* Drop every unreferenced, completed entry of owner (image close).  Entries
 * still referenced or being fetched are detached: they can no longer be
 * found, and are freed on their last release. */
void block_cache_drop_owner(struct block_cache *c, const void *owner);

/* One shared block of zeros for unlisted blocks (never fetched). */
const void *block_cache_zero_block(const struct block_cache *c);

uint64_t block_cache_budget(const struct block_cache *c);
void block_cache_get_stats(struct block_cache *c, struct block_cache_stats *out);

#endif
