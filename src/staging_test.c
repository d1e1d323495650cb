/* staging_test.c - the staging area without a network: writes and their
 * journal survive a reopen, a torn last journal record is dropped, a damaged
 * record in the middle refuses to open, commit attempts and PUT blocks
 * replay, a committed marker clears the dirty set, modes are 0700/0600. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "staging.h"
#include "staging_journal.h"
#include "testing.h"

#define B EBS_BLOCK_SIZE
#define SIZE (8ull * B)

static char dir[256];
static char msg[512];

static void
rm_dir(void)
{
  char p[512];
  snprintf(p, sizeof p, "%s/journal", dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/blocks-0000.dat", dir);
  unlink(p);
  rmdir(dir);
}

static struct staging *
open_ok(const char *src)
{
  struct staging *s = NULL;
  int rc = staging_open(dir, src, SIZE, false, &s, msg, sizeof msg);
  if (rc != 0)
    fprintf(stderr, "staging_open: %s\n", msg);
  CHECK(rc == 0);
  return s;
}

static size_t
ndirty(struct staging *s)
{
  uint32_t *v;
  size_t n = 0;
  CHECK(staging_dirty_blocks(s, &v, &n) == 0);
  free(v);
  return n;
}

static void
append_raw(const char *text)
{
  char p[512];
  int fd;
  snprintf(p, sizeof p, "%s/journal", dir);
  fd = open(p, O_WRONLY | O_APPEND | O_CREAT, 0600);
  CHECK(fd >= 0);
  CHECK(write(fd, text, strlen(text)) == (ssize_t) strlen(text));
  close(fd);
}

/* Damage the first line starting with prefix (its checksum no longer fits). */
static void
corrupt_first(const char *prefix)
{
  char p[512], buf[16384];
  FILE *f;
  size_t n;
  char *h;

  snprintf(p, sizeof p, "%s/journal", dir);
  f = fopen(p, "r+");
  CHECK(f != NULL);
  if (f == NULL)
    return;
  n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  h = strstr(buf, prefix);
  CHECK(h != NULL);
  if (h) {
    h[0] = 'X';
    rewind(f);
    CHECK(fwrite(buf, 1, n, f) == n);
  }
  fclose(f);
}

static void
test_write_reopen(void)
{
  struct staging *s = open_ok("snap-0123abcd");
  static char blk[B], back[B];
  uint32_t *v;
  size_t n;
  struct stat st;
  char p[512];

  if (s == NULL)
    return;
  CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
  snprintf(p, sizeof p, "%s/journal", dir);
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);

  memset(blk, 'a', sizeof blk);
  CHECK(staging_begin_block(s, 3) == 1);
  CHECK(staging_fill_block(s, 3, blk) == 0);
  snprintf(p, sizeof p, "%s/blocks-0000.dat", dir);
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(staging_begin_block(s, 3) == 0);
  CHECK(staging_write(s, 3, 10, "xyz", 3) == 0);
  CHECK(staging_begin_block(s, 5) == 1);
  staging_abort_block(s, 5);            /* a failed base fetch: nothing staged */
  CHECK(!staging_has_block(s, 5));
  CHECK(staging_begin_block(s, 7) == 1);
  CHECK(staging_fill_block(s, 7, blk) == 0);
  CHECK(staging_next_staged(s, 0) == 3);
  CHECK(staging_next_staged(s, 4) == 7);
  CHECK(staging_sync(s) == 0);
  staging_close(s);

  s = open_ok("snap-0123abcd");
  if (s == NULL)
    return;
  CHECK(staging_has_block(s, 3) && staging_has_block(s, 7) && !staging_has_block(s, 5));
  CHECK(staging_dirty_blocks(s, &v, &n) == 0);
  CHECK_INTEQ(n, 2);
  if (n == 2)
    CHECK(v[0] == 3 && v[1] == 7);
  free(v);
  CHECK(staging_read_block(s, 3, back) == 0);
  CHECK(memcmp(back + 10, "xyz", 3) == 0 && back[9] == 'a' && back[13] == 'a');

  /* While open, nobody else may open it. */
  {
    struct staging *s2 = NULL;
    CHECK(staging_open(dir, "snap-0123abcd", SIZE, false, &s2, msg, sizeof msg) == -EBUSY);
    CHECK(s2 == NULL);
  }
  staging_close(s);

  /* Another source, or a different size, is refused. */
  s = NULL;
  CHECK(staging_open(dir, "snap-99", SIZE, false, &s, msg, sizeof msg) < 0);
  CHECK(staging_open(dir, "snap-0123abcd", SIZE * 2, false, &s, msg, sizeof msg) < 0);
  CHECK(s == NULL);
}

