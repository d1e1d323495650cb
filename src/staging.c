/* staging.c - the staging directory of a writable image (staging.h).
 *
 * State lives in three bitmaps over the volume's blocks - present (the block
 * is in its data file), dirty (written since the last commit) and put (sent to
 * the pending snapshot, not written since) - rebuilt at open by replaying the
 * journal (its line format: staging_journal.c).  A torn last line - what a
 * crash mid-append leaves - is cut off; damage further up refuses to open.
 *
 * Order of writes keeps the journal honest: block data is written to
 * its data file before its "W" record, and a write is acknowledged only after
 * both, so every block the journal names holds what was acknowledged.  A
 * process crash (kill -9) loses nothing written (the page cache keeps it);
 * fsync on the image makes both files durable against power loss too.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "staging.h"
#include "staging_journal.h"

/* Block b lives in data file b / CHUNK_BLOCKS at (b % CHUNK_BLOCKS) * 512 KiB:
 * 512 GiB files, far below any file system's size limit, created on first use. */
#define CHUNK_BLOCKS (1u << 20)
#define DATA_FILE_FMT "blocks-%04u.dat"
#define JOURNAL_FILE "journal"
#define JOURNAL_VERSION 1

struct staging {
  char *dir;
  char *source;                 /* NULL: new volume */
  uint64_t size, nblocks;
  int *data_fds;                /* per chunk, -1 until created; guarded by lock */
  unsigned nchunks;
  int journal_fd;

  pthread_rwlock_t commit_lock; /* shared: writers; exclusive: a commit */
  pthread_mutex_t lock;         /* everything below */
  pthread_cond_t filled;        /* a block left the busy set */
  uint8_t *present, *dirty, *put, *busy;
  size_t ndirty;
  bool pending;
  struct staging_attempt attempt;
  char last_committed[EBS_SNAPSHOT_ID_MAX + 1];
};

/* ---- bitmaps ------------------------------------------------------------------ */

static bool bit_get(const uint8_t *m, uint64_t b) { return (m[b >> 3] >> (b & 7)) & 1; }
static void bit_set(uint8_t *m, uint64_t b) { m[b >> 3] = (uint8_t) (m[b >> 3] | (1u << (b & 7))); }
static void bit_clear(uint8_t *m, uint64_t b) { m[b >> 3] = (uint8_t) (m[b >> 3] & ~(1u << (b & 7))); }
static size_t bitmap_bytes(uint64_t n) { return (size_t) ((n + 7) / 8); }

/* ---- the journal --------------------------------------------------------------- */

/* Append one record; caller holds s->lock (or is alone, at open). */
static int
journal_append(struct staging *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
journal_append(struct staging *s, const char *fmt, ...)
{
  char rec[JOURNAL_RECORD_MAX + 1];
  va_list ap;
  int n, rc;

  va_start(ap, fmt);
  n = vsnprintf(rec, sizeof rec, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t) n >= sizeof rec)
    return -ENAMETOOLONG;
  rc = journal_write(s->journal_fd, rec);
  if (rc < 0)
    log_error("staging %s: journal write: %s", s->dir, strerror(-rc));
  return rc;
}

static int
parse_block(struct staging *s, const char *arg, uint64_t *out)
{
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull(arg, &end, 10);
  if (errno || end == arg || *end || v >= s->nblocks)
    return -EINVAL;
  *out = v;
  return 0;
}

/* A completed snapshot holds the blocks PUT to it: those are clean now, it
 * is the new parent, and blocks written after their PUT stay dirty. */
static void
rebase(struct staging *s, const char *snapshot_id)
{
  for (uint64_t b = 0; b < s->nblocks; b++) {
    if ((b & 7) == 0 && s->put[b >> 3] == 0) {
      b += 7;
      continue;
    }
    if (bit_get(s->put, b) && bit_get(s->dirty, b)) {
      bit_clear(s->dirty, b);
      s->ndirty--;
    }
  }
  memset(s->put, 0, bitmap_bytes(s->nblocks));
  snprintf(s->last_committed, sizeof s->last_committed, "%s", snapshot_id);
  s->pending = false;
  memset(&s->attempt, 0, sizeof s->attempt);
}

