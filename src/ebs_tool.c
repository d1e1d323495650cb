/* ebs_tool.c - the EBS direct API operations from the command line.
 *
 * A thin driver over ebs.h, for the integration tests and for admins who
 * want to see what the service answers (`ebs_tool list snap-...`).  Endpoint
 * and region come from the usual AWS places (AWS_ENDPOINT_URL_EBS,
 * AWS_REGION, the profile...), credentials from the standard chain.
 *
 *   ebs_tool [OPTIONS] list SNAP [--all] [--max-results N] [--start I] [--page-token T]
 *   ebs_tool [OPTIONS] changed SECOND [--first FIRST] [--all] [--max-results N] [--start I]
 *   ebs_tool [OPTIONS] get SNAP INDEX TOKEN OUTFILE
 *   ebs_tool [OPTIONS] read SNAP OUTFILE          (all blocks, async; prints throughput)
 *   ebs_tool [OPTIONS] start --size GIB [--parent SNAP] [--description D]
 *                            [--client-token T] [--timeout MIN]
 *   ebs_tool [OPTIONS] put SNAP INDEX FILE [--progress P]   (prints the block's SHA-256, base64)
 *   ebs_tool [OPTIONS] complete SNAP COUNT [DIGEST_B64...]  (LINEAR over the digests given)
 *   ebs_tool [OPTIONS] upload IMAGE --size GIB [--parent SNAP] (start + put every block + complete)
 * OPTIONS: --endpoint URL --region R --profile P --in-flight N --rate R
 *   --connect-timeout-ms N --stall-timeout-ms N --max-attempts N
 *   --retry-budget-ms N --ca-bundle FILE --stats --debug
 * Exit status: 0 ok, 1 the operation failed (the typed error on stderr), 2 usage.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "aws_config.h"
#include "credentials.h"
#include "ebs.h"
#include "ebs_format.h"
#include "log.h"

struct tool {
  struct ebs_client *client;
  unsigned in_flight;
};

static void
usage(void)
{
  fprintf(stderr,
          "usage: ebs_tool [OPTIONS] list|changed|get|read|start|put|complete|upload ...\n"
          "  (see the top of src/ebs_tool.c)\n");
  exit(2);
}

static int
report(const char *what, const struct ebs_error *e)
{
  char line[1024];
  fprintf(stderr, "ebs_tool: %s: %s\n", what, ebs_error_string(e, line, sizeof line));
  return 1;
}

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long
num(const char *s)
{
  char *end;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < 0) {
    fprintf(stderr, "ebs_tool: '%s' is not a number\n", s);
    exit(2);
  }
  return v;
}

/* ---- list / changed ------------------------------------------------------------ */

static int
cmd_list(struct tool *t, int argc, char **argv)
{
  const char *snap, *token = NULL;
  bool all = false;
  long long start = -1, max = 0;
  struct ebs_block_page p;
  struct ebs_error err;
  char *next = NULL;
  unsigned long pages = 0, blocks = 0;

  if (argc < 1)
    usage();
  snap = argv[0];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--all") == 0) all = true;
    else if (strcmp(argv[i], "--max-results") == 0 && i + 1 < argc) max = num(argv[++i]);
    else if (strcmp(argv[i], "--start") == 0 && i + 1 < argc) start = num(argv[++i]);
    else if (strcmp(argv[i], "--page-token") == 0 && i + 1 < argc) token = argv[++i];
    else usage();
  }
  do {
    if (ebs_list_snapshot_blocks(t->client, snap, next ? next : token, next ? -1 : start,
                                 (int) max, &p, &err) < 0) {
      free(next);
      return report("ListSnapshotBlocks", &err);
    }
    pages++;
    if (pages == 1)
      printf("volume-size %" PRId64 "\nblock-size %" PRIu32 "\nexpiry %.3f\n",
             p.volume_size_gib, p.block_size, p.expiry_time);
    for (size_t i = 0; i < p.nblocks; i++)
      printf("block %" PRIu32 " %s\n", p.blocks[i].index, p.blocks[i].token);
    blocks += p.nblocks;
    free(next);
    next = p.next_token ? strdup(p.next_token) : NULL;
    ebs_block_page_free(&p);
    if (!all && next)
      printf("next %s\n", next);
  } while (all && next);
  free(next);
  printf("pages %lu\nblocks %lu\n", pages, blocks);
  return 0;
}

