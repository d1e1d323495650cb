/* ebs.h - the six EBS direct API operations, as the rest of ebsfs sees them.
 *
 * Everything below this header (signing, transport, retries, rate limiting,
 * JSON parsing, error typing) is hidden here.  Every call either succeeds or
 * fails with a typed struct ebs_error after the one retry policy gave up; no
 * caller retries on its own.  All calls are thread-safe.
 *
 * Synchronous calls block the calling thread; *_async calls return at once
 * and call the completion function exactly once, from the transport's I/O
 * thread: it must not block (take a mutex briefly, signal, return).
 */
#ifndef EBSFS_EBS_H
#define EBSFS_EBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EBS_BLOCK_SIZE 524288u
#define EBS_SNAPSHOT_ID_MAX 64

struct credentials_provider;

/* A failed call, typed.  Filled on every non-zero return. */
struct ebs_error {
  int http_status;              /* 0 when no HTTP response arrived */
  char code[64];                /* "ValidationException", "" for transport errors */
  char reason[64];              /* "INVALID_BLOCK_TOKEN", "" when absent */
  char message[512];            /* the service's Message, or what went wrong locally */
  char request_id[80];          /* x-amzn-RequestId, "" when absent */
  int attempts;                 /* how many times the request was sent */
  int errnum;                   /* positive errno, from ebs_error_errno() */
};

/* The one mapping from service errors to errno (ENOENT for not found,
 * EACCES for access denied, EINVAL for validation, EAGAIN for throttles
 * that outlived the retries, EIO for the rest, ETIMEDOUT, ECONNREFUSED...). */
int ebs_error_errno(const struct ebs_error *e);
/* "AccessDeniedException (UNAUTHORIZED_ACCOUNT): message [HTTP 403, request id X]" */
const char *ebs_error_string(const struct ebs_error *e, char *buf, size_t len);
bool ebs_error_is(const struct ebs_error *e, const char *code, const char *reason);

struct ebs_client_config {
  const char *endpoint;         /* "https://ebs.us-east-1.amazonaws.com" or "http://127.0.0.1:PORT" */
  const char *region;
  struct credentials_provider *credentials;  /* borrowed; outlives the client */
  const char *ca_bundle;        /* NULL: system default; TLS is always verified */
  double rate_limit;            /* requests/s per snapshot for Get/PutSnapshotBlock; 0: default (1000) */
  unsigned max_in_flight;       /* concurrent requests in all; 0: default (128) */
  unsigned connect_timeout_ms;  /* 0: default (5000) */
  unsigned stall_timeout_ms;    /* no byte for this long = timed out; 0: default (15000) */
  unsigned max_attempts;        /* per request, 0: default (8) */
  unsigned retry_budget_ms;     /* total time one request may spend retrying; 0: default (120000) */
};

struct ebs_client;

/* Starts the transport (its I/O thread).  Returns NULL with err filled. */
struct ebs_client *ebs_client_new(const struct ebs_client_config *cfg, struct ebs_error *err);
/* Fails every request still queued with ECANCELED, waits for the I/O thread. */
void ebs_client_free(struct ebs_client *c);

/* Counters for --stats, tests and the benchmark. */
struct ebs_client_stats {
  uint64_t requests;            /* HTTP requests sent, retries included */
  uint64_t retries;
  uint64_t throttles;           /* throttling answers seen */
  uint64_t bytes_in, bytes_out;
  unsigned in_flight;
};
void ebs_client_get_stats(struct ebs_client *c, struct ebs_client_stats *out);

/* ---- ListSnapshotBlocks ------------------------------------------------ */

struct ebs_block_ref {
  uint32_t index;
  const char *token;            /* points into the page's storage */
};

struct ebs_block_page {
  struct ebs_block_ref *blocks; /* ascending index */
  size_t nblocks;
  int64_t volume_size_gib;
  uint32_t block_size;
  double expiry_time;           /* epoch seconds the tokens expire; 0 if absent */
  char *next_token;             /* NULL on the last page */
  void *storage_;               /* private */
};

/* One page.  page_token NULL for the first page; starting_block < 0 to omit;
 * max_results 0 to omit (service default), else 100..10000. */
int ebs_list_snapshot_blocks(struct ebs_client *c, const char *snapshot_id,
                             const char *page_token, int64_t starting_block,
                             int max_results, struct ebs_block_page *out,
                             struct ebs_error *err);
void ebs_block_page_free(struct ebs_block_page *p);

/* ---- ListChangedBlocks ------------------------------------------------- */

struct ebs_changed_ref {
  uint32_t index;
  const char *first_token;      /* NULL when absent */
  const char *second_token;     /* NULL when absent */
};