static void
test_torn_tail(void)
{
  struct staging *s;
  struct stat st;
  char p[512];
  off_t before;

  snprintf(p, sizeof p, "%s/journal", dir);
  CHECK(stat(p, &st) == 0);
  before = st.st_size;
  append_raw("W 6 #1234");              /* cut short: no newline */
  s = open_ok("snap-0123abcd");
  if (s == NULL)
    return;
  CHECK(!staging_has_block(s, 6));
  CHECK_INTEQ(ndirty(s), 2);
  staging_close(s);
  CHECK(stat(p, &st) == 0);
  CHECK_INTEQ(st.st_size, before);      /* cut off, so appends continue cleanly */

  append_raw("W 6 #00000000\n");        /* whole line, wrong checksum, last */
  s = open_ok("snap-0123abcd");
  if (s)
    CHECK(!staging_has_block(s, 6));
  staging_close(s);

  /* A bad line followed by good ones is damage, not a torn tail. */
  append_raw("W 6 #00000000\n");
  s = open_ok("snap-0123abcd");         /* drops it (last) */
  if (s) {
    CHECK(staging_write(s, 3, 0, "q", 1) == 0);
    staging_close(s);
  }
  corrupt_first("W 3");
  s = NULL;
  CHECK(staging_open(dir, "snap-0123abcd", SIZE, false, &s, msg, sizeof msg) == -EIO);
  CHECK(s == NULL);
}

static void
test_attempts(void)
{
  struct staging *s = open_ok(NULL);
  struct staging_attempt a, got;
  static char blk[B];
  char id[EBS_SNAPSHOT_ID_MAX + 1];

  if (s == NULL)
    return;
  memset(blk, 0, sizeof blk);           /* zero blocks are written blocks too */
  for (uint64_t b = 0; b < 4; b++) {
    CHECK(staging_begin_block(s, b) == 1);
    CHECK(staging_fill_block(s, b, blk) == 0);
  }
  memset(&a, 0, sizeof a);
  snprintf(a.token, sizeof a.token, "tok-1");
  a.volume_size_gib = 1;
  a.timeout_minutes = 60;
  a.encrypted = true;
  snprintf(a.description, sizeof a.description, "my disk #1 100%% - done\nok");
  snprintf(a.tags, sizeof a.tags, "k=v;a=b c");
  CHECK(staging_log_attempt(s, &a) == 0);
  CHECK(staging_log_started(s, "snap-0abc") == 0);
  CHECK(staging_log_put(s, 1) == 0);
  CHECK(staging_log_put(s, 2) == 0);
  CHECK(staging_write(s, 2, 5, "z", 1) == 0);   /* rewritten: must be PUT again */
  staging_close(s);

  s = open_ok(NULL);
  if (s == NULL)
    return;
  CHECK(staging_pending(s, &got));
  CHECK_STREQ(got.token, "tok-1");
  CHECK_STREQ(got.snapshot_id, "snap-0abc");
  CHECK_STREQ(got.description, a.description);
  CHECK_STREQ(got.tags, a.tags);
  CHECK_STREQ(got.parent, "");
  CHECK(got.encrypted && got.volume_size_gib == 1 && got.timeout_minutes == 60);
  CHECK(staging_block_put(s, 1) && !staging_block_put(s, 2) && !staging_block_put(s, 0));
  CHECK_INTEQ(ndirty(s), 4);
  staging_close(s);

  /* The pending snapshot turned out completed: PUT blocks are clean, the
   * block rewritten after its PUT (2) and those never PUT stay dirty. */
  s = open_ok(NULL);
  if (s == NULL)
    return;
  CHECK(staging_log_rebased(s, "snap-0abc") == 0);
  staging_close(s);
  s = open_ok(NULL);
  if (s == NULL)
    return;
  CHECK(!staging_pending(s, NULL));
  CHECK_INTEQ(ndirty(s), 3);
  CHECK(!staging_block_put(s, 1));
  staging_parent(s, id);
  CHECK_STREQ(id, "snap-0abc");
  CHECK(staging_log_committed(s, "snap-0abc") == 0);
  staging_close(s);

  s = open_ok(NULL);
  if (s == NULL)
    return;
  CHECK(!staging_pending(s, NULL));
  CHECK_INTEQ(ndirty(s), 0);
  CHECK(staging_has_block(s, 2));       /* still served locally */
  staging_parent(s, id);
  CHECK_STREQ(id, "snap-0abc");
  CHECK(staging_write(s, 2, 0, "y", 1) == 0);
  CHECK_INTEQ(ndirty(s), 1);
  staging_close(s);

  /* --resume learns source and size from the journal. */
  s = NULL;
  CHECK(staging_open(dir, NULL, 0, true, &s, msg, sizeof msg) == 0);
  if (s) {
    CHECK(staging_size(s) == SIZE && staging_source(s) == NULL);
    CHECK_INTEQ(ndirty(s), 1);
    CHECK(staging_remove(s) == 0);
    staging_close(s);
  }
  CHECK(access(dir, F_OK) != 0);
}

/* The longest attempt record (every text field full of bytes that encode to
 * three) still fits one journal line and replays intact. */