static int
cmd_changed(struct tool *t, int argc, char **argv)
{
  const char *second, *first = NULL, *token = NULL;
  bool all = false;
  long long start = -1, max = 0;
  struct ebs_changed_page p;
  struct ebs_error err;
  char *next = NULL;
  unsigned long pages = 0, blocks = 0;

  if (argc < 1)
    usage();
  second = argv[0];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--all") == 0) all = true;
    else if (strcmp(argv[i], "--first") == 0 && i + 1 < argc) first = argv[++i];
    else if (strcmp(argv[i], "--max-results") == 0 && i + 1 < argc) max = num(argv[++i]);
    else if (strcmp(argv[i], "--start") == 0 && i + 1 < argc) start = num(argv[++i]);
    else if (strcmp(argv[i], "--page-token") == 0 && i + 1 < argc) token = argv[++i];
    else usage();
  }
  do {
    if (ebs_list_changed_blocks(t->client, first, second, next ? next : token,
                                next ? -1 : start, (int) max, &p, &err) < 0) {
      free(next);
      return report("ListChangedBlocks", &err);
    }
    pages++;
    for (size_t i = 0; i < p.nblocks; i++)
      printf("changed %" PRIu32 " %s %s\n", p.blocks[i].index,
             p.blocks[i].first_token ? p.blocks[i].first_token : "-",
             p.blocks[i].second_token ? p.blocks[i].second_token : "-");
    blocks += p.nblocks;
    free(next);
    next = p.next_token ? strdup(p.next_token) : NULL;
    ebs_changed_page_free(&p);
    if (!all && next)
      printf("next %s\n", next);
  } while (all && next);
  free(next);
  printf("pages %lu\nblocks %lu\n", pages, blocks);
  return 0;
}

/* ---- get / read ---------------------------------------------------------------------- */

static int
write_file(const char *path, const void *data, size_t len, off_t off, bool create)
{
  int fd = open(path, O_WRONLY | O_CREAT | (create ? O_TRUNC : 0), 0644);
  const char *p = data;
  if (fd < 0)
    return -errno;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, off);
    if (n < 0) {
      int e = errno;
      close(fd);
      return -e;
    }
    p += n;
    off += n;
    len -= (size_t) n;
  }
  return close(fd) < 0 ? -errno : 0;
}

static int
cmd_get(struct tool *t, int argc, char **argv)
{
  struct ebs_error err;
  void *buf;
  int r;

  if (argc != 4)
    usage();
  buf = malloc(EBS_BLOCK_SIZE);
  if (buf == NULL)
    return 1;
  if (ebs_get_snapshot_block(t->client, argv[0], (uint32_t) num(argv[1]), argv[2], buf, &err) < 0) {
    free(buf);
    return report("GetSnapshotBlock", &err);
  }
  r = write_file(argv[3], buf, EBS_BLOCK_SIZE, 0, true);
  free(buf);
  if (r < 0) {
    fprintf(stderr, "ebs_tool: %s: %s\n", argv[3], strerror(-r));
    return 1;
  }
  return 0;
}

/* read: every listed block, N asynchronous GetSnapshotBlock in flight; the
 * completions come back on the transport's thread and are handed to main
 * through a small queue (done callbacks must not block on file I/O). */
struct slot {
  void *buf;
  uint32_t index;
  int rc;
  struct ebs_error err;
  struct slot *next;
  struct read_ctx *ctx;
};

struct read_ctx {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct slot *done_list;
};

static void
read_done(void *arg, int rc, const struct ebs_error *err)
{
  struct slot *s = arg;
  struct read_ctx *ctx = s->ctx;
  s->rc = rc;
  if (rc < 0)
    s->err = *err;
  pthread_mutex_lock(&ctx->lock);
  s->next = ctx->done_list;
  ctx->done_list = s;
  pthread_cond_signal(&ctx->cond);
  pthread_mutex_unlock(&ctx->lock);
}

