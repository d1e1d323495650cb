/* commit.c - a staging area becomes a new snapshot (commit.h).
 *
 * The PUTs run through ebs_put_snapshot_block_async with up to max_requests
 * in flight: this thread reads a block from the staging file into a free
 * buffer, hashes it and queues it; completions (on the transport's I/O
 * thread) only hand the buffer back under a mutex.  Pacing and retries are
 * the transport's (its per-snapshot rate limiter and the one retry policy);
 * nothing here retries a request.  Each successful PUT is journaled before
 * CompleteSnapshot, so a resumed commit skips it.
 *
 * Attempts: the journal's pending attempt (token + exact StartSnapshot
 * parameters) is reused when there is one, so StartSnapshot returns the same
 * snapshot.  When that snapshot is no longer pending (error state, timed
 * out, its token refused), one fresh attempt with a new token starts over
 * from the staged data.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "ebs_format.h"
#include "log.h"
#include "staging.h"

#define DEFAULT_IN_FLIGHT 128u
/* Each PUT in flight holds a 512 KiB buffer; 1000 req/s x 0.5 s is already
 * more than the per-snapshot ceiling can use. */
#define MAX_IN_FLIGHT 512u
#define MAX_TAGS 50                     /* StartSnapshot's limit */
#define PROGRESS_EVERY_S 2.0
#define COMMIT_REBASED 1                /* run_attempt: start over on a new parent */

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- tags ---------------------------------------------------------------------- */