static void
test_long_attempt(void)
{
  static struct staging_attempt a, got;
  struct staging *s = open_ok(NULL);

  if (s == NULL)
    return;
  memset(&a, 0, sizeof a);
  snprintf(a.token, sizeof a.token, "%.*s", STAGING_TOKEN_MAX, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  a.volume_size_gib = 65536;
  a.timeout_minutes = 4320;
  memset(a.description, ' ', STAGING_TEXT_MAX);
  memset(a.tags, '#', STAGING_TEXT_MAX);
  memset(a.kms_key_arn, '%', STAGING_TEXT_MAX);
  CHECK(staging_log_attempt(s, &a) == 0);
  staging_close(s);
  s = open_ok(NULL);
  if (s == NULL)
    return;
  CHECK(staging_pending(s, &got));
  CHECK_STREQ(got.description, a.description);
  CHECK_STREQ(got.tags, a.tags);
  CHECK_STREQ(got.kms_key_arn, a.kms_key_arn);
  CHECK_STREQ(got.token, a.token);
  staging_close(s);
}

/* After commits, the journal is rewritten as present blocks + last commit:
 * the same state replays, appends go on, and the directory stays locked. */
static void
test_compact(void)
{
  struct staging *s = open_ok("snap-0123abcd"), *s2 = NULL;
  static char blk[B];
  struct staging_attempt a;
  char id[EBS_SNAPSHOT_ID_MAX + 1], p[512];
  struct stat st1, st2;

  if (s == NULL)
    return;
  memset(blk, 'c', sizeof blk);
  for (uint64_t b = 0; b < 8; b += 2) {    /* blocks 0, 2, 4, 6 */
    CHECK(staging_begin_block(s, b) == 1);
    CHECK(staging_fill_block(s, b, blk) == 0);
  }
  memset(&a, 0, sizeof a);
  snprintf(a.token, sizeof a.token, "t");
  a.volume_size_gib = 1;
  CHECK(staging_log_attempt(s, &a) == 0);
  CHECK(staging_compact(s) == -EBUSY);     /* a commit in progress */
  CHECK(staging_log_started(s, "snap-0c1") == 0);
  CHECK(staging_log_committed(s, "snap-0c1") == 0);
  snprintf(p, sizeof p, "%s/journal", dir);
  CHECK(stat(p, &st1) == 0);
  CHECK(staging_compact(s) == 0);
  CHECK(stat(p, &st2) == 0);
  CHECK(st2.st_ino != st1.st_ino);
  CHECK(staging_open(dir, "snap-0123abcd", SIZE, false, &s2, msg, sizeof msg) == -EBUSY);
  CHECK(staging_write(s, 7 - 1, 0, "z", 1) == 0);   /* present block 6: dirty again */
  staging_close(s);

  s = open_ok("snap-0123abcd");
  if (s == NULL)
    return;
  for (uint64_t b = 0; b < 8; b++)
    CHECK(staging_has_block(s, b) == (b % 2 == 0));
  CHECK_INTEQ(ndirty(s), 1);
  staging_last_committed(s, id);
  CHECK_STREQ(id, "snap-0c1");
  CHECK(!staging_pending(s, NULL));
  staging_close(s);
}

static void
test_encoding(void)
{
  char enc[256], dec[256];
  const char *cases[] = { "", "-", "plain", "a b%c#d\n\t\xc3\xa9", "%2D" };

  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    staging_encode(cases[i], enc, sizeof enc);
    CHECK(strchr(enc, ' ') == NULL && strchr(enc, '#') == NULL && enc[0]);
    CHECK(staging_decode(enc, dec, sizeof dec) == 0);
    CHECK_STREQ(dec, cases[i]);
  }
  CHECK(staging_decode("%zz", dec, sizeof dec) < 0);
}

/* A crash during the very first append leaves a torn header: start afresh. */
static void
test_torn_header(void)
{
  struct staging *s;

  CHECK(mkdir(dir, 0700) == 0);
  append_raw("H 1 snap-01");
  s = open_ok("snap-0123abcd");
  if (s == NULL)
    return;
  CHECK_INTEQ(ndirty(s), 0);
  CHECK(staging_write(s, 1, 0, "a", 1) == 0);
  staging_close(s);
  s = open_ok("snap-0123abcd");
  if (s == NULL)
    return;
  CHECK_INTEQ(ndirty(s), 1);
  staging_close(s);
  /* ...but --resume finds nothing to resume in a directory without one. */
  rm_dir();
  CHECK(mkdir(dir, 0700) == 0);
  append_raw("H 1 snap-01");
  s = NULL;
  CHECK(staging_open(dir, NULL, 0, true, &s, msg, sizeof msg) == -ENOENT);
  CHECK(s == NULL);
}

static void
next_dir(const char *base, int i)
{
  snprintf(dir, sizeof dir, "%s/st%d", base, i);
}

int
main(void)
{
  char base[] = "/tmp/staging_test.XXXXXX";

  if (mkdtemp(base) == NULL)
    return 99;
  next_dir(base, 1);
  test_write_reopen();
  test_torn_tail();
  rm_dir();
  next_dir(base, 2);
  test_attempts();
  rm_dir();
  next_dir(base, 3);
  test_torn_header();
  rm_dir();
  next_dir(base, 4);
  test_long_attempt();
  rm_dir();
  next_dir(base, 5);
  test_compact();
  rm_dir();
  test_encoding();
  rmdir(base);
  TEST_EXIT();
}
