/* buf_test.c - the cap on struct buf holds, and appends keep the data. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "buf.h"
#include "testing.h"

int
main(void)
{
  struct buf b;
  char big[1000];
  char *s;

  buf_init(&b, 10);
  CHECK_INTEQ(buf_append_str(&b, "hello"), 0);
  CHECK_INTEQ(buf_append_str(&b, "world"), 0);
  CHECK_STREQ(b.data, "helloworld");
  CHECK_INTEQ(buf_append_str(&b, "!"), -E2BIG);     /* past the cap */
  CHECK_INTEQ(b.len, 10);
  CHECK_STREQ(b.data, "helloworld");                /* unchanged by the refusal */
  buf_reset(&b);
  CHECK_INTEQ(buf_printf(&b, "%d-%s", 42, "x"), 0);
  CHECK_STREQ(b.data, "42-x");
  CHECK_INTEQ(buf_printf(&b, "%s", "0123456789"), -E2BIG);
  s = buf_steal(&b);
  CHECK_STREQ(s, "42-x");
  CHECK(b.data == NULL && b.len == 0);
  free(s);

  buf_init(&b, 1000000);
  memset(big, 'a', sizeof big);
  for (int i = 0; i < 1000; i++)
    CHECK_INTEQ(buf_append(&b, big, sizeof big), 0);
  CHECK_INTEQ(b.len, 1000000);
  CHECK_INTEQ(buf_append(&b, big, 1), -E2BIG);      /* exactly at the cap */
  buf_free(&b);
  TEST_EXIT();
}
