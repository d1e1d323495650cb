/* readahead_test.c - the window grows on a stream, is capped, never hands
 * out a block twice, and resets on random access. */
#include <config.h>

#include "ebs.h"
#include "readahead.h"
#include "testing.h"

#define BS ((uint64_t) EBS_BLOCK_SIZE)
#define KIB 1024u

int
main(void)
{
  struct readahead ra;
  uint64_t first, off, covered;
  unsigned n, i;

  readahead_init(&ra, 16);

  /* First read at 0 starts a stream: initial window past the read. */
  n = readahead_on_read(&ra, 0, 128 * KIB, 1000, &first);
  CHECK_INTEQ(n, READAHEAD_INITIAL_BLOCKS);
  CHECK_INTEQ(first, 1);
  CHECK_INTEQ(ra.window, READAHEAD_INITIAL_BLOCKS);

  /* Continuing reads double the window up to the cap (16). */
  n = readahead_on_read(&ra, 128 * KIB, 128 * KIB, 1000, &first);
  CHECK_INTEQ(ra.window, 4);
  CHECK_INTEQ(first, 3);                /* blocks 1-2 were already handed out */
  CHECK_INTEQ(n, 2);
  for (i = 0; i < 10; i++)
    readahead_on_read(&ra, (256 + 128 * i) * KIB, 128 * KIB, 1000, &first);
  CHECK_INTEQ(ra.window, 16);

  /* Every block of a long stream is handed out exactly once, in order. */
  readahead_init(&ra, 8);
  covered = 1;                          /* block 0 is the demand read */
  for (off = 0; off < 100 * BS; off += 256 * KIB) {
    n = readahead_on_read(&ra, off, 256 * KIB, 1000, &first);
    if (n) {
      CHECK_INTEQ(first, covered);
      covered = first + n;
    }
    CHECK(covered <= off / BS + 1 + 8);         /* never beyond the cap */
  }
  CHECK(covered >= 100);

  /* A small forward skip keeps the stream; a backward jump resets it. */
  readahead_init(&ra, 64);
  readahead_on_read(&ra, 0, BS, 1000, &first);
  readahead_on_read(&ra, BS, BS, 1000, &first);
  CHECK_INTEQ(ra.window, 4);
  n = readahead_on_read(&ra, 2 * BS + 4096, BS, 1000, &first);
  CHECK_INTEQ(ra.window, 8);
  CHECK(n > 0);
  n = readahead_on_read(&ra, 0, BS, 1000, &first);
  CHECK_INTEQ(n, 0);
  CHECK_INTEQ(ra.window, 0);
  /* A large forward jump resets too. */
  readahead_on_read(&ra, BS, BS, 1000, &first);
  readahead_on_read(&ra, 2 * BS, BS, 1000, &first);
  CHECK(ra.window > 0);
  n = readahead_on_read(&ra, 500 * BS, 4096, 1000, &first);
  CHECK_INTEQ(n, 0);
  CHECK_INTEQ(ra.window, 0);
  /* ...and the stream may start again from there. */
  n = readahead_on_read(&ra, 500 * BS + 4096, 4096, 1000, &first);
  CHECK_INTEQ(n, READAHEAD_INITIAL_BLOCKS);
  CHECK_INTEQ(first, 501);

  /* Random 4 KiB reads never prefetch. */
  readahead_init(&ra, 64);
  readahead_on_read(&ra, 77 * BS, 4096, 1000, &first);
  for (i = 0; i < 50; i++) {
    n = readahead_on_read(&ra, ((i * 7919u) % 900) * BS + 8192 * (i % 3), 4096, 1000, &first);
    CHECK_INTEQ(n, 0);
  }

  /* Clipped at the end of the image. */
  readahead_init(&ra, 64);
  n = readahead_on_read(&ra, 0, BS, 2, &first);
  CHECK_INTEQ(n, 1);
  CHECK_INTEQ(first, 1);
  n = readahead_on_read(&ra, BS, BS, 2, &first);
  CHECK_INTEQ(n, 0);
  TEST_EXIT();
}