/* Apply one record (without its checksum) to the state. */
static int
apply_record(struct staging *s, char *rec, bool *have_header)
{
  char *f[10];
  size_t nf = 0;
  char *save = NULL, *tok;
  uint64_t b;

  for (tok = strtok_r(rec, " ", &save); tok && nf < 10; tok = strtok_r(NULL, " ", &save))
    f[nf++] = tok;
  if (nf == 0 || strlen(f[0]) != 1)
    return -EINVAL;
  if (!*have_header && f[0][0] != 'H')
    return -EINVAL;
  switch (f[0][0]) {
  case 'H': {
    char *end;
    unsigned long long size;
    if (nf != 4 || strcmp(f[1], "1") != 0)
      return -EINVAL;
    errno = 0;
    size = strtoull(f[3], &end, 10);
    if (errno || *end || size == 0 || size % EBS_BLOCK_SIZE)
      return -EINVAL;
    if (s->size == 0) {               /* resume: learn it */
      s->size = size;
      s->nblocks = size / EBS_BLOCK_SIZE;
      free(s->source);
      s->source = strcmp(f[2], "-") ? strdup(f[2]) : NULL;
      if (strcmp(f[2], "-") && s->source == NULL)
        return -ENOMEM;
    } else if (size != s->size || (s->source ? strcmp(s->source, f[2]) : strcmp(f[2], "-"))) {
      return -EXDEV;                  /* another image's staging area */
    }
    *have_header = true;
    return 1;                         /* tells open to allocate the bitmaps */
  }
  case 'B': {
    /* A compacted run of present blocks: "B FIRST HEX", 4 blocks a digit. */
    const char *h;
    if (nf != 3 || parse_block(s, f[1], &b) < 0)
      return -EINVAL;
    for (h = f[2]; *h; h++, b += 4) {
      int v = *h >= '0' && *h <= '9' ? *h - '0' : *h >= 'a' && *h <= 'f' ? *h - 'a' + 10 : -1;
      if (v < 0)
        return -EINVAL;
      for (int k = 0; k < 4; k++)
        if ((v >> k) & 1) {
          if (b + (uint64_t) k >= s->nblocks)
            return -EINVAL;
          bit_set(s->present, b + (uint64_t) k);
        }
    }
    return 0;
  }
  case 'W':
    if (nf != 2 || parse_block(s, f[1], &b) < 0)
      return -EINVAL;
    bit_set(s->present, b);
    if (!bit_get(s->dirty, b)) {
      bit_set(s->dirty, b);
      s->ndirty++;
    }
    bit_clear(s->put, b);
    return 0;
  case 'A': {
    struct staging_attempt *a = &s->attempt;
    char num[32];
    if (nf != 9)
      return -EINVAL;
    memset(a, 0, sizeof *a);
    if (staging_decode(f[1], a->token, sizeof a->token) < 0 ||
        staging_decode(f[2], a->parent, sizeof a->parent) < 0 ||
        staging_decode(f[6], a->kms_key_arn, sizeof a->kms_key_arn) < 0 ||
        staging_decode(f[7], a->description, sizeof a->description) < 0 ||
        staging_decode(f[8], a->tags, sizeof a->tags) < 0 ||
        staging_decode(f[3], num, sizeof num) < 0)
      return -EINVAL;
    a->volume_size_gib = strtoll(num, NULL, 10);
    a->timeout_minutes = atoi(f[4]);
    a->encrypted = strcmp(f[5], "1") == 0;
    if (a->token[0] == '\0' || a->volume_size_gib < 1)
      return -EINVAL;
    s->pending = true;
    memset(s->put, 0, bitmap_bytes(s->nblocks));
    return 0;
  }
  case 'S':
    if (nf != 2 || !s->pending || !ebs_valid_snapshot_id(f[1]))
      return -EINVAL;
    snprintf(s->attempt.snapshot_id, sizeof s->attempt.snapshot_id, "%s", f[1]);
    return 0;
  case 'P':
    if (nf != 2 || parse_block(s, f[1], &b) < 0)
      return -EINVAL;
    bit_set(s->put, b);
    return 0;
  case 'R':
    if (nf != 2 || !ebs_valid_snapshot_id(f[1]))
      return -EINVAL;
    rebase(s, f[1]);
    return 0;
  case 'C':
    if (nf != 2 || !ebs_valid_snapshot_id(f[1]))
      return -EINVAL;
    snprintf(s->last_committed, sizeof s->last_committed, "%s", f[1]);
    memset(s->dirty, 0, bitmap_bytes(s->nblocks));
    memset(s->put, 0, bitmap_bytes(s->nblocks));
    s->ndirty = 0;
    s->pending = false;
    memset(&s->attempt, 0, sizeof s->attempt);
    return 0;
  default:
    return -EINVAL;
  }
}

