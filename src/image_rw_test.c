/* image_rw_test.c - the image write path (-o rw) over a fake transport.
 *
 * Defines the ebs_* functions image.c uses (as image_test.c does), with a
 * 1 GiB fake volume whose every third block is listed and holds a pattern;
 * a GET completes on the caller's thread after a short sleep.  Checks: a
 * partial write into a listed block costs exactly one GET and keeps the
 * rest of the block; into a hole or a whole block, none; reads see staged
 * data (as file segments) over the source; concurrent writers of one block
 * all land; SEEK_DATA/SEEK_HOLE count staged blocks; writes at and across
 * the end; a new volume is zeros plus what was written; read-only images
 * refuse writes.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "block_cache.h"
#include "ebs.h"
#include "image.h"
#include "staging.h"
#include "testing.h"

#define NBLOCKS 2048u
#define BS ((uint64_t) EBS_BLOCK_SIZE)
#define SNAP "snap-0123456789abcdef0"

/* ---- the fake transport ------------------------------------------------------ */

struct ebs_client {
  pthread_mutex_t lock;
  unsigned gets[NBLOCKS];
  unsigned total_gets;
};

static bool listed(uint64_t b) { return b % 3 == 0; }

static unsigned char
pattern(uint64_t block, size_t i)
{
  return (unsigned char) ((block * 131 + i * 7 + (i >> 9)) & 0xff);
}

struct page_store {
  struct ebs_block_ref refs[10000];
  char tokens[10000][20];
  char next[32];
};

int
ebs_list_snapshot_blocks(struct ebs_client *c, const char *snapshot_id,
                         const char *page_token, int64_t starting_block,
                         int max_results, struct ebs_block_page *out,
                         struct ebs_error *err)
{
  struct page_store *ps;
  uint64_t b;
  size_t n = 0;

  (void) c;
  memset(out, 0, sizeof *out);
  if (strcmp(snapshot_id, SNAP) != 0) {
    memset(err, 0, sizeof *err);
    err->errnum = ENOENT;
    return -ENOENT;
  }
  ps = calloc(1, sizeof *ps);
  if (ps == NULL)
    return -ENOMEM;
  if (page_token)
    starting_block = strtoll(page_token, NULL, 10);
  for (b = starting_block < 0 ? 0 : (uint64_t) starting_block;
       b < NBLOCKS && n < (size_t) max_results; b++) {
    if (!listed(b))
      continue;
    snprintf(ps->tokens[n], sizeof ps->tokens[n], "Tk%u", (unsigned) b);
    ps->refs[n].index = (uint32_t) b;
    ps->refs[n].token = ps->tokens[n];
    n++;
  }
  while (b < NBLOCKS && !listed(b))
    b++;
  if (b < NBLOCKS) {
    snprintf(ps->next, sizeof ps->next, "%u", (unsigned) b);
    out->next_token = ps->next;
  }
  out->blocks = ps->refs;
  out->nblocks = n;
  out->volume_size_gib = 1;
  out->block_size = EBS_BLOCK_SIZE;
  out->storage_ = ps;
  return 0;
}

void
ebs_block_page_free(struct ebs_block_page *p)
{
  free(p->storage_);
  p->storage_ = NULL;
}

void
ebs_promote_block(struct ebs_client *c, const char *snapshot_id, uint32_t index)
{
  (void) c; (void) snapshot_id; (void) index;
}

/* Every GET here is done before it returns: nothing is left to cancel. */
void
ebs_cancel_snapshot(struct ebs_client *c, const char *snapshot_id)
{
  (void) c; (void) snapshot_id;
}

int
ebs_get_snapshot_block_async(struct ebs_client *c, const char *snapshot_id,
                             uint32_t index, const char *block_token, void *buf,
                             bool background, ebs_done_fn done, void *arg)
{
  (void) background;
  (void) snapshot_id; (void) block_token;
  pthread_mutex_lock(&c->lock);
  c->gets[index]++;
  c->total_gets++;
  pthread_mutex_unlock(&c->lock);
  usleep(2000);                         /* widen the window for concurrent writers */
  for (size_t i = 0; i < BS; i++)
    ((unsigned char *) buf)[i] = pattern(index, i);
  done(arg, 0, NULL);
  return 0;
}

bool
ebs_error_is(const struct ebs_error *e, const char *code, const char *reason)
{
  return strcmp(e->code, code) == 0 && (reason == NULL || strcmp(e->reason, reason) == 0);
}

const char *
ebs_error_string(const struct ebs_error *e, char *buf, size_t len)
{
  snprintf(buf, len, "%s (%s) [HTTP %d]", e->code, e->reason, e->http_status);
  return buf;
}