static int
cmd_read(struct tool *t, int argc, char **argv)
{
  const char *snap, *out;
  struct ebs_block_page p;
  struct ebs_error err;
  uint32_t *idx = NULL;
  char **tok = NULL;
  size_t n = 0, cap = 0, next_i = 0, completed = 0, failed = 0;
  char *next = NULL;
  int64_t gib = 0;
  struct read_ctx ctx;
  struct slot *slots, *free_list = NULL;
  double t0, t1;
  struct stat st;
  int fd, rc = 0;

  if (argc != 2)
    usage();
  snap = argv[0];
  out = argv[1];
  do {
    if (ebs_list_snapshot_blocks(t->client, snap, next, -1, 0, &p, &err) < 0) {
      free(next);
      return report("ListSnapshotBlocks", &err);
    }
    gib = p.volume_size_gib;
    for (size_t i = 0; i < p.nblocks; i++) {
      if (n == cap) {
        cap = cap ? cap * 2 : 1024;
        idx = realloc(idx, cap * sizeof *idx);
        tok = realloc(tok, cap * sizeof *tok);
        if (idx == NULL || tok == NULL)
          abort();
      }
      idx[n] = p.blocks[i].index;
      tok[n] = strdup(p.blocks[i].token);
      if (tok[n] == NULL)
        abort();
      n++;
    }
    free(next);
    next = p.next_token ? strdup(p.next_token) : NULL;
    ebs_block_page_free(&p);
  } while (next);

  fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || fstat(fd, &st) < 0 ||
      (S_ISREG(st.st_mode) && ftruncate(fd, (off_t) gib << 30) < 0)) {
    fprintf(stderr, "ebs_tool: %s: %s\n", out, strerror(errno));
    return 1;
  }
  pthread_mutex_init(&ctx.lock, NULL);
  pthread_cond_init(&ctx.cond, NULL);
  ctx.done_list = NULL;
  slots = calloc(t->in_flight, sizeof *slots);
  if (slots == NULL)
    abort();
  for (unsigned i = 0; i < t->in_flight; i++) {
    slots[i].buf = malloc(EBS_BLOCK_SIZE);
    if (slots[i].buf == NULL)
      abort();
    slots[i].ctx = &ctx;
    slots[i].next = free_list;
    free_list = &slots[i];
  }

  t0 = now_s();
  while (completed < n) {
    struct slot *d;
    while (free_list && next_i < n) {
      struct slot *s = free_list;
      free_list = s->next;
      s->index = idx[next_i];
      if (ebs_get_snapshot_block_async(t->client, snap, idx[next_i], tok[next_i], s->buf,
                                       false, read_done, s) < 0) {
        fprintf(stderr, "ebs_tool: cannot queue block %" PRIu32 "\n", idx[next_i]);
        return 1;
      }
      next_i++;
    }
    pthread_mutex_lock(&ctx.lock);
    while (ctx.done_list == NULL)
      pthread_cond_wait(&ctx.cond, &ctx.lock);
    d = ctx.done_list;
    ctx.done_list = NULL;
    pthread_mutex_unlock(&ctx.lock);
    while (d) {
      struct slot *nx = d->next;
      completed++;
      if (d->rc < 0) {
        char what[64];
        snprintf(what, sizeof what, "GetSnapshotBlock %" PRIu32, d->index);
        report(what, &d->err);
        failed++;
      }
      else if (S_ISREG(st.st_mode) &&
               pwrite(fd, d->buf, EBS_BLOCK_SIZE, (off_t) d->index * EBS_BLOCK_SIZE) !=
               (ssize_t) EBS_BLOCK_SIZE) {
        fprintf(stderr, "ebs_tool: %s: %s\n", out, strerror(errno));
        failed++;
      }
      d->next = free_list;
      free_list = d;
      d = nx;
    }
  }
  t1 = now_s();
  if (close(fd) < 0)
    rc = 1;
  fprintf(stderr, "read %zu blocks in %.3f s: %.1f blocks/s, %.1f MiB/s, %u in flight\n",
          n, t1 - t0, n / (t1 - t0 > 0 ? t1 - t0 : 1e-9),
          n * 0.5 / (t1 - t0 > 0 ? t1 - t0 : 1e-9), t->in_flight);
  for (unsigned i = 0; i < t->in_flight; i++)
    free(slots[i].buf);
  free(slots);
  for (size_t i = 0; i < n; i++)
    free(tok[i]);
  free(tok);
  free(idx);
  return failed ? 1 : rc;
}

/* ---- write side ---------------------------------------------------------------------- */

