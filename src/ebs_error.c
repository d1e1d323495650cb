/* ebs_error.c - typed EBS errors: parsing, THE errno mapping, printing.
 *
 * Every service or transport failure ends as one struct ebs_error; callers
 * turn it into an errno with ebs_error_errno() (the only place where that
 * mapping exists) and into a log line with ebs_error_string().  Nothing here
 * ever sees a secret: the inputs are response headers and bodies.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "ebs.h"
#include "ebs_error.h"

/* Copy at most dstlen-1 bytes, replacing control characters: a hostile body
 * must not be able to forge log lines. */
static void
copy_clean(char *dst, size_t dstlen, const char *src, size_t srclen)
{
  size_t n = 0;
  for (size_t i = 0; i < srclen && src[i] && n + 1 < dstlen; i++) {
    unsigned char ch = (unsigned char) src[i];
    dst[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char) ch;
  }
  dst[n] = '\0';
}

void
ebs_error_clear(struct ebs_error *e)
{
  if (e)
    memset(e, 0, sizeof *e);
}

void
ebs_error_set(struct ebs_error *e, int errnum, const char *fmt, ...)
{
  va_list ap;

  if (e == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  e->errnum = errnum > 0 ? errnum : EIO;
}

/* Copy a service message, blanking what follows "x-amz-security-token:"
 * (AWS's InvalidSignatureException quotes the canonical request, which
 * holds the session token: it must not reach a log). */
static void
copy_message(char *dst, size_t dstlen, const char *src, size_t srclen)
{
  static const char hdr[] = "x-amz-security-token:";
  copy_clean(dst, dstlen, src, srclen);
  for (char *p = dst; (p = strcasestr(p, hdr)) != NULL;) {
    p += sizeof hdr - 1;
    while (*p == ' ')
      p++;
    if (*p && strncmp(p, "[redacted]", 10) != 0) {
      size_t n = strcspn(p, " '\"");
      size_t rest = strlen(p + n);
      if (n >= 10) {
        memcpy(p, "[redacted]", 10);
        memmove(p + 10, p + n, rest + 1);
      }
      else
        memset(p, '*', n);
    }
  }
}

static const char *
json_str(const cJSON *obj, const char *a, const char *b)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, a);
  if (!cJSON_IsString(v) && b)
    v = cJSON_GetObjectItemCaseSensitive(obj, b);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

void
ebs_error_from_response(struct ebs_error *e, int http_status,
                        const char *error_type_header,
                        const char *body, size_t body_len,
                        const char *request_id)
{
  cJSON *root = NULL;
  const char *s;

  if (e == NULL)
    return;
  e->http_status = http_status;
  e->code[0] = e->reason[0] = e->message[0] = '\0';
  if (request_id)
    copy_clean(e->request_id, sizeof e->request_id, request_id, strlen(request_id));
  if (error_type_header && *error_type_header)
    copy_clean(e->code, sizeof e->code, error_type_header,
               strcspn(error_type_header, ":"));

  if (body && body_len > 0 && body_len <= 64 * 1024)
    root = cJSON_ParseWithLength(body, body_len);
  if (cJSON_IsObject(root)) {
    if (e->code[0] == '\0') {
      s = json_str(root, "code", "Code");
      if (s == NULL)
        s = json_str(root, "__type", NULL);
      if (s) {
        const char *hash = strrchr(s, '#');
        if (hash)
          s = hash + 1;
        copy_clean(e->code, sizeof e->code, s, strlen(s));
      }
    }
    s = json_str(root, "Message", "message");
    if (s)
      copy_message(e->message, sizeof e->message, s, strlen(s));
    s = json_str(root, "Reason", "reason");
    if (s)
      copy_clean(e->reason, sizeof e->reason, s, strlen(s));
  }
  cJSON_Delete(root);

  if (e->code[0] == '\0')
    snprintf(e->code, sizeof e->code, "HTTP%d", http_status);
  if (e->message[0] == '\0') {
    if (body && body_len > 0 && root == NULL)
      copy_message(e->message, sizeof e->message, body, body_len < 200 ? body_len : 200);
    else
      snprintf(e->message, sizeof e->message, "HTTP status %d", http_status);
  }
  e->errnum = 0;
  e->errnum = ebs_error_errno(e);
}

static bool
code_is(const struct ebs_error *e, const char *code)
{
  return strcmp(e->code, code) == 0;
}

int
ebs_error_errno(const struct ebs_error *e)
{
  if (e == NULL)
    return EIO;
  /* Local failures (no service answer, or a body that failed its checks)
   * carry the errno the transport chose. */
  if (e->code[0] == '\0')
    return e->errnum > 0 ? e->errnum : EIO;

  if (code_is(e, "ResourceNotFoundException"))
    return ENOENT;
  if (code_is(e, "AccessDeniedException") ||
      code_is(e, "UnrecognizedClientException") ||
      code_is(e, "InvalidSignatureException") ||
      code_is(e, "MissingAuthenticationTokenException") ||
      code_is(e, "IncompleteSignatureException") ||
      code_is(e, "ExpiredTokenException") ||
      code_is(e, "InvalidClientTokenId"))
    return EACCES;
  if (code_is(e, "ValidationException") || code_is(e, "SerializationException") ||
      code_is(e, "XAmzContentSHA256Mismatch"))
    return EINVAL;
  if (code_is(e, "ConflictException"))
    return EEXIST;
  if (code_is(e, "ServiceQuotaExceededException"))
    return EDQUOT;
  if (code_is(e, "ConcurrentLimitExceededException") ||
      code_is(e, "RequestThrottledException") || code_is(e, "ThrottlingException") ||
      e->http_status == 429)
    return EAGAIN;
  if (e->http_status == 403)
    return EACCES;
  if (e->http_status == 404)
    return ENOENT;
  return EIO;
}

bool
ebs_error_is(const struct ebs_error *e, const char *code, const char *reason)
{
  if (e == NULL)
    return false;
  if (code && strcmp(e->code, code) != 0)
    return false;
  if (reason && strcmp(e->reason, reason) != 0)
    return false;
  return true;
}

const char *
ebs_error_string(const struct ebs_error *e, char *buf, size_t len)
{
  char extra[200];
  size_t n = 0;
  int r;

  if (len == 0)
    return buf;
  if (e == NULL) {
    snprintf(buf, len, "unknown error");
    return buf;
  }
  extra[0] = '\0';
  if (e->http_status) {
    r = snprintf(extra, sizeof extra, "HTTP %d", e->http_status);
    n = r > 0 ? (size_t) r : 0;
  }
  if (e->request_id[0] && n < sizeof extra) {
    r = snprintf(extra + n, sizeof extra - n, "%srequest id %s", n ? ", " : "", e->request_id);
    n += r > 0 ? (size_t) r : 0;
  }
  if (e->attempts > 1 && n < sizeof extra)
    snprintf(extra + n, sizeof extra - n, "%s%d attempts", n ? ", " : "", e->attempts);

  if (e->code[0])
    snprintf(buf, len, "%s%s%s%s: %s%s%s%s", e->code,
             e->reason[0] ? " (" : "", e->reason, e->reason[0] ? ")" : "",
             e->message, extra[0] ? " [" : "", extra, extra[0] ? "]" : "");
  else
    snprintf(buf, len, "%s (%s)%s%s%s", e->message, strerror(e->errnum > 0 ? e->errnum : EIO),
             extra[0] ? " [" : "", extra, extra[0] ? "]" : "");
  return buf;
}