bool
ebs_valid_snapshot_id(const char *s)
{
  return strncmp(s, "snap-", 5) == 0 && s[5] != '\0';
}

/* ---- helpers ---------------------------------------------------------------------- */

static struct block_cache *cache;
static struct ebs_client fake;
static char dir_base[] = "/tmp/image_rw_test.XXXXXX";
static int ndirs;

static struct staging *
new_staging(const char *source, uint64_t size)
{
  char dir[256], msg[256];
  struct staging *s = NULL;

  snprintf(dir, sizeof dir, "%s/st%d", dir_base, ndirs++);
  if (staging_open(dir, source, size, false, &s, msg, sizeof msg) != 0)
    fprintf(stderr, "staging_open: %s\n", msg);
  return s;
}

/* Read [off, off+len) through the image into out (follows file segments). */
static int
read_range(struct image *img, uint64_t off, size_t len, unsigned char *out)
{
  struct image_reader *r = image_reader_new(img);
  size_t done = 0;

  while (done < len) {
    struct image_read rd;
    ssize_t n = image_read(r, off + done, len - done, &rd);
    if (n <= 0) {
      image_reader_free(r);
      return n < 0 ? (int) n : -EIO;
    }
    for (size_t i = 0; i < rd.nseg; i++) {
      if (rd.seg[i].mem)
        memcpy(out + done, rd.seg[i].mem, rd.seg[i].len);
      else if (pread(rd.seg[i].fd, out + done, rd.seg[i].len, rd.seg[i].fd_offset) !=
               (ssize_t) rd.seg[i].len)
        return -EIO;
      done += rd.seg[i].len;
    }
    image_read_release(&rd);
  }
  image_reader_free(r);
  return 0;
}

/* The expected content of a source block, with a model of the writes. */
static unsigned char *model;            /* 8 blocks' worth, for blocks 0..7 */

static void
model_init(void)
{
  model = malloc(8 * BS);
  for (uint64_t b = 0; b < 8; b++)
    for (size_t i = 0; i < BS; i++)
      model[b * BS + i] = listed(b) ? pattern(b, i) : 0;
}