static int
cmd_start(struct tool *t, int argc, char **argv)
{
  struct ebs_start_params sp;
  struct ebs_snapshot_info info;
  struct ebs_error err;

  memset(&sp, 0, sizeof sp);
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) sp.volume_size_gib = num(argv[++i]);
    else if (strcmp(argv[i], "--parent") == 0 && i + 1 < argc) sp.parent_snapshot_id = argv[++i];
    else if (strcmp(argv[i], "--description") == 0 && i + 1 < argc) sp.description = argv[++i];
    else if (strcmp(argv[i], "--client-token") == 0 && i + 1 < argc) sp.client_token = argv[++i];
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) sp.timeout_minutes = (int) num(argv[++i]);
    else usage();
  }
  if (ebs_start_snapshot(t->client, &sp, &info, &err) < 0)
    return report("StartSnapshot", &err);
  printf("%s %s\n", info.snapshot_id, info.status);
  return 0;
}

static int
read_block_file(const char *path, void *buf)
{
  int fd = open(path, O_RDONLY);
  ssize_t n;
  if (fd < 0)
    return -errno;
  n = read(fd, buf, EBS_BLOCK_SIZE);
  close(fd);
  if (n != (ssize_t) EBS_BLOCK_SIZE)
    return -EINVAL;
  return 0;
}

static int
cmd_put(struct tool *t, int argc, char **argv)
{
  struct ebs_error err;
  unsigned char digest[32];
  char b64[EBS_B64_SHA256_LEN + 1];
  int progress = -1, r;
  void *buf;

  if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--progress") == 0))
    usage();
  if (argc == 5)
    progress = (int) num(argv[4]);
  buf = malloc(EBS_BLOCK_SIZE);
  if (buf == NULL)
    return 1;
  r = read_block_file(argv[2], buf);
  if (r < 0) {
    fprintf(stderr, "ebs_tool: %s: %s (a block file is exactly %u bytes)\n", argv[2],
            strerror(-r), EBS_BLOCK_SIZE);
    free(buf);
    return 1;
  }
  ebs_sha256(buf, EBS_BLOCK_SIZE, digest);
  r = ebs_put_snapshot_block(t->client, argv[0], (uint32_t) num(argv[1]), buf, digest,
                             progress, &err);
  free(buf);
  if (r < 0)
    return report("PutSnapshotBlock", &err);
  ebs_b64_digest(digest, b64);
  printf("%s\n", b64);
  return 0;
}

static int
b64_to_digest(const char *s, unsigned char out[32])
{
  unsigned char tmp[48];
  if (strlen(s) != EBS_B64_SHA256_LEN ||
      EVP_DecodeBlock(tmp, (const unsigned char *) s, EBS_B64_SHA256_LEN) != 33)
    return -1;
  memcpy(out, tmp, 32);
  return 0;
}

static int
cmd_complete(struct tool *t, int argc, char **argv)
{
  struct ebs_error err;
  unsigned char (*digests)[32] = NULL, linear[32];
  char status[16];
  int nd;

  if (argc < 2)
    usage();
  nd = argc - 2;
  if (nd > 0) {
    digests = calloc((size_t) nd, 32);
    if (digests == NULL)
      return 1;
    for (int i = 0; i < nd; i++)
      if (b64_to_digest(argv[2 + i], digests[i]) < 0) {
        fprintf(stderr, "ebs_tool: '%s' is not a base64 SHA-256\n", argv[2 + i]);
        free(digests);
        return 2;
      }
    ebs_linear_checksum((const unsigned char (*)[32]) digests, (size_t) nd, linear);
  }
  if (ebs_complete_snapshot(t->client, argv[0], (uint32_t) num(argv[1]),
                            nd > 0 ? linear : NULL, status, &err) < 0) {
    free(digests);
    return report("CompleteSnapshot", &err);
  }
  free(digests);
  printf("%s\n", status);
  return 0;
}

/* upload: every 512 KiB block of IMAGE (zeros too: a block that is written
 * is always sent), t->in_flight PUTs at a time, then CompleteSnapshot with
 * the LINEAR checksum. */
struct put_slot {
  void *buf;
  int rc;
  uint32_t index;
  struct ebs_error err;
  struct put_slot *next;
  struct read_ctx *ctx;
};

