/* staging.h - the local staging area of a writable (-o rw) image.
 *
 * One directory per mount (mode 0700, files 0600) holds:
 *   blocks-NNNN.dat  sparse files of 512 KiB blocks (512 GiB each, as ext4
 *               caps a file at 16 TiB and volumes reach 64 TiB); a block is
 *               present once it was written (whole: a partial write first
 *               brought in the base block).
 *   journal     an append-only text log, one checksummed record per line:
 *               the source snapshot and size, which blocks were written,
 *               each commit attempt (ClientToken and its StartSnapshot
 *               parameters), the pending snapshot ID, the blocks already PUT
 *               to it, and the committed snapshot ID.  Replaying it gives the
 *               state back after a crash; a torn last line is dropped.
 * staging_sync() (fsync/fdatasync on the image) makes both durable.
 *
 * The image layer (image.c) writes through staging_begin_block /
 * staging_fill_block / staging_write; the commit (commit.c) reads the dirty
 * blocks and records its progress here.  All functions are thread-safe.
 */
#ifndef EBSFS_STAGING_H
#define EBSFS_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ebs.h"

#define STAGING_TOKEN_MAX 64
#define STAGING_TEXT_MAX 1024          /* description, tags, KMS key ARN */

struct staging;

/* The StartSnapshot parameters of one commit attempt, journaled with its
 * ClientToken so that a resume sends exactly the same request. */
struct staging_attempt {
  char token[STAGING_TOKEN_MAX + 1];
  char parent[EBS_SNAPSHOT_ID_MAX + 1];  /* "" for none */
  int64_t volume_size_gib;
  int timeout_minutes;
  bool encrypted;
  char kms_key_arn[STAGING_TEXT_MAX + 1];
  char description[STAGING_TEXT_MAX + 1];
  char tags[STAGING_TEXT_MAX + 1];       /* "K=V;K=V" as given */
  char snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];  /* "" until StartSnapshot answered */
};

/* Open DIR, creating it (0700) when missing.  source: the source snapshot
 * ID or NULL (new volume); size: the image size in bytes.  An existing
 * journal is replayed and must name the same source and size.
 * must_exist: fail with ENOENT when DIR holds no journal (--resume).
 * With source == NULL and size == 0 (resume), both come from the journal.
 * Returns 0 or -errno with msg filled. */
int staging_open(const char *dir, const char *source, uint64_t size, bool must_exist,
                 struct staging **out, char *msg, size_t msglen);
void staging_close(struct staging *s);
/* Remove the data files, the journal and the directory (after a full commit). */
int staging_remove(struct staging *s);

const char *staging_dir(const struct staging *s);
const char *staging_source(const struct staging *s);     /* NULL: new volume */
uint64_t staging_size(const struct staging *s);
uint64_t staging_nblocks(const struct staging *s);
/* The parent of the next commit: the last committed snapshot, else the
 * source ("" for a new volume never committed).  Copied to out. */
void staging_parent(struct staging *s, char out[EBS_SNAPSHOT_ID_MAX + 1]);
/* The last snapshot this staging area committed, "" when none. */
void staging_last_committed(struct staging *s, char out[EBS_SNAPSHOT_ID_MAX + 1]);

/* ---- the write path (image.c) ------------------------------------------- */

/* Writers share the staging area; a commit excludes them while it reads the
 * dirty set, so the snapshot is exactly what was written before it. */
void staging_writers_enter(struct staging *s);
void staging_writers_leave(struct staging *s);

bool staging_has_block(struct staging *s, uint64_t block);
/* First staged block >= from, or nblocks. */
uint64_t staging_next_staged(struct staging *s, uint64_t from);
/* Where a staged block's data is: returns the fd (valid until
 * staging_close) and sets *off, or -ENOENT. */
int staging_block_fd(struct staging *s, uint64_t block, off_t *off);

/* Before writing into a block: returns 0 when it is present (write with
 * staging_write), 1 when the caller must bring in the whole block and call
 * staging_fill_block (or staging_abort_block) - other writers of that block
 * wait meanwhile - or -errno. */
int staging_begin_block(struct staging *s, uint64_t block);
int staging_fill_block(struct staging *s, uint64_t block, const void *data);
void staging_abort_block(struct staging *s, uint64_t block);
/* Write into a present block. */
int staging_write(struct staging *s, uint64_t block, size_t off_in_block,
                  const void *buf, size_t len);
/* Make the staged data and the journal durable. */
int staging_sync(struct staging *s);

/* ---- the commit (commit.c) ------------------------------------------------- */

/* Exclusive against writers; held for a whole commit. */
void staging_commit_enter(struct staging *s);
void staging_commit_leave(struct staging *s);

/* The blocks written since the last commit, ascending (malloc'd; *n may be
 * 0 with *out NULL).  Returns 0 or -ENOMEM. */
int staging_dirty_blocks(struct staging *s, uint32_t **out, size_t *n);
/* Whether block was PUT to the pending snapshot (and not written since). */
bool staging_block_put(struct staging *s, uint64_t block);
int staging_read_block(struct staging *s, uint64_t block, void *buf);

/* The commit attempt in progress (after a crash or a failure), if any. */
bool staging_pending(struct staging *s, struct staging_attempt *out);
/* A new attempt (new ClientToken): forgets the blocks PUT to the old one. */
int staging_log_attempt(struct staging *s, const struct staging_attempt *a);
int staging_log_started(struct staging *s, const char *snapshot_id);
int staging_log_put(struct staging *s, uint64_t block);
/* CompleteSnapshot succeeded: clears the dirty set, fsyncs the journal. */
int staging_log_committed(struct staging *s, const char *snapshot_id);
/* The pending snapshot turned out completed (a run died between
 * CompleteSnapshot and its journal record) while blocks were written again
 * since their PUT: it becomes the parent, and only those blocks stay dirty. */
int staging_log_rebased(struct staging *s, const char *snapshot_id);
int staging_sync_journal(struct staging *s);
/* Rewrite the journal as just what it must remember (present blocks, the
 * last commit); done by staging_log_committed once the journal is large.
 * Only with nothing dirty or pending (-EBUSY).  0 or -errno. */
int staging_compact(struct staging *s);

#endif