static int
alloc_bitmaps(struct staging *s)
{
  size_t n = bitmap_bytes(s->nblocks);

  s->present = calloc(1, n);
  s->dirty = calloc(1, n);
  s->put = calloc(1, n);
  s->busy = calloc(1, n);
  return s->present && s->dirty && s->put && s->busy ? 0 : -ENOMEM;
}

struct replay_ctx {
  struct staging *s;
  bool have_header;
  size_t lineno;
  int bad;                              /* apply_record's error */
};

static int
replay_one(void *arg, char *rec)
{
  struct replay_ctx *r = arg;
  int rc;

  r->lineno++;
  rc = apply_record(r->s, rec, &r->have_header);
  if (rc == 1)
    rc = alloc_bitmaps(r->s);
  if (rc < 0)
    r->bad = rc;
  return rc < 0 ? rc : 0;
}

/* Replay the journal; cut a torn last line off.  Returns 0 or -errno. */
static int
replay(struct staging *s, char *msg, size_t msglen)
{
  struct replay_ctx r = { .s = s };
  struct journal_scan scan;
  int rc = journal_read(s->journal_fd, replay_one, &r, &scan);

  if (rc < 0) {
    if (r.bad)
      snprintf(msg, msglen, "%s/%s: line %zu: %s", s->dir, JOURNAL_FILE, r.lineno,
               rc == -EXDEV ? "the staging area belongs to another image" :
               rc == -ENOMEM ? "out of memory" : "bad record");
    else if (rc == -EIO)
      snprintf(msg, msglen, "%s/%s: line %zu is damaged", s->dir, JOURNAL_FILE, scan.lines + 1);
    else
      snprintf(msg, msglen, "%s/%s: %s", s->dir, JOURNAL_FILE, strerror(-rc));
    return rc;
  }
  if (scan.torn) {
    log_warn("staging %s: dropping the incomplete last journal record (line %zu)",
             s->dir, scan.lines + 1);
    if (ftruncate(s->journal_fd, scan.good_end) != 0) {
      rc = -errno;
      snprintf(msg, msglen, "%s/%s: truncate: %s", s->dir, JOURNAL_FILE, strerror(-rc));
      return rc;
    }
  }
  if (!r.have_header) {
    snprintf(msg, msglen, "%s: no staging journal", s->dir);
    return -ENOENT;
  }
  return 0;
}

/* ---- open / close -------------------------------------------------------------- */

static int
make_dir(const char *dir, char *msg, size_t msglen)
{
  struct stat st;

  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(msg, msglen, "staging directory %s: %s", dir, strerror(errno));
    return -errno;
  }
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(msg, msglen, "staging directory %s: not a directory", dir);
    return -ENOTDIR;
  }
  /* The staged blocks are the user's disk: nobody else may read them. */
  if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) != 0) {
    snprintf(msg, msglen, "staging directory %s: chmod: %s", dir, strerror(errno));
    return -errno;
  }
  return 0;
}

int
staging_open(const char *dir, const char *source, uint64_t size, bool must_exist,
             struct staging **out, char *msg, size_t msglen)
{
  struct staging *s;
  pthread_rwlockattr_t ra;
  char path[PATH_MAX];
  struct stat st;
  bool fresh;
  int rc;