static void
put_done(void *arg, int rc, const struct ebs_error *err)
{
  struct put_slot *s = arg;
  struct read_ctx *ctx = s->ctx;
  s->rc = rc;
  if (rc < 0)
    s->err = *err;
  pthread_mutex_lock(&ctx->lock);
  s->next = (struct put_slot *) (void *) ctx->done_list;
  ctx->done_list = (struct slot *) (void *) s;
  pthread_cond_signal(&ctx->cond);
  pthread_mutex_unlock(&ctx->lock);
}

static int
cmd_upload(struct tool *t, int argc, char **argv)
{
  struct ebs_start_params sp;
  struct ebs_snapshot_info info;
  struct ebs_error err;
  struct read_ctx ctx;
  struct put_slot *slots, *free_list = NULL;
  unsigned char (*digests)[32], linear[32];
  const char *image;
  struct stat st;
  size_t nblocks, next_i = 0, completed = 0, failed = 0;
  char status[16];
  int fd;

  if (argc < 1)
    usage();
  image = argv[0];
  memset(&sp, 0, sizeof sp);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) sp.volume_size_gib = num(argv[++i]);
    else if (strcmp(argv[i], "--parent") == 0 && i + 1 < argc) sp.parent_snapshot_id = argv[++i];
    else usage();
  }
  fd = open(image, O_RDONLY);
  if (fd < 0 || fstat(fd, &st) < 0) {
    fprintf(stderr, "ebs_tool: %s: %s\n", image, strerror(errno));
    return 1;
  }
  if (sp.volume_size_gib == 0)
    sp.volume_size_gib = (st.st_size + (1ll << 30) - 1) >> 30;
  if (sp.volume_size_gib == 0)
    sp.volume_size_gib = 1;
  nblocks = (size_t) ((st.st_size + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
  digests = calloc(nblocks ? nblocks : 1, 32);
  if (digests == NULL)
    abort();
  if (ebs_start_snapshot(t->client, &sp, &info, &err) < 0)
    return report("StartSnapshot", &err);

  pthread_mutex_init(&ctx.lock, NULL);
  pthread_cond_init(&ctx.cond, NULL);
  ctx.done_list = NULL;
  slots = calloc(t->in_flight, sizeof *slots);
  if (slots == NULL)
    abort();
  for (unsigned i = 0; i < t->in_flight; i++) {
    slots[i].buf = malloc(EBS_BLOCK_SIZE);
    if (slots[i].buf == NULL)
      abort();
    slots[i].ctx = &ctx;
    slots[i].next = free_list;
    free_list = &slots[i];
  }
  while (completed < nblocks) {
    struct put_slot *d;
    while (free_list && next_i < nblocks) {
      struct put_slot *s = free_list;
      ssize_t n;
      free_list = s->next;
      memset(s->buf, 0, EBS_BLOCK_SIZE);
      n = pread(fd, s->buf, EBS_BLOCK_SIZE, (off_t) next_i * EBS_BLOCK_SIZE);
      if (n < 0) {
        fprintf(stderr, "ebs_tool: %s: %s\n", image, strerror(errno));
        return 1;
      }
      s->index = (uint32_t) next_i;
      ebs_sha256(s->buf, EBS_BLOCK_SIZE, digests[next_i]);
      if (ebs_put_snapshot_block_async(t->client, info.snapshot_id, s->index, s->buf,
                                       digests[next_i], -1, put_done, s) < 0) {
        fprintf(stderr, "ebs_tool: cannot queue block %zu\n", next_i);
        return 1;
      }
      next_i++;
    }
    pthread_mutex_lock(&ctx.lock);
    while (ctx.done_list == NULL)
      pthread_cond_wait(&ctx.cond, &ctx.lock);
    d = (struct put_slot *) (void *) ctx.done_list;
    ctx.done_list = NULL;
    pthread_mutex_unlock(&ctx.lock);
    while (d) {
      struct put_slot *nx = d->next;
      completed++;
      if (d->rc < 0) {
        char what[64];
        snprintf(what, sizeof what, "PutSnapshotBlock %" PRIu32, d->index);
        report(what, &d->err);
        failed++;
      }
      d->next = free_list;
      free_list = d;
      d = nx;
    }
  }
  close(fd);
  for (unsigned i = 0; i < t->in_flight; i++)
    free(slots[i].buf);
  free(slots);
  if (failed) {
    free(digests);
    return 1;
  }
  ebs_linear_checksum((const unsigned char (*)[32]) digests, nblocks, linear);
  free(digests);
  if (ebs_complete_snapshot(t->client, info.snapshot_id, (uint32_t) nblocks, linear,
                            status, &err) < 0)
    return report("CompleteSnapshot", &err);
  printf("%s %s\n", info.snapshot_id, status);
  return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
  struct ebs_client_config cfg;
  struct credentials_options co;
  struct credentials_provider *creds;
  struct ebs_error err;
  struct tool t;
  const char *endpoint_opt = NULL, *region_opt = NULL;
  char *region, *endpoint, why[256];
  bool stats = false;
  int i, rc;

  log_init("ebs_tool", LOG_LVL_WARN);
  memset(&cfg, 0, sizeof cfg);
  memset(&co, 0, sizeof co);
  memset(&t, 0, sizeof t);
  t.in_flight = 64;
  for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    const char *o = argv[i];
    if (strcmp(o, "--stats") == 0) { stats = true; continue; }
    if (strcmp(o, "--debug") == 0) { log_set_debug(LOG_SUB_ALL); continue; }
    if (i + 1 >= argc)
      usage();
    if (strcmp(o, "--endpoint") == 0) endpoint_opt = argv[++i];
    else if (strcmp(o, "--region") == 0) region_opt = argv[++i];
    else if (strcmp(o, "--profile") == 0) co.profile = argv[++i];
    else if (strcmp(o, "--in-flight") == 0) t.in_flight = (unsigned) num(argv[++i]);
    else if (strcmp(o, "--rate") == 0) cfg.rate_limit = (double) num(argv[++i]);
    else if (strcmp(o, "--connect-timeout-ms") == 0) cfg.connect_timeout_ms = (unsigned) num(argv[++i]);
    else if (strcmp(o, "--stall-timeout-ms") == 0) cfg.stall_timeout_ms = (unsigned) num(argv[++i]);
    else if (strcmp(o, "--max-attempts") == 0) cfg.max_attempts = (unsigned) num(argv[++i]);
    else if (strcmp(o, "--retry-budget-ms") == 0) cfg.retry_budget_ms = (unsigned) num(argv[++i]);
    else if (strcmp(o, "--ca-bundle") == 0) cfg.ca_bundle = argv[++i];
    else usage();
  }
  if (i >= argc || t.in_flight == 0)
    usage();

  region = aws_resolve_region(region_opt, aws_profile_name(co.profile), why, sizeof why);
  if (region == NULL) {
    fprintf(stderr, "ebs_tool: %s\n", why);
    return 1;
  }
  endpoint = aws_resolve_endpoint(endpoint_opt, region, why, sizeof why);
  if (endpoint == NULL) {
    fprintf(stderr, "ebs_tool: %s\n", why);
    return 1;
  }
  creds = credentials_provider_new(&co);
  if (creds == NULL) {
    fprintf(stderr, "ebs_tool: out of memory\n");
    return 1;
  }
  cfg.endpoint = endpoint;
  cfg.region = region;
  cfg.credentials = creds;
  cfg.max_in_flight = t.in_flight;
  t.client = ebs_client_new(&cfg, &err);
  if (t.client == NULL)
    return report("starting the EBS client", &err);

  if (strcmp(argv[i], "list") == 0) rc = cmd_list(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "changed") == 0) rc = cmd_changed(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "get") == 0) rc = cmd_get(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "read") == 0) rc = cmd_read(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "start") == 0) rc = cmd_start(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "put") == 0) rc = cmd_put(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "complete") == 0) rc = cmd_complete(&t, argc - i - 1, argv + i + 1);
  else if (strcmp(argv[i], "upload") == 0) rc = cmd_upload(&t, argc - i - 1, argv + i + 1);
  else usage();

  if (stats) {
    struct ebs_client_stats s;
    ebs_client_get_stats(t.client, &s);
    fprintf(stderr, "stats requests=%" PRIu64 " retries=%" PRIu64 " throttles=%" PRIu64
            " bytes_in=%" PRIu64 " bytes_out=%" PRIu64 "\n",
            s.requests, s.retries, s.throttles, s.bytes_in, s.bytes_out);
  }
  if (fflush(stdout) != 0)
    rc = 1;
  ebs_client_free(t.client);
  credentials_provider_free(creds);
  free(region);
  free(endpoint);
  return rc;
}