static void
write_both(struct image *img, uint64_t off, const void *buf, size_t len)
{
  CHECK_INTEQ(image_write(img, buf, len, off), len);
  memcpy(model + off, buf, len);
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_partial_writes(struct image *img)
{
  static unsigned char got[8 * BS], whole[BS];
  unsigned before;

  model_init();
  /* Partial write into listed block 3: one GET, the rest of the block kept. */
  before = fake.total_gets;
  write_both(img, 3 * BS + 1000, "hello", 5);
  CHECK_INTEQ(fake.gets[3], 1);
  write_both(img, 3 * BS + 5000, "again", 5);
  CHECK_INTEQ(fake.gets[3], 1);         /* staged now: no more GETs */
  /* Partial write into hole 4, across into hole 5: zeros underneath, no GET. */
  write_both(img, 5 * BS - 2, "span", 4);
  /* A whole block over listed block 6: no GET. */
  memset(whole, 0xab, sizeof whole);
  write_both(img, 6 * BS, whole, BS);
  CHECK_INTEQ(fake.gets[6], 0);
  /* Zeros over listed data are data too. */
  memset(whole, 0, sizeof whole);
  write_both(img, 0, whole, 100);
  CHECK_INTEQ(fake.total_gets - before, 2);   /* blocks 3 and 0 */

  CHECK(read_range(img, 0, 8 * BS, got) == 0);
  CHECK(memcmp(got, model, 8 * BS) == 0);
  /* An unaligned read across staged and unstaged blocks. */
  CHECK(read_range(img, 2 * BS + 77, 3 * BS, got) == 0);
  CHECK(memcmp(got, model + 2 * BS + 77, 3 * BS) == 0);

  /* Seeks: blocks 4 and 5 are holes in the source but written here. */
  CHECK_INTEQ(image_seek(img, (off_t) (4 * BS), SEEK_DATA), 4 * BS);
  CHECK_INTEQ(image_seek(img, (off_t) (4 * BS), SEEK_HOLE), 7 * BS);
  CHECK_INTEQ(image_seek(img, (off_t) (7 * BS + 1), SEEK_DATA), 9 * BS);
  free(model);
}

struct writer_arg {
  struct image *img;
  int id;
};

/* Every writer writes its own bytes of blocks 9 and 10 (9 listed, 10 not). */
static void *
writer(void *p)
{
  struct writer_arg *a = p;
  unsigned char v = (unsigned char) (0x10 + a->id);

  for (uint64_t b = 9; b <= 10; b++)
    for (int k = 0; k < 4; k++) {
      uint64_t off = b * BS + (uint64_t) (k * 8 + a->id) * 1000;
      if (image_write(a->img, &v, 1, off) != 1)
        return (void *) 1;
    }
  return NULL;
}

static void
test_concurrent_writers(struct image *img)
{
  pthread_t t[8];
  struct writer_arg a[8];
  static unsigned char got[2 * BS];

  for (int i = 0; i < 8; i++) {
    a[i].img = img;
    a[i].id = i;
    pthread_create(&t[i], NULL, writer, &a[i]);
  }
  for (int i = 0; i < 8; i++) {
    void *r;
    pthread_join(t[i], &r);
    CHECK(r == NULL);
  }
  CHECK_INTEQ(fake.gets[9], 1);         /* one base fetch, shared by all */
  CHECK(read_range(img, 9 * BS, 2 * BS, got) == 0);
  for (uint64_t b = 0; b < 2; b++)
    for (size_t i = 0; i < BS; i++) {
      unsigned char want = b == 0 ? pattern(9, i) : 0;
      if (i % 1000 == 0 && i / 1000 < 32)
        want = (unsigned char) (0x10 + (i / 1000) % 8);
      if (got[b * BS + i] != want) {
        CHECK(got[b * BS + i] == want);
        fprintf(stderr, "  block %llu byte %zu\n", (unsigned long long) (9 + b), i);
        return;
      }
    }
}

static void
test_end(struct image *img)
{
  uint64_t size = image_size(img);
  unsigned char got[8];

  CHECK_INTEQ(image_write(img, "xyz", 3, size), -ENOSPC);
  CHECK_INTEQ(image_write(img, "abcdefgh", 8, size - 3), 3);   /* cut at the end */
  CHECK(read_range(img, size - 3, 3, got) == 0);
  CHECK(memcmp(got, "abc", 3) == 0);
}

static void
test_new_volume(void)
{
  struct image_options o = { .client = &fake, .cache = cache };
  struct ebs_error err;
  struct image *img = NULL;
  struct staging *s;
  static unsigned char got[3 * BS];
  unsigned before = fake.total_gets;

  CHECK(image_new_volume("new-volume", 3 * BS, &o, &img, &err) == 0);
  if (img == NULL)
    return;
  CHECK(!image_writable(img));
  CHECK_INTEQ(image_write(img, "x", 1, 0), -EROFS);
  s = new_staging(NULL, 3 * BS);
  if (s == NULL) {
    image_close(img);
    return;
  }
  image_attach_staging(img, s);
  CHECK(image_writable(img));
  CHECK_INTEQ(image_seek(img, 0, SEEK_DATA), -ENXIO);
  CHECK_INTEQ(image_write(img, "new", 3, BS + 10), 3);
  CHECK(read_range(img, 0, 3 * BS, got) == 0);
  for (size_t i = 0; i < 3 * BS; i++)
    if (got[i] != (i >= BS + 10 && i < BS + 13 ? "new"[i - BS - 10] : 0)) {
      CHECK(!"new volume content");
      break;
    }
  CHECK_INTEQ(image_seek(img, 0, SEEK_DATA), BS);
  CHECK_INTEQ(image_seek(img, (off_t) BS, SEEK_HOLE), 2 * BS);
  CHECK_INTEQ(fake.total_gets, before);
  CHECK_INTEQ(image_fsync(img, true), 0);
  image_close(img);
  staging_remove(s);
  staging_close(s);
}

int
main(void)
{
  struct image_options o = { 0 };
  struct ebs_error err;
  struct image *img = NULL;
  struct staging *s;

  pthread_mutex_init(&fake.lock, NULL);
  if (mkdtemp(dir_base) == NULL)
    return 99;
  cache = block_cache_new(64 * BS);
  o.client = &fake;
  o.cache = cache;
  CHECK(image_open(SNAP, &o, &img, &err) == 0);
  if (img == NULL)
    return 1;
  CHECK_INTEQ(image_write(img, "x", 1, 0), -EROFS);
  CHECK_INTEQ(image_fsync(img, false), -EROFS);
  s = new_staging(SNAP, image_size(img));
  if (s == NULL)
    return 1;
  image_attach_staging(img, s);
  test_partial_writes(img);
  test_concurrent_writers(img);
  test_end(img);
  CHECK_INTEQ(image_fsync(img, false), 0);
  image_close(img);
  staging_remove(s);
  staging_close(s);
  test_new_volume();
  block_cache_free(cache);
  rmdir(dir_base);
  TEST_EXIT();
}
