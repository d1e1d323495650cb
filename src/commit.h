/* commit.h - turn a staging area's written blocks into a new EBS snapshot.
 *
 * StartSnapshot (parent = the source or the last commit, the journaled
 * ClientToken), PutSnapshotBlock for every block written since the last
 * commit - zero blocks included - in parallel through the transport's async
 * API, then CompleteSnapshot with ChangedBlocksCount and the LINEAR checksum.
 * Each step is journaled (staging.h), so a commit cut short by a crash or a
 * failure is finished later by running it again (ebsfs --resume): same
 * token, blocks already PUT skipped; a pending snapshot that is gone (error
 * state, timed out) is replaced by a fresh one with a new token.
 */
#ifndef EBSFS_COMMIT_H
#define EBSFS_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ebs.h"

struct staging;

struct commit_options {
  const char *description;      /* NULL: none */
  const char *tags;             /* "KEY=VALUE;KEY=VALUE", NULL: none */
  int timeout_minutes;          /* StartSnapshot Timeout; 0: 60 */
  bool encrypted;               /* only for a snapshot with no parent */
  const char *kms_key_arn;
  unsigned max_requests;        /* PUTs in flight; 0: 128 */
  const char *snapshot_id_file; /* the new ID plus a newline, NULL: none */
};

struct commit_result {
  char snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];
  uint32_t blocks;              /* ChangedBlocksCount */
  uint32_t put;                 /* PUT by this run (the rest were PUT before) */
  double seconds;
};

/* Commit now; writers of the staging area wait meanwhile.  Returns 0 (res
 * filled, the committed line logged), 1 when nothing was written since the
 * last commit, or -errno after logging what failed and how to retry. */
int commit_run(struct ebs_client *c, struct staging *s, const struct commit_options *o,
               struct commit_result *res);

/* Check a tags option: 0, or -1 with msg filled. */
int commit_check_tags(const char *tags, char *msg, size_t msglen);

#endif
