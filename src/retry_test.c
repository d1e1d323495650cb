/* retry_test.c - the retry policy: classification, backoff bounds, budget. */
#include <config.h>

#include <curl/curl.h>

#include "retry.h"
#include "testing.h"

int
main(void)
{
  struct retry_policy p;
  uint32_t st = 12345;

  retry_policy_init(&p, 0, 0);
  CHECK_INTEQ(p.max_attempts, RETRY_DEFAULT_MAX_ATTEMPTS);
  CHECK_INTEQ(p.budget_ms, RETRY_DEFAULT_BUDGET_MS);

  /* What is retried. */
  CHECK_INTEQ(retry_classify_http(500, "InternalServerException"), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_http(503, ""), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_http(502, "HTTP502"), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_http(400, "RequestThrottledException"), RETRY_THROTTLE);
  CHECK_INTEQ(retry_classify_http(400, "ThrottlingException"), RETRY_THROTTLE);
  CHECK_INTEQ(retry_classify_http(400, "ConcurrentLimitExceededException"), RETRY_THROTTLE);
  CHECK_INTEQ(retry_classify_http(429, ""), RETRY_THROTTLE);
  /* What never is. */
  CHECK_INTEQ(retry_classify_http(403, "AccessDeniedException"), RETRY_NEVER);
  CHECK_INTEQ(retry_classify_http(400, "ValidationException"), RETRY_NEVER);
  CHECK_INTEQ(retry_classify_http(404, "ResourceNotFoundException"), RETRY_NEVER);
  CHECK_INTEQ(retry_classify_http(409, "ConflictException"), RETRY_NEVER);
  CHECK_INTEQ(retry_classify_http(402, "ServiceQuotaExceededException"), RETRY_NEVER);
  CHECK_INTEQ(retry_classify_http(403, "InvalidSignatureException"), RETRY_NEVER);
  CHECK(!retry_is_throttle_code(""));
  CHECK(!retry_is_throttle_code(NULL));
  CHECK(!retry_is_throttle_code("ThrottlingExceptionX"));

  CHECK_INTEQ(retry_classify_curl(CURLE_OPERATION_TIMEDOUT), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_curl(CURLE_COULDNT_CONNECT), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_curl(CURLE_RECV_ERROR), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_curl(CURLE_PARTIAL_FILE), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_curl(CURLE_GOT_NOTHING), RETRY_ERROR);
  CHECK_INTEQ(retry_classify_curl(CURLE_PEER_FAILED_VERIFICATION), RETRY_NEVER);
  CHECK_INTEQ(retry_classify_curl(CURLE_URL_MALFORMAT), RETRY_NEVER);

  /* Never retry RETRY_NEVER, whatever the attempt. */
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_NEVER, 1, 0, 0), -1);

  /* Full jitter: the delay spans [0, ceiling], the ceiling doubles up to the cap. */
  for (unsigned a = 1; a < p.max_attempts; a++) {
    uint64_t ceiling = p.base_ms << (a - 1);
    int64_t lo = INT64_MAX, hi = -1;
    if (ceiling > p.cap_ms)
      ceiling = p.cap_ms;
    for (int i = 0; i < 2000; i++) {
      int64_t d = retry_delay_ms(&p, RETRY_ERROR, a, 0, retry_rand(&st));
      CHECK(d >= 0 && (uint64_t) d <= ceiling);
      if (d < lo) lo = d;
      if (d > hi) hi = d;
    }
    /* The spread covers most of the range (not a fixed delay). */
    CHECK((uint64_t) lo <= ceiling / 10);
    CHECK((uint64_t) hi >= ceiling * 9 / 10);
  }
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_ERROR, 1, 0, 0xffffffffu), (int64_t) p.base_ms);
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_ERROR, 1, 0, 0), 0);
  /* Throttles start from a larger ceiling. */
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_THROTTLE, 1, 0, 0xffffffffu), (int64_t) p.throttle_base_ms);
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_THROTTLE, 30, 0, 0xffffffffu), -1);
  /* The cap. */
  {
    struct retry_policy q = p;
    q.max_attempts = 100;
    CHECK_INTEQ(retry_delay_ms(&q, RETRY_ERROR, 60, 0, 0xffffffffu), (int64_t) q.cap_ms);
  }

  /* Bounded attempts: attempt max_attempts is the last. */
  CHECK(retry_delay_ms(&p, RETRY_ERROR, p.max_attempts - 1, 0, 1) >= 0);
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_ERROR, p.max_attempts, 0, 1), -1);

  /* Bounded total time: no delay that ends past the budget. */
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_ERROR, 1, p.budget_ms, 0), -1);
  CHECK_INTEQ(retry_delay_ms(&p, RETRY_ERROR, 3, p.budget_ms - 10, 0xffffffffu), -1);
  CHECK(retry_delay_ms(&p, RETRY_ERROR, 3, p.budget_ms - 1000, 0xffffffffu) >= 0);

  /* A fake clock through a whole storm: total waiting stays under the budget. */
  {
    struct retry_policy q;
    uint64_t clock = 0;
    unsigned a;
    retry_policy_init(&q, 50, 5000);
    for (a = 1;; a++) {
      int64_t d = retry_delay_ms(&q, RETRY_THROTTLE, a, clock, retry_rand(&st));
      if (d < 0)
        break;
      clock += (uint64_t) d + 5;  /* 5 ms per attempt */
    }
    CHECK(clock <= 5000 + 5);
    CHECK(a < 50);
  }
  TEST_EXIT();
}
