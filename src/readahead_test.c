/* readahead_test.c - the window grows on a stream (from 4x a whole-block
 * request, never past twice what the stream read), is capped, never hands
 * out a block twice (unless told it was not queued after all), resets on
 * random access, and a whole-block read anywhere starts a tentative 2-block
 * stream. */
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

  /* Continuing reads double the window, but never beyond twice what the
   * stream has read (a short stream does not set off a large prefetch),
   * and never beyond the cap (16). */
  n = readahead_on_read(&ra, 128 * KIB, 128 * KIB, 1000, &first);
  CHECK_INTEQ(ra.window, 2);            /* 256 KiB read: at most 2 blocks */
  CHECK_INTEQ(n, 0);                    /* blocks 1-2 were already handed out */
  for (i = 2; i < 100; i++) {
    uint64_t read_blocks = ((i + 1) * 128 * KIB + BS - 1) / BS;

    n = readahead_on_read(&ra, i * 128 * KIB, 128 * KIB, 1000, &first);
    CHECK(ra.window <= 2 * read_blocks || ra.window == 2);
    CHECK(ra.window <= 16);
    if (i == 8) {                       /* 9 x 128 KiB read: 3 blocks */
      CHECK_INTEQ(ra.window, 6);
      CHECK_INTEQ(first, 6);            /* handed out up to block 5 before */
      CHECK_INTEQ(n, 3);                /* up to block 2 + 6 */
    }
  }
  CHECK_INTEQ(ra.window, 16);

  /* dd bs=1M: 8 blocks at once, then 2x what was read, then the cap. */
  readahead_init(&ra, 64);
  n = readahead_on_read(&ra, 0, 2 * BS, 1000, &first);
  CHECK_INTEQ(ra.window, 8);
  CHECK_INTEQ(n, 8);
  CHECK_INTEQ(first, 2);
  readahead_on_read(&ra, 2 * BS, 2 * BS, 1000, &first);
  CHECK_INTEQ(ra.window, 8);
  readahead_on_read(&ra, 4 * BS, 2 * BS, 1000, &first);
  CHECK_INTEQ(ra.window, 12);
  for (i = 3; i < 40; i++)
    readahead_on_read(&ra, i * 2 * BS, 2 * BS, 1000, &first);
  CHECK_INTEQ(ra.window, 64);
  CHECK_INTEQ(ra.stream_start, 0);
  /* A jump starts a new stream there; small forward skips keep it. */
  readahead_on_read(&ra, 500 * BS + 4096, 2 * BS, 1000, &first);
  CHECK_INTEQ(ra.stream_start, 500 * BS + 4096);
  readahead_on_read(&ra, 502 * BS + 4096 + 8192, 2 * BS, 1000, &first);
  readahead_on_read(&ra, 504 * BS + 4096 + 8192, 2 * BS, 1000, &first);
  CHECK_INTEQ(ra.stream_start, 500 * BS + 4096);
  CHECK(ra.window > 0);

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

  /* Blocks handed out but not queued (too many requests in flight) are
   * handed out again by the next read, before the new end of the window. */
  readahead_init(&ra, 64);
  n = readahead_on_read(&ra, 0, 2 * BS, 1000, &first);
  CHECK_INTEQ(first, 2);
  CHECK_INTEQ(n, 8);                    /* blocks 2-9 */
  readahead_unqueue(&ra, 5);            /* only 2-4 were queued */
  n = readahead_on_read(&ra, 2 * BS, 2 * BS, 1000, &first);
  CHECK_INTEQ(first, 5);
  CHECK_INTEQ(n, 12 - 5);               /* 5-11: the rest, and the window's new end */
  readahead_unqueue(&ra, 40);           /* past what was handed out: no effect */
  n = readahead_on_read(&ra, 4 * BS, 2 * BS, 1000, &first);
  CHECK_INTEQ(first, 12);

  /* Whole-block reads start at 4x the request, never beyond the cap. */
  readahead_init(&ra, 6);
  n = readahead_on_read(&ra, 0, 2 * BS, 1000, &first);
  CHECK_INTEQ(n, 6);

  /* A small forward skip keeps the stream; a backward jump resets it. */
  readahead_init(&ra, 64);
  readahead_on_read(&ra, 0, BS, 1000, &first);
  CHECK_INTEQ(ra.window, 4);
  readahead_on_read(&ra, BS, BS, 1000, &first);
  CHECK_INTEQ(ra.window, 4);
  n = readahead_on_read(&ra, 2 * BS + 4096, BS, 1000, &first);
  CHECK_INTEQ(ra.window, 6);
  CHECK(n > 0);
  n = readahead_on_read(&ra, 0, 4096, 1000, &first);
  CHECK_INTEQ(n, 0);
  CHECK_INTEQ(ra.window, 0);
  /* A whole block read anywhere starts a tentative stream of 2 blocks (the
   * kernel's readahead of a file read through a loop mount looks like
   * this); it grows only if the next read continues it. */
  n = readahead_on_read(&ra, 300 * BS, BS, 1000, &first);
  CHECK_INTEQ(n, 2);
  CHECK_INTEQ(first, 301);
  CHECK_INTEQ(ra.window, 2);
  n = readahead_on_read(&ra, 301 * BS, BS, 1000, &first);
  CHECK_INTEQ(ra.window, 4);
  CHECK_INTEQ(first, 303);
  CHECK_INTEQ(n, 3);                    /* up to block 301 + 4 */
  n = readahead_on_read(&ra, 40 * BS, 4096, 1000, &first);
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