  *out = NULL;
  if (size % EBS_BLOCK_SIZE) {
    snprintf(msg, msglen, "image size %llu is not a multiple of 512 KiB",
             (unsigned long long) size);
    return -EINVAL;
  }
  if (!must_exist && (rc = make_dir(dir, msg, msglen)) < 0)
    return rc;
  s = calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->journal_fd = -1;
  s->dir = strdup(dir);
  s->source = source ? strdup(source) : NULL;
  s->size = size;
  s->nblocks = size / EBS_BLOCK_SIZE;
  pthread_rwlockattr_init(&ra);
  /* A commit waiting for the lock must not starve behind a stream of writes. */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  if (s->dir == NULL || (source && s->source == NULL) ||
      pthread_rwlock_init(&s->commit_lock, &ra) != 0) {
    pthread_rwlockattr_destroy(&ra);
    free(s->dir);
    free(s->source);
    free(s);
    snprintf(msg, msglen, "out of memory");
    return -ENOMEM;
  }
  pthread_rwlockattr_destroy(&ra);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->filled, NULL);

  snprintf(path, sizeof path, "%s/%s", dir, JOURNAL_FILE);
  fresh = stat(path, &st) != 0 || st.st_size == 0;
  if (fresh && must_exist) {
    snprintf(msg, msglen, "%s: no staging journal here", dir);
    rc = -ENOENT;
    goto fail;
  }
  s->journal_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (s->journal_fd < 0) {
    rc = -errno;
    snprintf(msg, msglen, "%s: %s", path, strerror(errno));
    goto fail;
  }
  /* One user at a time: a mount and a --resume of the same directory would
   * interleave their journals.  The lock goes away with the process. */
  if (flock(s->journal_fd, LOCK_EX | LOCK_NB) != 0) {
    rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
    snprintf(msg, msglen, "staging directory %s: %s", dir, rc == -EBUSY ?
             "in use by another ebsfs (a mount or a --resume)" : strerror(-rc));
    goto fail;
  }
  if (fresh) {
    if ((rc = alloc_bitmaps(s)) < 0 ||
        (rc = journal_append(s, "H %d %s %llu", JOURNAL_VERSION, source ? source : "-",
                             (unsigned long long) size)) < 0) {
      snprintf(msg, msglen, "%s: cannot start the journal: %s", path, strerror(-rc));
      goto fail;
    }
  } else if ((rc = replay(s, msg, msglen)) == -ENOENT && !must_exist) {
    /* Only a torn header was there (a crash at the very first append). */
    if ((rc = alloc_bitmaps(s)) < 0 ||
        (rc = journal_append(s, "H %d %s %llu", JOURNAL_VERSION, source ? source : "-",
                             (unsigned long long) size)) < 0) {
      snprintf(msg, msglen, "%s: cannot start the journal: %s", path, strerror(-rc));
      goto fail;
    }
  } else if (rc < 0) {
    goto fail;
  }

  s->nchunks = (unsigned) ((s->nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS);
  s->data_fds = malloc(s->nchunks * sizeof *s->data_fds);
  if (s->data_fds == NULL) {
    rc = -ENOMEM;
    snprintf(msg, msglen, "out of memory");
    goto fail;
  }
  for (unsigned c = 0; c < s->nchunks; c++) {
    snprintf(path, sizeof path, "%s/" DATA_FILE_FMT, dir, c);
    s->data_fds[c] = open(path, O_RDWR | O_CLOEXEC);
    if (s->data_fds[c] < 0 && errno != ENOENT) {
      rc = -errno;
      snprintf(msg, msglen, "%s: %s", path, strerror(errno));
      goto fail;
    }
  }
  if (fresh && (fsync(s->journal_fd) != 0 || staging_sync(s) != 0))
    log_warn("staging %s: fsync: %s", dir, strerror(errno));
  *out = s;
  return 0;

 fail:
  staging_close(s);
  return rc;
}

void
staging_close(struct staging *s)
{
  if (s == NULL)
    return;
  for (unsigned c = 0; s->data_fds && c < s->nchunks; c++)
    if (s->data_fds[c] >= 0)
      close(s->data_fds[c]);
  free(s->data_fds);
  if (s->journal_fd >= 0)
    close(s->journal_fd);
  pthread_cond_destroy(&s->filled);
  pthread_mutex_destroy(&s->lock);
  pthread_rwlock_destroy(&s->commit_lock);
  free(s->present);
  free(s->dirty);
  free(s->put);
  free(s->busy);
  free(s->source);
  free(s->dir);
  free(s);
}