/* Split "K=V;K=V" in place (buf is a copy) into tags[]. */
static int
split_tags(char *buf, struct ebs_tag *tags, size_t *n, char *msg, size_t msglen)
{
  char *save = NULL, *t;

  *n = 0;
  for (t = strtok_r(buf, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
    char *eq = strchr(t, '=');
    if (eq == NULL || eq == t) {
      snprintf(msg, msglen, "bad tag '%s': KEY=VALUE", t);
      return -1;
    }
    if (*n == MAX_TAGS) {
      snprintf(msg, msglen, "more than %d tags", MAX_TAGS);
      return -1;
    }
    *eq = '\0';
    tags[*n].key = t;
    tags[*n].value = eq + 1;
    (*n)++;
  }
  return 0;
}

int
commit_check_tags(const char *spec, char *msg, size_t msglen)
{
  struct ebs_tag tags[MAX_TAGS];
  char *buf = strdup(spec);
  size_t n;
  int rc;

  if (buf == NULL) {
    snprintf(msg, msglen, "out of memory");
    return -1;
  }
  rc = split_tags(buf, tags, &n, msg, msglen);
  free(buf);
  return rc;
}

/* ---- StartSnapshot ---------------------------------------------------------------- */

/* A new attempt with a new ClientToken, journaled before it is used.  Its
 * parameters come from the options, or from prev when it replaces an
 * attempt whose snapshot is gone (a --resume may not repeat them). */
static int
new_attempt(struct staging *s, const struct commit_options *o,
            const struct staging_attempt *prev, struct staging_attempt *a)
{
  uint64_t gib = (staging_size(s) + (1ull << 30) - 1) >> 30;
  struct staging_attempt n;
  int rc;

  memset(&n, 0, sizeof n);
  if (ebs_random_token(n.token) < 0)
    return -EIO;
  staging_parent(s, n.parent);
  n.volume_size_gib = (int64_t) gib;
  if (prev) {
    n.timeout_minutes = prev->timeout_minutes;
    n.encrypted = prev->encrypted;
    memcpy(n.kms_key_arn, prev->kms_key_arn, sizeof n.kms_key_arn);
    memcpy(n.description, prev->description, sizeof n.description);
    memcpy(n.tags, prev->tags, sizeof n.tags);
  } else {
    n.timeout_minutes = o->timeout_minutes > 0 ? o->timeout_minutes : 60;
    n.encrypted = o->encrypted || o->kms_key_arn != NULL;
    snprintf(n.kms_key_arn, sizeof n.kms_key_arn, "%s", o->kms_key_arn ? o->kms_key_arn : "");
    snprintf(n.description, sizeof n.description, "%s", o->description ? o->description : "");
    snprintf(n.tags, sizeof n.tags, "%s", o->tags ? o->tags : "");
  }
  /* AWS refuses Encrypted with a parent; a child inherits the parent's. */
  if (n.parent[0] != '\0') {
    n.encrypted = false;
    n.kms_key_arn[0] = '\0';
  }
  *a = n;
  rc = staging_log_attempt(s, a);
  if (rc == 0)
    log_debug(LOG_SUB_COMMIT, "commit: new attempt, client token %s, parent %s",
              a->token, a->parent[0] ? a->parent : "(none)");
  return rc;
}

static int
start(struct ebs_client *c, const struct staging_attempt *a, struct ebs_snapshot_info *info,
      struct ebs_error *err)
{
  struct ebs_start_params p;
  struct ebs_tag tags[MAX_TAGS];
  char tagbuf[STAGING_TEXT_MAX + 1], msg[128];
  size_t ntags = 0;
  int rc;

  memset(&p, 0, sizeof p);
  p.volume_size_gib = a->volume_size_gib;
  p.parent_snapshot_id = a->parent[0] ? a->parent : NULL;
  p.description = a->description[0] ? a->description : NULL;
  p.client_token = a->token;
  p.timeout_minutes = a->timeout_minutes;
  p.encrypted = a->encrypted;
  p.kms_key_arn = a->kms_key_arn[0] ? a->kms_key_arn : NULL;
  snprintf(tagbuf, sizeof tagbuf, "%s", a->tags);
  if (split_tags(tagbuf, tags, &ntags, msg, sizeof msg) < 0) {
    memset(err, 0, sizeof *err);
    err->errnum = EINVAL;
    snprintf(err->message, sizeof err->message, "%s", msg);
    return -EINVAL;
  }
  p.tags = tags;
  p.ntags = ntags;
  memset(err, 0, sizeof *err);
  rc = ebs_start_snapshot(c, &p, info, err);
  return rc > 0 ? -rc : rc;
}

/* The pending snapshot is no longer usable: start over with a new token. */
static bool
snapshot_gone(const struct ebs_error *e)
{
  return ebs_error_is(e, "ValidationException", "INVALID_SNAPSHOT_ID") ||
         ebs_error_is(e, "ConflictException", NULL);
}

/* ---- the PUTs ---------------------------------------------------------------------- */

struct slot {
  struct puts *owner;
  char *buf;
  uint32_t block;
  int rc;
  struct ebs_error err;
};

struct puts {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct slot *slots;
  size_t nslots;
  size_t *freelist, nfree;              /* slots not in flight */
  size_t *donelist, ndone;              /* completed, not yet looked at */
};

static void
put_done(void *arg, int rc, const struct ebs_error *err)
{
  struct slot *sl = arg;
  struct puts *p = sl->owner;

  pthread_mutex_lock(&p->lock);
  sl->rc = rc > 0 ? -rc : rc;
  if (rc != 0 && err)
    sl->err = *err;
  p->donelist[p->ndone++] = (size_t) (sl - p->slots);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

static void
puts_free(struct puts *p)
{
  for (size_t i = 0; p->slots && i < p->nslots; i++)
    free(p->slots[i].buf);
  free(p->slots);
  free(p->freelist);
  free(p->donelist);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
}

static int
puts_init(struct puts *p, size_t nslots)
{
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cond, NULL);
  p->nslots = nslots;
  p->slots = calloc(nslots, sizeof *p->slots);
  p->freelist = calloc(nslots, sizeof *p->freelist);
  p->donelist = calloc(nslots, sizeof *p->donelist);
  if (p->slots == NULL || p->freelist == NULL || p->donelist == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < nslots; i++) {
    p->slots[i].owner = p;
    p->slots[i].buf = malloc(EBS_BLOCK_SIZE);
    if (p->slots[i].buf == NULL)
      return -ENOMEM;
    p->freelist[p->nfree++] = i;
  }
  return 0;
}

/* PUT every dirty block not yet PUT to snapshot_id; digests[i] receives the
 * SHA-256 of blocks[i] (all of them: the LINEAR checksum needs every one).
 * Returns 0, or -errno with err filled (in-flight PUTs are waited for). */
static int
put_blocks(struct ebs_client *c, struct staging *s, const char *snapshot_id,
           const uint32_t *blocks, size_t n, unsigned char (*digests)[32],
           unsigned max_in_flight, uint32_t *nput, struct ebs_error *err)
{
  struct puts p;
  size_t next = 0, inflight = 0, done = 0;
  double t0 = now_s(), last_report = t0;
  char *scratch;
  int rc = 0;

  *nput = 0;
  scratch = malloc(EBS_BLOCK_SIZE);
  if (puts_init(&p, max_in_flight) < 0 || scratch == NULL) {
    puts_free(&p);
    free(scratch);
    memset(err, 0, sizeof *err);
    err->errnum = ENOMEM;
    snprintf(err->message, sizeof err->message, "out of memory for %u block buffers",
             max_in_flight);
    return -ENOMEM;
  }
  for (;;) {
    size_t finished[1024], nfin = 0;

    /* Queue blocks while buffers are free. */
    while (rc == 0 && next < n) {
      struct slot *sl;
      int r;

      if (staging_block_put(s, blocks[next])) {
        /* PUT by an earlier run: only its digest is needed. */
        if ((r = staging_read_block(s, blocks[next], scratch)) < 0) {
          memset(err, 0, sizeof *err);
          err->errnum = -r;
          snprintf(err->message, sizeof err->message, "reading staged block %" PRIu32 ": %s",
                   blocks[next], strerror(-r));
          rc = r;
          break;
        }
        ebs_sha256(scratch, EBS_BLOCK_SIZE, digests[next]);
        next++;
        done++;
        continue;
      }
      pthread_mutex_lock(&p.lock);
      sl = p.nfree ? &p.slots[p.freelist[--p.nfree]] : NULL;
      pthread_mutex_unlock(&p.lock);
      if (sl == NULL)
        break;
      r = staging_read_block(s, blocks[next], sl->buf);
      if (r < 0) {
        memset(err, 0, sizeof *err);
        err->errnum = -r;
        snprintf(err->message, sizeof err->message, "reading staged block %" PRIu32 ": %s",
                 blocks[next], strerror(-r));
        rc = r;
        pthread_mutex_lock(&p.lock);
        p.freelist[p.nfree++] = (size_t) (sl - p.slots);
        pthread_mutex_unlock(&p.lock);
        break;
      }
      ebs_sha256(sl->buf, EBS_BLOCK_SIZE, digests[next]);
      sl->block = blocks[next];
      sl->rc = 0;
      r = ebs_put_snapshot_block_async(c, snapshot_id, blocks[next], sl->buf, digests[next],
                                       (int) (next * 100 / n), put_done, sl);
      if (r != 0) {
        memset(err, 0, sizeof *err);
        err->errnum = r < 0 ? -r : r;
        snprintf(err->message, sizeof err->message, "cannot queue PutSnapshotBlock");
        rc = -err->errnum;
        pthread_mutex_lock(&p.lock);
        p.freelist[p.nfree++] = (size_t) (sl - p.slots);
        pthread_mutex_unlock(&p.lock);
        break;
      }
      inflight++;
      next++;
    }
    if (inflight == 0 && (rc != 0 || next >= n))
      break;

    /* Wait for completions. */
    pthread_mutex_lock(&p.lock);
    while (p.ndone == 0 && inflight > 0)
      pthread_cond_wait(&p.cond, &p.lock);
    nfin = p.ndone < sizeof finished / sizeof *finished ? p.ndone : sizeof finished / sizeof *finished;
    memcpy(finished, p.donelist + (p.ndone - nfin), nfin * sizeof *finished);
    p.ndone -= nfin;
    pthread_mutex_unlock(&p.lock);

    for (size_t i = 0; i < nfin; i++) {
      struct slot *sl = &p.slots[finished[i]];

      inflight--;
      if (sl->rc == 0) {
        int r = staging_log_put(s, sl->block);
        (*nput)++;
        done++;
        if (r < 0 && rc == 0) {
          memset(err, 0, sizeof *err);
          err->errnum = -r;
          snprintf(err->message, sizeof err->message, "journal: %s", strerror(-r));
          rc = r;
        }
      } else if (rc == 0) {
        *err = sl->err;                 /* the first failure is the one reported */
        if (err->errnum == 0)
          err->errnum = ebs_error_errno(err);
        rc = -err->errnum;
      }
      pthread_mutex_lock(&p.lock);
      p.freelist[p.nfree++] = finished[i];
      pthread_mutex_unlock(&p.lock);
    }

    if (now_s() - last_report >= PROGRESS_EVERY_S) {
      double el = now_s() - t0;
      last_report = now_s();
      log_info("commit: %zu/%zu blocks, %.1f MiB, %.1f MiB/s", done, n,
               done * (EBS_BLOCK_SIZE / 1048576.0),
               el > 0 ? *nput * (EBS_BLOCK_SIZE / 1048576.0) / el : 0.0);
    }
  }
  if (staging_sync_journal(s) < 0 && rc == 0) {
    memset(err, 0, sizeof *err);
    err->errnum = EIO;
    snprintf(err->message, sizeof err->message, "cannot fsync the journal");
    rc = -EIO;
  }
  puts_free(&p);
  free(scratch);
  return rc;
}

/* ---- the commit -------------------------------------------------------------------- */

static int
write_id_file(const char *path, const char *id)
{
  char tmp[4096];
  FILE *f;

  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long) getpid());
  f = fopen(tmp, "w");
  if (f == NULL)
    return -errno;
  if (fprintf(f, "%s\n", id) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    int e = errno;
    fclose(f);
    unlink(tmp);
    return -e;
  }
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  return 0;
}

