/* retry.c - the one retry policy (see retry.h). */
#include <config.h>

#include <string.h>

#include <curl/curl.h>

#include "retry.h"

void
retry_policy_init(struct retry_policy *p, unsigned max_attempts, unsigned budget_ms)
{
  p->max_attempts = max_attempts ? max_attempts : RETRY_DEFAULT_MAX_ATTEMPTS;
  p->budget_ms = budget_ms ? budget_ms : RETRY_DEFAULT_BUDGET_MS;
  p->base_ms = RETRY_DEFAULT_BASE_MS;
  p->throttle_base_ms = RETRY_DEFAULT_THROTTLE_MS;
  p->cap_ms = RETRY_DEFAULT_CAP_MS;
}

/* botocore's standard-mode throttling codes, plus EBS's
 * ConcurrentLimitExceededException (botocore does not count it, but the API
 * documentation says to back off and retry it). */
static const char *const throttle_codes[] = {
  "Throttling", "ThrottlingException", "ThrottledException",
  "RequestThrottledException", "TooManyRequestsException",
  "ProvisionedThroughputExceededException", "TransactionInProgressException",
  "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException",
  "RequestThrottled", "SlowDown", "EC2ThrottledException",
  "ConcurrentLimitExceededException",
};

bool
retry_is_throttle_code(const char *code)
{
  if (code == NULL || *code == '\0')
    return false;
  for (size_t i = 0; i < sizeof throttle_codes / sizeof throttle_codes[0]; i++)
    if (strcmp(code, throttle_codes[i]) == 0)
      return true;
  return false;
}

enum retry_class
retry_classify_http(int http_status, const char *code)
{
  if (retry_is_throttle_code(code) || http_status == 429)
    return RETRY_THROTTLE;
  if (code && (strcmp(code, "RequestTimeout") == 0 ||
               strcmp(code, "RequestTimeoutException") == 0 ||
               strcmp(code, "PriorRequestNotComplete") == 0 ||
               strcmp(code, "InternalServerException") == 0 ||
               strcmp(code, "ServiceUnavailableException") == 0))
    return RETRY_ERROR;
  if (http_status >= 500 && http_status <= 599)
    return RETRY_ERROR;
  /* Everything else (AccessDenied, Validation, ResourceNotFound, Conflict,
   * signature errors, 402 quota) is the service's final word: retrying it
   * only delays the error the user needs to see. */
  return RETRY_NEVER;
}

enum retry_class
retry_classify_curl(int curl_code)
{
  switch ((CURLcode) curl_code) {
  case CURLE_COULDNT_RESOLVE_HOST:      /* DNS hiccup */
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:        /* connect or stall timeout */
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:              /* connection closed mid-body */
  case CURLE_SSL_CONNECT_ERROR:         /* handshake cut short */
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_WRITE_ERROR:               /* our write callback refused a body too long */
  case CURLE_BAD_CONTENT_ENCODING:
    return RETRY_ERROR;
  default:
    /* TLS verification failures, malformed URLs, out of memory, aborted by
     * us: no second attempt will go better. */
    return RETRY_NEVER;
  }
}

int64_t
retry_delay_ms(const struct retry_policy *p, enum retry_class cls,
               unsigned attempts, uint64_t elapsed_ms, uint32_t rnd)
{
  uint64_t ceiling, delay;

  if (cls == RETRY_NEVER || attempts >= p->max_attempts)
    return -1;
  ceiling = cls == RETRY_THROTTLE ? p->throttle_base_ms : p->base_ms;
  for (unsigned i = 1; i < attempts && ceiling < p->cap_ms; i++)
    ceiling *= 2;
  if (ceiling > p->cap_ms)
    ceiling = p->cap_ms;
  /* Full jitter: uniform in [0, ceiling].  Spreads a crowd of clients (or
   * our own 100+ requests throttled at once) instead of having them all
   * come back together. */
  delay = (ceiling * ((uint64_t) rnd + 1)) >> 32;   /* ceiling <= cap: no overflow */
  if (elapsed_ms >= p->budget_ms || delay > p->budget_ms - elapsed_ms)
    return -1;
  return (int64_t) delay;
}

uint32_t
retry_rand(uint32_t *state)
{
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *state = x;
}
