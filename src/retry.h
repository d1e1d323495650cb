/* retry.h - THE retry policy of ebsfs: what is retried, and when.
 *
 * Every request the transport sends goes through here once per failed
 * attempt; nothing else in ebsfs retries on its own (retries nested in
 * retries are how other tools end up hanging for hours).  The policy is
 * exponential backoff with full jitter (delay = random(0, min(cap, base *
 * 2^(n-1)))), bounded by a number of attempts and by a total time budget.
 *
 * Pure functions of their arguments (the caller passes the clock and the
 * random number), so the unit test drives them with a fake clock.
 */
#ifndef EBSFS_RETRY_H
#define EBSFS_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
  unsigned max_attempts;        /* attempts in all, first one included (>= 1) */
  uint64_t budget_ms;           /* no retry is started past this since the first attempt */
  uint64_t base_ms;             /* first backoff ceiling for errors */
  uint64_t throttle_base_ms;    /* first backoff ceiling for throttles (larger) */
  uint64_t cap_ms;              /* the ceiling never grows past this */
};

#define RETRY_DEFAULT_MAX_ATTEMPTS 8
#define RETRY_DEFAULT_BUDGET_MS    120000
#define RETRY_DEFAULT_BASE_MS      100
#define RETRY_DEFAULT_THROTTLE_MS  500
#define RETRY_DEFAULT_CAP_MS       20000

/* Fills the defaults for the zero fields of ebs_client_config's knobs. */
void retry_policy_init(struct retry_policy *p, unsigned max_attempts, unsigned budget_ms);

enum retry_class {
  RETRY_NEVER = 0,              /* a final answer: AccessDenied, Validation, NotFound... */
  RETRY_ERROR,                  /* transient: 5xx, connection error, timeout, bad body */
  RETRY_THROTTLE,               /* the service asked us to slow down */
};

/* Classify a service answer: HTTP status and error code (the x-amzn-ErrorType
 * text before ':', "" when absent). */
enum retry_class retry_classify_http(int http_status, const char *code);
/* Classify a transport failure (a CURLcode; 0 never gets here). */
enum retry_class retry_classify_curl(int curl_code);
/* True for the codes the service uses to say "slow down". */
bool retry_is_throttle_code(const char *code);

/* After attempt number `attempts` (1 = the first) failed with class cls,
 * elapsed_ms after the first attempt started: the delay before the next
 * attempt, or -1 when the policy gives up (attempts or budget exhausted, or
 * cls is RETRY_NEVER).  rnd is a uniform random 32-bit number. */
int64_t retry_delay_ms(const struct retry_policy *p, enum retry_class cls,
                       unsigned attempts, uint64_t elapsed_ms, uint32_t rnd);

/* A small fast PRNG for the jitter (xorshift32; state must be non-zero). */
uint32_t retry_rand(uint32_t *state);

#endif
