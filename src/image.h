/* image.h - one snapshot seen as a flat image: what the FUSE layer calls.
 *
 * The image ties together the lazy block index (which blocks exist, their
 * tokens), the block cache shared by all images of a mount (single-flight
 * fetches), the per-open-file readahead, and - in -o rw mode - the staging
 * area that keeps writes local until commit.
 *
 * Reads hand back references to cache memory instead of copying: the FUSE
 * layer passes the segments to fuse_reply_data() and then releases them.
 * No lock is held across a network request; a reader waits only for the
 * blocks it asked for.
 */
#ifndef EBSFS_IMAGE_H
#define EBSFS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ebs_client;
struct ebs_error;
struct block_cache;
struct image;
struct image_reader;

struct image_options {
  struct ebs_client *client;
  struct block_cache *cache;        /* shared by every image of the mount */
  unsigned readahead_max_blocks;    /* cap of the sequential window; 0: default */
  unsigned max_requests;            /* fetches in flight per image; 0: default */
  bool fs_prefetch;                 /* read the filesystem's layout for hints */
};

/* Open a completed snapshot.  Checks it exists, is completed and readable
 * (one small ListSnapshotBlocks call), learns the volume size; does NOT list
 * the whole index.  Returns 0 or -errno with err filled. */
int image_open(const char *snapshot_id, const struct image_options *opts,
               struct image **out, struct ebs_error *err);
void image_close(struct image *img);
/* The mount is ending: every request of img ends now with -ECANCELED
 * (readers waiting get it) and no new one is sent.  image_close does it
 * too; it is for a stop signal, while libfuse still has readers. */
void image_cancel(struct image *img);

uint64_t image_size(const struct image *img);
const char *image_snapshot_id(const struct image *img);
bool image_writable(const struct image *img);

/* Queue the fetch of the volume's first 8 MiB (where partition tables and
 * filesystem metadata live) unless already done for this image; returns at
 * once.  The first read of block 0 does it too.  With fs_prefetch, this also
 * starts the layout parser (layout_prefetch.h). */
void image_prefetch_head(struct image *img);

/* Queue the fetch of the blocks under [off, off+len) that are listed and not
 * cached, up to max_requests in flight; returns at once. */
void image_prefetch_range(struct image *img, uint64_t off, uint64_t len);
/* How much may be fetched ahead of readers (the readahead cap, at most a
 * quarter of the cache). */
uint64_t image_prefetch_ahead_bytes(const struct image *img);

/* Copy [off, off+len) into buf through the cache (or the staging area), with
 * no readahead and no reply references: for small metadata reads (the
 * layout parser).  Waits for the blocks.  0 or -errno. */
int image_pread(struct image *img, void *buf, size_t len, uint64_t off);

/* Per open file: sequential-stream detection for readahead. */
struct image_reader *image_reader_new(struct image *img);
void image_reader_free(struct image_reader *r);

/* One piece of a read reply: memory (mem != NULL) or a file range (fd >= 0). */
struct image_seg {
  const void *mem;
  int fd;
  off_t fd_offset;
  size_t len;
};

#define IMAGE_READ_MAX_SEGS 16      /* reads are capped at 7 MiB by this */

struct image_read {
  struct image_seg seg[IMAGE_READ_MAX_SEGS];
  size_t nseg;
  void *ref_[IMAGE_READ_MAX_SEGS];  /* private: what release drops */
  size_t nref_;
};

/* Read [off, off+len), clipped at the image size.  On success returns the
 * byte count (0 at EOF) and fills rd, which the caller must release.  A block
 * that could not be fetched after the retry policy gives -EIO, never wrong
 * data. */
ssize_t image_read(struct image_reader *r, uint64_t off, size_t len,
                   struct image_read *rd);
void image_read_release(struct image_read *rd);

/* SEEK_DATA / SEEK_HOLE answered from the block index: offset, or -ENXIO. */
off_t image_seek(struct image *img, off_t off, int whence);

/* Counters for --stats, tests and the benchmark. */
struct image_stats {
  uint64_t reads;               /* image_read calls that succeeded */
  uint64_t fetches;             /* GetSnapshotBlock requests started */
  uint64_t prefetches;          /* ...of which by readahead */
  uint64_t fetch_failures;      /* completed with an error (after retries) */
  uint64_t zero_blocks;         /* unlisted blocks served as zeros */
  unsigned inflight;
  uint64_t index_listed_blocks; /* blocks held by the loaded index */
  uint64_t index_memory_bytes;  /* everything the index allocated */
  uint64_t index_list_calls;    /* ListSnapshotBlocks pages it requested */
};
void image_get_stats(struct image *img, struct image_stats *out);

/* Write path (staging mode).  Read-only images answer -EROFS.  A write
 * past the end is -ENOSPC (a volume has a fixed size); one reaching past it
 * is cut short.  A partial-block write brings the base block in first, so
 * it can fail with the read path's errors. */
ssize_t image_write(struct image *img, const void *buf, size_t len, uint64_t off);
/* fsync/fdatasync: the staged data and the journal are made durable. */
int image_fsync(struct image *img, bool datasync);

struct staging;
/* Make img writable: its writes go to staging (borrowed, outlives img). */
void image_attach_staging(struct image *img, struct staging *staging);
struct staging *image_staging(const struct image *img);

/* A new, empty volume (no source snapshot, all zeros until written), named
 * name in the mount; size a multiple of 512 KiB.  Writable once a staging
 * area is attached. */
int image_new_volume(const char *name, uint64_t size, const struct image_options *opts,
                     struct image **out, struct ebs_error *err);

#endif