struct ebs_changed_page {
  struct ebs_changed_ref *blocks;
  size_t nblocks;
  int64_t volume_size_gib;
  uint32_t block_size;
  double expiry_time;
  char *next_token;
  void *storage_;
};

/* first_snapshot_id may be NULL.  Pages may be empty with a next_token. */
int ebs_list_changed_blocks(struct ebs_client *c, const char *first_snapshot_id,
                            const char *second_snapshot_id, const char *page_token,
                            int64_t starting_block, int max_results,
                            struct ebs_changed_page *out, struct ebs_error *err);
void ebs_changed_page_free(struct ebs_changed_page *p);

/* ---- GetSnapshotBlock -------------------------------------------------- */

typedef void (*ebs_done_fn)(void *arg, int rc, const struct ebs_error *err);

/* Read one block into buf (EBS_BLOCK_SIZE bytes, written straight from the
 * socket - no intermediate copy).  The body is checked against the
 * x-amz-Checksum SHA-256 and x-amz-Data-Length before success is reported;
 * a mismatch is retried like a 5xx.  Returns 0 or -errno. */
int ebs_get_snapshot_block(struct ebs_client *c, const char *snapshot_id,
                           uint32_t index, const char *block_token, void *buf,
                           struct ebs_error *err);
/* Same, asynchronous: done(arg, 0 or -errno, err) is called exactly once.
 * Strings are copied; buf must stay valid until done is called. Returns 0,
 * or -errno without calling done when the request could not be queued.
 * background: nobody waits for it yet (a prefetch); requests someone waits
 * for go out before it (http.h). */
int ebs_get_snapshot_block_async(struct ebs_client *c, const char *snapshot_id,
                                 uint32_t index, const char *block_token, void *buf,
                                 bool background, ebs_done_fn done, void *arg);
/* Someone now waits for a background GetSnapshotBlock of this block: if it
 * has not gone out yet, it goes before the other background ones.  Returns
 * at once; nothing happens when no such request waits. */
void ebs_promote_block(struct ebs_client *c, const char *snapshot_id, uint32_t index);
/* Every request about snapshot_id made before this call (GETs, lists) ends
 * now with -ECANCELED, sent or not: for a snapshot being closed, whose
 * prefetches nobody will read.  Returns once their done calls are made. */
void ebs_cancel_snapshot(struct ebs_client *c, const char *snapshot_id);

/* ---- StartSnapshot / PutSnapshotBlock / CompleteSnapshot ---------------- */

struct ebs_tag { const char *key; const char *value; };

struct ebs_start_params {
  int64_t volume_size_gib;      /* required, >= 1 */
  const char *parent_snapshot_id;   /* NULL for none */
  const char *description;      /* NULL for none */
  const char *client_token;     /* idempotency token; reuse it on resume */
  int timeout_minutes;          /* 0: omit (service default 60) */
  bool encrypted;
  const char *kms_key_arn;      /* NULL for none */
  const struct ebs_tag *tags;
  size_t ntags;
};

struct ebs_snapshot_info {
  char snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];
  char status[16];              /* "pending", "completed", "error" */
  int64_t volume_size_gib;
  uint32_t block_size;
  char parent_snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];
};

int ebs_start_snapshot(struct ebs_client *c, const struct ebs_start_params *p,
                       struct ebs_snapshot_info *out, struct ebs_error *err);

/* Write one block (EBS_BLOCK_SIZE bytes).  sha256 is the raw digest of data
 * (computed when NULL).  progress is 0..100, or -1 to omit the header. */
int ebs_put_snapshot_block(struct ebs_client *c, const char *snapshot_id,
                           uint32_t index, const void *data,
                           const unsigned char sha256[32], int progress,
                           struct ebs_error *err);
int ebs_put_snapshot_block_async(struct ebs_client *c, const char *snapshot_id,
                                 uint32_t index, const void *data,
                                 const unsigned char sha256[32], int progress,
                                 ebs_done_fn done, void *arg);

/* linear_sha256: the LINEAR aggregate (see ebs_linear_checksum), or NULL to
 * send no checksum.  status_out (>= 16 bytes) receives the returned Status. */
int ebs_complete_snapshot(struct ebs_client *c, const char *snapshot_id,
                          uint32_t changed_blocks_count,
                          const unsigned char linear_sha256[32],
                          char *status_out, struct ebs_error *err);

/* LINEAR aggregation: SHA-256 over the raw 32-byte digests of each written
 * block, concatenated in ascending block index. */
void ebs_linear_checksum(const unsigned char (*digests)[32], size_t n,
                         unsigned char out[32]);

/* True when s looks like a snapshot ID (^snap-[0-9a-f]+$, at most 64). */
bool ebs_valid_snapshot_id(const char *s);

#endif