/* One attempt from StartSnapshot to CompleteSnapshot.  *gone: the pending
 * snapshot is unusable and a fresh attempt may succeed. */
static int
run_attempt(struct ebs_client *c, struct staging *s, struct staging_attempt *a,
            const uint32_t *blocks, size_t n, unsigned max_in_flight,
            struct commit_result *res, struct ebs_error *err, bool *gone)
{
  struct ebs_snapshot_info info;
  unsigned char (*digests)[32];
  unsigned char linear[32];
  char status[16] = "";
  int rc;

  *gone = false;
  rc = start(c, a, &info, err);
  if (rc < 0) {
    *gone = snapshot_gone(err);
    return rc;
  }
  if (a->snapshot_id[0] && strcmp(a->snapshot_id, info.snapshot_id) != 0)
    log_warn("commit: the client token now names %s, not %s", info.snapshot_id, a->snapshot_id);
  if (strcmp(a->snapshot_id, info.snapshot_id) != 0) {
    if ((rc = staging_log_started(s, info.snapshot_id)) < 0)
      return rc;
    snprintf(a->snapshot_id, sizeof a->snapshot_id, "%s", info.snapshot_id);
  }
  snprintf(res->snapshot_id, sizeof res->snapshot_id, "%s", info.snapshot_id);
  if (strcmp(info.status, "completed") == 0) {
    /* Completed by a run that died before journaling it.  Blocks written
     * after their PUT (a remount since) are not in it: they go to a child. */
    size_t again = 0;

    for (size_t i = 0; i < n; i++)
      if (!staging_block_put(s, blocks[i]))
        again++;
    if (again > 0) {
      log_info("commit: %s was already completed; %zu blocks were written since: "
               "they go to a new snapshot on top of it", info.snapshot_id, again);
      rc = staging_log_rebased(s, info.snapshot_id);
      return rc < 0 ? rc : COMMIT_REBASED;
    }
    log_info("commit: %s was already completed", info.snapshot_id);
    return 0;
  }
  if (strcmp(info.status, "pending") != 0) {
    memset(err, 0, sizeof *err);
    err->errnum = EIO;
    snprintf(err->message, sizeof err->message, "snapshot %s is in state '%s'",
             info.snapshot_id, info.status);
    *gone = true;
    return -EIO;
  }
  log_info("commit: %s started (parent %s), %zu blocks to write", info.snapshot_id,
           a->parent[0] ? a->parent : "none", n);