int
staging_remove(struct staging *s)
{
  char path[PATH_MAX];
  int rc = 0;

  for (unsigned c = 0; c < s->nchunks; c++) {
    snprintf(path, sizeof path, "%s/" DATA_FILE_FMT, s->dir, c);
    if (unlink(path) != 0 && errno != ENOENT)
      rc = -errno;
  }
  snprintf(path, sizeof path, "%s/%s.compact", s->dir, JOURNAL_FILE);
  if (unlink(path) != 0 && errno != ENOENT)   /* left by a crash mid-compaction */
    rc = -errno;
  snprintf(path, sizeof path, "%s/%s", s->dir, JOURNAL_FILE);
  if (unlink(path) != 0 && errno != ENOENT)
    rc = -errno;
  if (rc == 0 && rmdir(s->dir) != 0 && errno != ENOENT)
    rc = -errno;
  return rc;
}

const char *staging_dir(const struct staging *s) { return s->dir; }
const char *staging_source(const struct staging *s) { return s->source; }
uint64_t staging_size(const struct staging *s) { return s->size; }
uint64_t staging_nblocks(const struct staging *s) { return s->nblocks; }
/* The data file holding block and the block's offset in it; created when
 * create is set.  Returns the fd or -errno. */
static int
chunk_fd(struct staging *s, uint64_t block, bool create, off_t *off)
{
  unsigned c = (unsigned) (block / CHUNK_BLOCKS);
  int fd;

  *off = (off_t) ((block % CHUNK_BLOCKS) * (uint64_t) EBS_BLOCK_SIZE);
  pthread_mutex_lock(&s->lock);
  fd = s->data_fds[c];
  if (fd < 0 && create) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" DATA_FILE_FMT, s->dir, c);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      fd = -errno;
      log_error("staging %s: %s", path, strerror(errno));
    } else {
      s->data_fds[c] = fd;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return fd < 0 && !create ? -ENOENT : fd;
}

int
staging_block_fd(struct staging *s, uint64_t block, off_t *off)
{
  return chunk_fd(s, block, false, off);
}

void
staging_parent(struct staging *s, char out[EBS_SNAPSHOT_ID_MAX + 1])
{
  pthread_mutex_lock(&s->lock);
  snprintf(out, EBS_SNAPSHOT_ID_MAX + 1, "%s",
           s->last_committed[0] ? s->last_committed : s->source ? s->source : "");
  pthread_mutex_unlock(&s->lock);
}

void
staging_last_committed(struct staging *s, char out[EBS_SNAPSHOT_ID_MAX + 1])
{
  pthread_mutex_lock(&s->lock);
  snprintf(out, EBS_SNAPSHOT_ID_MAX + 1, "%s", s->last_committed);
  pthread_mutex_unlock(&s->lock);
}

/* ---- the write path --------------------------------------------------------------- */

void staging_writers_enter(struct staging *s) { pthread_rwlock_rdlock(&s->commit_lock); }
void staging_writers_leave(struct staging *s) { pthread_rwlock_unlock(&s->commit_lock); }
void staging_commit_enter(struct staging *s) { pthread_rwlock_wrlock(&s->commit_lock); }
void staging_commit_leave(struct staging *s) { pthread_rwlock_unlock(&s->commit_lock); }

bool
staging_has_block(struct staging *s, uint64_t block)
{
  bool r;

  if (block >= s->nblocks)
    return false;
  pthread_mutex_lock(&s->lock);
  r = bit_get(s->present, block);
  pthread_mutex_unlock(&s->lock);
  return r;
}

uint64_t
staging_next_staged(struct staging *s, uint64_t from)
{
  uint64_t b = from;

  pthread_mutex_lock(&s->lock);
  while (b < s->nblocks) {
    if ((b & 7) == 0 && s->present[b >> 3] == 0) {
      b += 8;                          /* skip empty bytes quickly */
      continue;
    }
    if (bit_get(s->present, b))
      break;
    b++;
  }
  pthread_mutex_unlock(&s->lock);
  return b < s->nblocks ? b : s->nblocks;
}

