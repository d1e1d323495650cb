/* ratelimit_test.c - pacing per snapshot, AIMD on throttles, with a fake clock. */
#include <config.h>

#include <math.h>
#include <stdio.h>

#include "ratelimit.h"
#include "testing.h"

int
main(void)
{
  struct ratelimit *rl = ratelimit_new(100);   /* 100/s: one per 10 ms */
  double t = 1000.0, last = 0;
  int sent_first_second = 0;

  CHECK(rl != NULL);
  /* 1000 requests arriving at once: the first burst (100 ms worth) goes now,
   * the rest are spaced 10 ms apart, in order. */
  for (int i = 0; i < 1000; i++) {
    double at = ratelimit_reserve(rl, "snap-a", t);
    CHECK(at >= t);
    CHECK(at >= last);
    if (at < t + 1000.0)
      sent_first_second++;
    last = at;
  }
  /* 1 s at 100/s plus the 100 ms burst. */
  CHECK(sent_first_second >= 100 && sent_first_second <= 111);
  CHECK(fabs(last - (t + 999 * 10.0 - 100.0)) < 1.0);

  /* Another snapshot is not held up by the first. */
  CHECK(ratelimit_reserve(rl, "snap-b", t) == t);

  /* Idle time does not bank credit beyond the burst. */
  {
    double t2 = last + 60000.0;
    int now_count = 0;
    for (int i = 0; i < 50; i++)
      if (ratelimit_reserve(rl, "snap-a", t2) == t2)
        now_count++;
    CHECK(now_count >= 10 && now_count <= 12);
  }

  /* AIMD: a throttle cuts the pace; a second within 500 ms does not cut again. */
  CHECK(ratelimit_rate(rl, "snap-c", 0) == 100.0);
  ratelimit_throttled(rl, "snap-c", 10);
  CHECK(fabs(ratelimit_rate(rl, "snap-c", 10) - 70.0) < 0.01);
  ratelimit_throttled(rl, "snap-c", 100);
  CHECK(fabs(ratelimit_rate(rl, "snap-c", 100) - 70.0) < 0.01);
  ratelimit_throttled(rl, "snap-c", 700);
  CHECK(fabs(ratelimit_rate(rl, "snap-c", 700) - 49.0) < 0.01);
  /* Slow recovery: +5/s per second of calm, never over the configured rate. */
  {
    CHECK(fabs(ratelimit_rate(rl, "snap-c", 1700) - 49.0) < 0.01);
    double r1 = ratelimit_rate(rl, "snap-c", 2700);
    double r2 = ratelimit_rate(rl, "snap-c", 3700);
    CHECK(r1 > 49.0 && r1 < 55.0);
    CHECK(r2 > r1 && r2 < 60.0);
    CHECK(ratelimit_rate(rl, "snap-c", 60000) == 100.0);
  }
  /* The pace follows the rate: at 49/s, requests are ~20 ms apart. */
  {
    struct ratelimit *r2 = ratelimit_new(50);
    double a = 0, b = 0;
    ratelimit_throttled(r2, "s", 0);          /* 35/s */
    for (int i = 0; i < 20; i++)
      a = ratelimit_reserve(r2, "s", 1.0);
    b = ratelimit_reserve(r2, "s", 1.0);
    CHECK(fabs((b - a) - 1000.0 / 35.0) < 1.0);
    ratelimit_free(r2);
  }
  /* The rate never drops below 1/s. */
  for (int i = 0; i < 100; i++)
    ratelimit_throttled(rl, "snap-d", i * 1000.0);
  CHECK(ratelimit_rate(rl, "snap-d", 100000.0 - 1000) >= 1.0);

  /* Many snapshots: the table stays bounded and keeps working. */
  for (int i = 0; i < 10000; i++) {
    char key[32];
    snprintf(key, sizeof key, "snap-%x", i);
    CHECK(ratelimit_reserve(rl, key, 200000.0 + i) >= 200000.0 + i);
  }
  ratelimit_free(rl);
  rl = ratelimit_new(0);
  CHECK(rl != NULL && ratelimit_rate(rl, "s", 0) == RATELIMIT_DEFAULT_RATE);
  ratelimit_free(rl);
  TEST_EXIT();
}