  digests = malloc((n ? n : 1) * sizeof *digests);
  if (digests == NULL)
    return -ENOMEM;
  rc = put_blocks(c, s, info.snapshot_id, blocks, n, digests, max_in_flight, &res->put, err);
  if (rc < 0) {
    free(digests);
    *gone = snapshot_gone(err);
    return rc;
  }
  ebs_linear_checksum((const unsigned char (*)[32]) digests, n, linear);
  free(digests);
  memset(err, 0, sizeof *err);
  rc = ebs_complete_snapshot(c, info.snapshot_id, (uint32_t) n, linear, status, err);
  if (rc != 0) {
    *gone = snapshot_gone(err);
    return rc > 0 ? -rc : rc;
  }
  /* AWS may answer "pending" and finish on its own; "error" is final. */
  if (strcmp(status, "error") == 0) {
    memset(err, 0, sizeof *err);
    err->errnum = EIO;
    snprintf(err->message, sizeof err->message, "CompleteSnapshot: %s is in state error",
             info.snapshot_id);
    *gone = true;
    return -EIO;
  }
  return 0;
}

int
commit_run(struct ebs_client *c, struct staging *s, const struct commit_options *o,
           struct commit_result *res)
{
  struct staging_attempt a;
  struct ebs_error err;
  uint32_t *blocks = NULL;
  size_t n = 0;
  unsigned max_in_flight = o->max_requests ? o->max_requests : DEFAULT_IN_FLIGHT;
  double t0 = now_s();
  bool gone = false;
  char msg[800];
  int rc, round;