int
staging_begin_block(struct staging *s, uint64_t block)
{
  int rc;

  if (block >= s->nblocks)
    return -EINVAL;
  pthread_mutex_lock(&s->lock);
  /* Another writer brings the base block in: wait for it, then overlay. */
  while (bit_get(s->busy, block))
    pthread_cond_wait(&s->filled, &s->lock);
  if (bit_get(s->present, block)) {
    rc = 0;
  } else {
    bit_set(s->busy, block);
    rc = 1;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static int
pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    p += n;
    len -= (size_t) n;
    off += n;
  }
  return 0;
}

/* The block's data is in place: journal it as written (once per commit). */
static int
mark_dirty(struct staging *s, uint64_t block)
{
  int rc = 0;

  if (!bit_get(s->dirty, block) || bit_get(s->put, block))
    rc = journal_append(s, "W %llu", (unsigned long long) block);
  if (rc == 0) {
    if (!bit_get(s->dirty, block)) {
      bit_set(s->dirty, block);
      s->ndirty++;
    }
    bit_clear(s->put, block);
  }
  return rc;
}

int
staging_fill_block(struct staging *s, uint64_t block, const void *data)
{
  off_t off;
  int fd = chunk_fd(s, block, true, &off);
  int rc = fd < 0 ? fd : pwrite_all(fd, data, EBS_BLOCK_SIZE, off);

  if (rc < 0)
    log_error("staging %s: writing block %llu: %s", s->dir, (unsigned long long) block,
              strerror(-rc));
  pthread_mutex_lock(&s->lock);
  if (rc == 0)
    rc = mark_dirty(s, block);
  if (rc == 0)
    bit_set(s->present, block);
  bit_clear(s->busy, block);
  pthread_cond_broadcast(&s->filled);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

void
staging_abort_block(struct staging *s, uint64_t block)
{
  pthread_mutex_lock(&s->lock);
  bit_clear(s->busy, block);
  pthread_cond_broadcast(&s->filled);
  pthread_mutex_unlock(&s->lock);
}

int
staging_write(struct staging *s, uint64_t block, size_t off_in_block,
              const void *buf, size_t len)
{
  off_t off;
  int fd, rc;

  if (off_in_block + len > EBS_BLOCK_SIZE)
    return -EINVAL;
  fd = chunk_fd(s, block, true, &off);
  rc = fd < 0 ? fd : pwrite_all(fd, buf, len, off + (off_t) off_in_block);
  if (rc < 0) {
    log_error("staging %s: writing block %llu: %s", s->dir, (unsigned long long) block,
              strerror(-rc));
    return rc;
  }
  pthread_mutex_lock(&s->lock);
  rc = mark_dirty(s, block);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int
staging_sync(struct staging *s)
{
  int e = 0;

  /* Data before the journal that names it. */
  for (unsigned c = 0; c < s->nchunks && e == 0; c++) {
    int fd;
    pthread_mutex_lock(&s->lock);
    fd = s->data_fds[c];
    pthread_mutex_unlock(&s->lock);
    if (fd >= 0 && fdatasync(fd) != 0)
      e = errno;
  }
  if (e == 0 && fsync(s->journal_fd) != 0)
    e = errno;
  if (e) {
    log_error("staging %s: fsync: %s", s->dir, strerror(e));
    return -e;
  }
  return 0;
}

int
staging_sync_journal(struct staging *s)
{
  if (fsync(s->journal_fd) != 0) {
    int e = errno;
    log_error("staging %s: fsync journal: %s", s->dir, strerror(e));
    return -e;
  }
  return 0;
}

/* ---- the commit ------------------------------------------------------------------ */

int
staging_dirty_blocks(struct staging *s, uint32_t **out, size_t *n)
{
  uint32_t *v = NULL;
  size_t k = 0;

  pthread_mutex_lock(&s->lock);
  if (s->ndirty > 0) {
    v = malloc(s->ndirty * sizeof *v);
    if (v == NULL) {
      pthread_mutex_unlock(&s->lock);
      return -ENOMEM;
    }
    for (uint64_t b = 0; b < s->nblocks && k < s->ndirty; b++) {
      if ((b & 7) == 0 && s->dirty[b >> 3] == 0) {
        b += 7;
        continue;
      }
      if (bit_get(s->dirty, b))
        v[k++] = (uint32_t) b;
    }
  }
  pthread_mutex_unlock(&s->lock);
  *out = v;
  *n = k;
  return 0;
}

bool
staging_block_put(struct staging *s, uint64_t block)
{
  bool r;

  pthread_mutex_lock(&s->lock);
  r = block < s->nblocks && bit_get(s->put, block);
  pthread_mutex_unlock(&s->lock);
  return r;
}

int
staging_read_block(struct staging *s, uint64_t block, void *buf)
{
  char *p = buf;
  size_t len = EBS_BLOCK_SIZE;
  off_t off;
  int fd = chunk_fd(s, block, false, &off);

  if (fd < 0)
    return fd;
  while (len > 0) {
    ssize_t n = pread(fd, p, len, off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0) {                     /* a sparse tail: zeros */
      memset(p, 0, len);
      break;
    }
    p += n;
    len -= (size_t) n;
    off += n;
  }
  return 0;
}

bool
staging_pending(struct staging *s, struct staging_attempt *out)
{
  bool r;

  pthread_mutex_lock(&s->lock);
  r = s->pending;
  if (r && out)
    *out = s->attempt;
  pthread_mutex_unlock(&s->lock);
  return r;
}

int
staging_log_attempt(struct staging *s, const struct staging_attempt *a)
{
  char tok[3 * STAGING_TOKEN_MAX + 1], par[3 * EBS_SNAPSHOT_ID_MAX + 4];
  char kms[3 * STAGING_TEXT_MAX + 1], desc[3 * STAGING_TEXT_MAX + 1], tags[3 * STAGING_TEXT_MAX + 1];
  int rc;

  staging_encode(a->token, tok, sizeof tok);
  staging_encode(a->parent, par, sizeof par);
  staging_encode(a->kms_key_arn, kms, sizeof kms);
  staging_encode(a->description, desc, sizeof desc);
  staging_encode(a->tags, tags, sizeof tags);
  pthread_mutex_lock(&s->lock);
  rc = journal_append(s, "A %s %s %lld %d %d %s %s %s", tok, par,
                      (long long) a->volume_size_gib, a->timeout_minutes,
                      a->encrypted ? 1 : 0, kms, desc, tags);
  if (rc == 0) {
    s->pending = true;
    s->attempt = *a;
    s->attempt.snapshot_id[0] = '\0';
    memset(s->put, 0, bitmap_bytes(s->nblocks));
  }
  pthread_mutex_unlock(&s->lock);
  /* The token must survive a crash before StartSnapshot is sent, or a
   * resume would start a second snapshot. */
  return rc == 0 ? staging_sync_journal(s) : rc;
}

int
staging_log_started(struct staging *s, const char *snapshot_id)
{
  int rc;

  pthread_mutex_lock(&s->lock);
  rc = journal_append(s, "S %s", snapshot_id);
  if (rc == 0)
    snprintf(s->attempt.snapshot_id, sizeof s->attempt.snapshot_id, "%s", snapshot_id);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int
staging_log_put(struct staging *s, uint64_t block)
{
  int rc;

  pthread_mutex_lock(&s->lock);
  rc = journal_append(s, "P %llu", (unsigned long long) block);
  if (rc == 0)
    bit_set(s->put, block);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- compaction ----------------------------------------------------------------- */

#define COMPACT_MIN_BYTES (256 * 1024)  /* smaller journals are left alone */
#define B_RECORD_DIGITS 2048            /* 8192 blocks per "B" record */

/* After a commit nothing is dirty or pending: the whole state is the present
 * blocks and the last commit.  Write that to a new journal, locked before it
 * replaces the old one (rename is atomic: a crash leaves one or the other).
 * Caller holds s->lock.  0 or -errno (the old journal then stays). */
static int
compact(struct staging *s)
{
  char tmp[PATH_MAX], path[PATH_MAX], rec[B_RECORD_DIGITS + 64];
  static const char hex[] = "0123456789abcdef";
  int old = s->journal_fd, fd, rc = 0;

  snprintf(path, sizeof path, "%s/%s", s->dir, JOURNAL_FILE);
  snprintf(tmp, sizeof tmp, "%s/%s.compact", s->dir, JOURNAL_FILE);
  fd = open(tmp, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    rc = -errno;
    close(fd);
    unlink(tmp);
    return rc;
  }
  s->journal_fd = fd;                   /* journal_append writes here for now */
  rc = journal_append(s, "H %d %s %llu", JOURNAL_VERSION, s->source ? s->source : "-",
                      (unsigned long long) s->size);
  for (uint64_t b = 0; rc == 0 && b < s->nblocks; b += 4 * B_RECORD_DIGITS) {
    size_t n = 0, last = 0;
    int len;

    len = snprintf(rec, sizeof rec, "B %llu ", (unsigned long long) b);
    for (uint64_t x = b; x < s->nblocks && n < B_RECORD_DIGITS; x += 4, n++) {
      int v = 0;
      for (int k = 0; k < 4 && x + (uint64_t) k < s->nblocks; k++)
        v |= bit_get(s->present, x + (uint64_t) k) << k;
      rec[len + (int) n] = hex[v];
      if (v)
        last = n + 1;
    }
    if (last == 0)
      continue;                         /* nothing present here */
    rec[len + (int) last] = '\0';
    rc = journal_write(fd, rec);
  }
  if (rc == 0 && s->last_committed[0])
    rc = journal_append(s, "C %s", s->last_committed);
  s->journal_fd = old;
  if (rc == 0 && fsync(fd) != 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -errno;
  if (rc < 0) {
    close(fd);
    unlink(tmp);
    return rc;
  }
  /* Swap the file behind the same descriptor number: a concurrent fsync of
   * s->journal_fd reaches one journal or the other, never a closed fd.  The
   * lock belongs to the new file's description, which old now holds. */
  if (dup2(fd, old) < 0) {
    rc = -errno;
    close(fd);
    return rc;                          /* the new journal is in place; old still writes the old */
  }
  close(fd);
  /* The rename itself must survive a crash too. */
  {
    int d = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
      if (fsync(d) != 0)
        log_debug(LOG_SUB_STAGING, "staging %s: fsync: %s", s->dir, strerror(errno));
      close(d);
    }
  }
  return 0;
}

int
staging_log_committed(struct staging *s, const char *snapshot_id)
{
  struct stat st;
  int rc;

  pthread_mutex_lock(&s->lock);
  rc = journal_append(s, "C %s", snapshot_id);
  if (rc == 0) {
    snprintf(s->last_committed, sizeof s->last_committed, "%s", snapshot_id);
    memset(s->dirty, 0, bitmap_bytes(s->nblocks));
    memset(s->put, 0, bitmap_bytes(s->nblocks));
    s->ndirty = 0;
    s->pending = false;
    memset(&s->attempt, 0, sizeof s->attempt);
  }
  pthread_mutex_unlock(&s->lock);
  if (rc == 0)
    rc = staging_sync_journal(s);
  /* Each commit adds a W and a P line per block: keep the journal the size
   * of what it must remember (which blocks are here, the last commit). */
  if (rc == 0 && fstat(s->journal_fd, &st) == 0 && st.st_size >= COMPACT_MIN_BYTES) {
    int r = staging_compact(s);
    if (r < 0)
      log_warn("staging %s: cannot compact the journal: %s", s->dir, strerror(-r));
  }
  return rc;
}

int
staging_compact(struct staging *s)
{
  int rc;

  pthread_mutex_lock(&s->lock);
  rc = s->ndirty || s->pending ? -EBUSY : compact(s);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int
staging_log_rebased(struct staging *s, const char *snapshot_id)
{
  int rc;

  pthread_mutex_lock(&s->lock);
  rc = journal_append(s, "R %s", snapshot_id);
  if (rc == 0)
    rebase(s, snapshot_id);
  pthread_mutex_unlock(&s->lock);
  return rc == 0 ? staging_sync_journal(s) : rc;
}
