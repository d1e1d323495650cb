/* ebs_error_test.c - typed errors from service answers, the errno mapping,
 * and the printed form. */
#include <config.h>

#include <errno.h>

#include "ebs.h"
#include "ebs_error.h"
#include "testing.h"

static struct ebs_error
resp(int status, const char *type, const char *body)
{
  struct ebs_error e;
  ebs_error_clear(&e);
  ebs_error_from_response(&e, status, type, body, body ? strlen(body) : 0, "req-1");
  return e;
}

int
main(void)
{
  struct ebs_error e;
  char line[1024];

  /* The header wins, cut at ':' (AWS appends a URL to ValidationException). */
  e = resp(400, "ValidationException:http://internal.amazon.com/coral/com.amazon.coral.validate/",
           "{\"Message\":\"The block token is not valid\",\"Reason\":\"INVALID_BLOCK_TOKEN\"}");
  CHECK_STREQ(e.code, "ValidationException");
  CHECK_STREQ(e.reason, "INVALID_BLOCK_TOKEN");
  CHECK_STREQ(e.message, "The block token is not valid");
  CHECK_STREQ(e.request_id, "req-1");
  CHECK_INTEQ(e.http_status, 400);
  CHECK_INTEQ(e.errnum, EINVAL);
  CHECK(ebs_error_is(&e, "ValidationException", "INVALID_BLOCK_TOKEN"));
  CHECK(ebs_error_is(&e, "ValidationException", NULL));
  CHECK(!ebs_error_is(&e, "ValidationException", "INVALID_PAGE_TOKEN"));
  CHECK(!ebs_error_is(&e, "AccessDeniedException", NULL));

  /* Code from the body when the header is missing; lower-case message. */
  e = resp(403, NULL, "{\"__type\":\"com.amazon#AccessDeniedException\",\"message\":\"no\","
                      "\"Reason\":\"UNAUTHORIZED_ACCOUNT\"}");
  CHECK_STREQ(e.code, "AccessDeniedException");
  CHECK_STREQ(e.message, "no");
  CHECK_INTEQ(e.errnum, EACCES);
  e = resp(404, NULL, "{\"code\":\"ResourceNotFoundException\",\"Message\":\"gone\"}");
  CHECK_INTEQ(e.errnum, ENOENT);

  /* The errno mapping. */
  CHECK_INTEQ(resp(400, "RequestThrottledException", "{}").errnum, EAGAIN);
  CHECK_INTEQ(resp(400, "ThrottlingException", NULL).errnum, EAGAIN);
  CHECK_INTEQ(resp(400, "ConcurrentLimitExceededException", NULL).errnum, EAGAIN);
  CHECK_INTEQ(resp(409, "ConflictException", NULL).errnum, EEXIST);
  CHECK_INTEQ(resp(402, "ServiceQuotaExceededException", NULL).errnum, EDQUOT);
  CHECK_INTEQ(resp(403, "InvalidSignatureException", NULL).errnum, EACCES);
  CHECK_INTEQ(resp(403, "UnrecognizedClientException", NULL).errnum, EACCES);
  CHECK_INTEQ(resp(500, "InternalServerException", NULL).errnum, EIO);
  CHECK_INTEQ(resp(503, NULL, "<html>busy</html>").errnum, EIO);
  CHECK_INTEQ(resp(403, NULL, NULL).errnum, EACCES);
  CHECK_INTEQ(resp(404, NULL, "").errnum, ENOENT);

  /* A body that is not JSON: code from the status, message from the text,
   * control characters neutralised. */
  e = resp(502, NULL, "Bad\r\nGateway\n");
  CHECK_STREQ(e.code, "HTTP502");
  CHECK(strchr(e.message, '\n') == NULL && strchr(e.message, '\r') == NULL);
  CHECK(strstr(e.message, "Bad") != NULL);
  /* Over-long fields are cut, not overflowed. */
  {
    char big[5000];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"Message\":\"", 12);
    memcpy(big + sizeof big - 3, "\"}", 3);
    e = resp(400, "ValidationExceptionWithAVeryLongNameThatGoesOnAndOnAndOnAndOnForeverAndEver", big);
    CHECK_INTEQ(strlen(e.code), sizeof e.code - 1);
    CHECK_INTEQ(strlen(e.message), sizeof e.message - 1);
  }

  /* AWS quotes the canonical request in signature errors; the session
   * token in it never reaches the message. */
  e = resp(403, "InvalidSignatureException",
           "{\"message\":\"The request signature we calculated does not match.\\n"
           "The Canonical String for this request should have been\\n'GET\\n/snapshots\\n\\n"
           "host:127.0.0.1\\nx-amz-security-token:SECRETTOKENvalue+/=\\nx-amz-date:2020'\"}");
  CHECK(strstr(e.message, "SECRETTOKEN") == NULL);
  CHECK(strstr(e.message, "x-amz-security-token:[redacted]") != NULL);
  CHECK(strstr(e.message, "x-amz-date:2020") != NULL);
  e = resp(403, NULL, "x-amz-security-token: abc");
  CHECK(strstr(e.message, "abc") == NULL);

  /* Local failures keep their errno. */
  ebs_error_clear(&e);
  ebs_error_set(&e, ETIMEDOUT, "GetSnapshotBlock: Operation timed out after 2000 ms");
  CHECK_INTEQ(ebs_error_errno(&e), ETIMEDOUT);
  ebs_error_clear(&e);
  ebs_error_set(&e, 0, "x");
  CHECK_INTEQ(ebs_error_errno(&e), EIO);
  CHECK_INTEQ(ebs_error_errno(NULL), EIO);

  /* The printed form: code (reason): message [HTTP, request id, attempts]. */
  e = resp(403, "AccessDeniedException", "{\"Message\":\"denied\",\"Reason\":\"UNAUTHORIZED_ACCOUNT\"}");
  e.attempts = 1;
  CHECK_STREQ(ebs_error_string(&e, line, sizeof line),
              "AccessDeniedException (UNAUTHORIZED_ACCOUNT): denied [HTTP 403, request id req-1]");
  e.attempts = 3;
  CHECK_STREQ(ebs_error_string(&e, line, sizeof line),
              "AccessDeniedException (UNAUTHORIZED_ACCOUNT): denied [HTTP 403, request id req-1, 3 attempts]");
  ebs_error_clear(&e);
  ebs_error_set(&e, ETIMEDOUT, "stalled");
  CHECK(strstr(ebs_error_string(&e, line, sizeof line), "stalled") != NULL);
  CHECK(strstr(line, "timed out") != NULL);
  ebs_error_string(&e, line, 8);     /* truncation is safe */
  CHECK_INTEQ(strlen(line), 7);
  TEST_EXIT();
}