  if (max_in_flight > MAX_IN_FLIGHT)
    max_in_flight = MAX_IN_FLIGHT;
  memset(res, 0, sizeof *res);
  memset(&err, 0, sizeof err);
  staging_commit_enter(s);
  rc = staging_dirty_blocks(s, &blocks, &n);
  if (rc == 0 && n == 0) {
    staging_commit_leave(s);
    return 1;
  }
  if (rc < 0) {
    snprintf(err.message, sizeof err.message, "out of memory");
    err.errnum = ENOMEM;
    goto failed;
  }
  res->blocks = (uint32_t) n;

  if (staging_pending(s, &a)) {
    log_info("commit: resuming the attempt with client token %s%s%s", a.token,
             a.snapshot_id[0] ? ", snapshot " : "", a.snapshot_id);
  } else if ((rc = new_attempt(s, o, NULL, &a)) < 0) {
    err.errnum = -rc;
    snprintf(err.message, sizeof err.message, "cannot journal the commit: %s", strerror(-rc));
    goto failed;
  }
  for (round = 0; round < 3; round++) {
    if (rc == COMMIT_REBASED) {
      free(blocks);
      blocks = NULL;
      if ((rc = staging_dirty_blocks(s, &blocks, &n)) < 0 ||
          (rc = new_attempt(s, o, &a, &a)) < 0) {
        err.errnum = -rc;
        snprintf(err.message, sizeof err.message, "cannot start over: %s", strerror(-rc));
        goto failed;
      }
      res->blocks = (uint32_t) n;
    } else if (round > 0) {
      log_warn("commit: %s is unusable (%s); starting a fresh snapshot with a new client token",
               a.snapshot_id[0] ? a.snapshot_id : "the pending snapshot",
               ebs_error_string(&err, msg, sizeof msg));
      if ((rc = new_attempt(s, o, &a, &a)) < 0) {
        err.errnum = -rc;
        snprintf(err.message, sizeof err.message, "cannot journal the commit: %s", strerror(-rc));
        goto failed;
      }
    }
    rc = run_attempt(c, s, &a, blocks, n, max_in_flight, res, &err, &gone);
    if (rc == 0 || (rc < 0 && !gone))
      break;
  }
  if (rc == COMMIT_REBASED) {
    err.errnum = EIO;
    snprintf(err.message, sizeof err.message, "the commit kept changing parent");
    rc = -EIO;
  }
  if (rc < 0)
    goto failed;

  rc = staging_log_committed(s, res->snapshot_id);
  staging_commit_leave(s);
  free(blocks);
  if (rc < 0)
    log_warn("commit: %s completed, but the journal could not record it: %s",
             res->snapshot_id, strerror(-rc));
  res->seconds = now_s() - t0;
  log_info("committed %s (%" PRIu32 " blocks, %llu bytes) in %.1f s, %.1f MiB/s",
           res->snapshot_id, res->blocks,
           (unsigned long long) res->blocks * EBS_BLOCK_SIZE, res->seconds,
           res->seconds > 0 ? res->put * (EBS_BLOCK_SIZE / 1048576.0) / res->seconds : 0.0);
  if (o->snapshot_id_file) {
    int r = write_id_file(o->snapshot_id_file, res->snapshot_id);
    if (r < 0)
      log_error("snapshot_id_file %s: %s", o->snapshot_id_file, strerror(-r));
  }
  return 0;

 failed:
  staging_commit_leave(s);
  free(blocks);
  if (err.errnum == 0)
    err.errnum = rc < 0 ? -rc : EIO;
  log_error("commit failed: %s", ebs_error_string(&err, msg, sizeof msg));
  log_error("the staged data is kept in %s; retry with: ebsfs --resume %s",
            staging_dir(s), staging_dir(s));
  return -err.errnum;
}
