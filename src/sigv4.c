/* sigv4.c - AWS Signature Version 4 with OpenSSL (see sigv4.h for why).
 *
 * The steps follow the published algorithm and botocore's SigV4Auth:
 * canonical request -> string to sign -> signing key (HMAC chain over date,
 * region, service, "aws4_request") -> hex signature.  Nothing here logs: the
 * secret only ever enters HMAC_* calls.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "buf.h"
#include "credentials.h"
#include "sigv4.h"

#define SIGV4_MAX_CANONICAL (64 * 1024)   /* our requests are small; a cap all the same */

static const char hexdigits_upper[] = "0123456789ABCDEF";
static const char hexdigits_lower[] = "0123456789abcdef";

static int
is_unreserved(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.' || c == '~';
}

/* Encode s into b; keep_slash for the URI path. */
static int
encode_into(struct buf *b, const char *s, int keep_slash)
{
  char esc[3];
  int r;

  for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
    if (is_unreserved(*p) || (keep_slash && *p == '/'))
      r = buf_append(b, p, 1);
    else {
      esc[0] = '%';
      esc[1] = hexdigits_upper[*p >> 4];
      esc[2] = hexdigits_upper[*p & 15];
      r = buf_append(b, esc, 3);
    }
    if (r < 0)
      return r;
  }
  return 0;
}

char *
sigv4_uri_encode(const char *s)
{
  struct buf b;

  buf_init(&b, SIGV4_MAX_CANONICAL);
  if (encode_into(&b, s, 0) < 0) {
    buf_free(&b);
    return NULL;
  }
  return buf_steal(&b);
}

struct enc_param {
  char *name;
  char *value;
};

static int
cmp_param(const void *a, const void *b)
{
  const struct enc_param *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

char *
sigv4_canonical_query(const struct sigv4_param *q, size_t nquery)
{
  struct enc_param *enc = NULL;
  struct buf b;
  char *out = NULL;
  size_t i;

  buf_init(&b, SIGV4_MAX_CANONICAL);
  if (nquery == 0)
    return buf_steal(&b);
  enc = calloc(nquery, sizeof *enc);
  if (enc == NULL)
    return NULL;
  for (i = 0; i < nquery; i++) {
    enc[i].name = sigv4_uri_encode(q[i].name);
    enc[i].value = sigv4_uri_encode(q[i].value ? q[i].value : "");
    if (enc[i].name == NULL || enc[i].value == NULL)
      goto out;
  }
  qsort(enc, nquery, sizeof *enc, cmp_param);
  for (i = 0; i < nquery; i++) {
    if (buf_printf(&b, "%s%s=%s", i ? "&" : "", enc[i].name, enc[i].value) < 0)
      goto out;
  }
  out = buf_steal(&b);
 out:
  for (i = 0; i < nquery; i++) {
    free(enc[i].name);
    free(enc[i].value);
  }
  free(enc);
  buf_free(&b);
  return out;
}

void
sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
  unsigned char md[SHA256_DIGEST_LENGTH];

  SHA256(data ? data : (const void *) "", len, md);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
    out[2 * i] = hexdigits_lower[md[i] >> 4];
    out[2 * i + 1] = hexdigits_lower[md[i] & 15];
  }
  out[64] = '\0';
}

/* One header as it enters the canonical form. */
struct canon_header {
  char *name;         /* lowercase */
  char *value;        /* trimmed, inner runs of spaces folded */
};

static int
cmp_header(const void *a, const void *b)
{
  const struct canon_header *x = a, *y = b;
  return strcmp(x->name, y->name);
}

static char *
lowercase_dup(const char *s)
{
  char *d = strdup(s);
  if (d)
    for (char *p = d; *p; p++)
      if (*p >= 'A' && *p <= 'Z')
        *p = (char) (*p - 'A' + 'a');
  return d;
}

static char *
fold_value(const char *v)
{
  size_t n = strlen(v);
  char *d = malloc(n + 1), *o = d;
  const char *p = v, *end = v + n;

  if (d == NULL)
    return NULL;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  for (; p < end; p++) {
    if (*p == ' ' || *p == '\t') {
      if (o > d && o[-1] == ' ')
        continue;
      *o++ = ' ';
    }
    else
      *o++ = *p;
  }
  *o = '\0';
  return d;
}

/* Headers that are never signed (botocore's blacklist). */
static int
header_unsigned(const char *lname)
{
  static const char *const skip[] = {
    "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    "authorization",
  };
  for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
    if (strcmp(lname, skip[i]) == 0)
      return 1;
  return 0;
}

/* Build canonical headers and signed-header list into hb/sb. */
static int
canonical_headers(const struct sigv4_request *req, const struct aws_credentials *creds,
                  const char *amz_date, const char *content_sha256,
                  struct buf *hb, struct buf *sb)
{
  size_t max = req->nheaders + 4, n = 0, i;
  struct canon_header *h = calloc(max, sizeof *h);
  int r = -ENOMEM;

  if (h == NULL)
    return -ENOMEM;

#define ADD(nm, val) do { \
    h[n].name = lowercase_dup(nm); h[n].value = fold_value(val); \
    if (h[n].name == NULL || h[n].value == NULL) { n++; goto out; } \
    n++; \
  } while (0)

  ADD("host", req->host);
  ADD("x-amz-date", amz_date);
  if (creds && creds->session_token)
    ADD("x-amz-security-token", creds->session_token);
  if (content_sha256[0])
    ADD("x-amz-content-sha256", content_sha256);
  for (i = 0; i < req->nheaders; i++) {
    char *lname = lowercase_dup(req->headers[i].name);
    int skip;
    if (lname == NULL)
      goto out;
    skip = header_unsigned(lname);
    free(lname);
    if (!skip)
      ADD(req->headers[i].name, req->headers[i].value);
  }
#undef ADD

  /* Stable sort by name keeps repeated headers in the order given. */
  for (i = 1; i < n; i++) {
    struct canon_header t = h[i];
    size_t j = i;
    while (j > 0 && cmp_header(&h[j - 1], &t) > 0) {
      h[j] = h[j - 1];
      j--;
    }
    h[j] = t;
  }

  for (i = 0; i < n; i++) {
    if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0) {
      /* Repeated header: values joined with ',' on the same line. */
      if (buf_printf(hb, ",%s", h[i].value) < 0)
        goto out;
      continue;
    }
    if (i > 0 && buf_append_str(hb, "\n") < 0)
      goto out;
    if (buf_printf(hb, "%s:%s", h[i].name, h[i].value) < 0 ||
        buf_printf(sb, "%s%s", sb->len ? ";" : "", h[i].name) < 0)
      goto out;
  }
  if (buf_append_str(hb, "\n") < 0)
    goto out;
  r = 0;
 out:
  for (i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
  free(h);
  return r;
}

static void
payload_hash(const struct sigv4_request *req, char out[65])
{
  if (req->unsigned_payload) {
    memcpy(out, "UNSIGNED-PAYLOAD", sizeof "UNSIGNED-PAYLOAD");
    return;
  }
  sigv4_sha256_hex(req->body, req->body_len, out);
}

/* Canonical request into cr; signed header list into sh. */
static int
build_canonical(const struct sigv4_request *req, const struct aws_credentials *creds,
                const char *amz_date, struct buf *cr, struct buf *sh)
{
  char content_sha256[65] = "";
  char hash[65];
  struct buf hb;
  char *query = NULL;
  int r;

  if (req->unsigned_payload)
    memcpy(content_sha256, "UNSIGNED-PAYLOAD", sizeof "UNSIGNED-PAYLOAD");
  payload_hash(req, hash);

  buf_init(&hb, SIGV4_MAX_CANONICAL);
  r = canonical_headers(req, creds, amz_date, content_sha256, &hb, sh);
  if (r < 0)
    goto out;
  query = sigv4_canonical_query(req->query, req->nquery);
  if (query == NULL) {
    r = -ENOMEM;
    goto out;
  }
  if ((r = buf_printf(cr, "%s\n", req->method)) < 0 ||
      (r = encode_into(cr, req->path && *req->path ? req->path : "/", 1)) < 0 ||
      (r = buf_printf(cr, "\n%s\n%s\n%s\n%s", query, hb.data, sh->data, hash)) < 0)
    goto out;
 out:
  free(query);
  buf_free(&hb);
  return r;
}

char *
sigv4_canonical_request(const struct sigv4_request *req, const struct aws_credentials *creds,
                        const char *amz_date)
{
  struct buf cr, sh;
  char *out = NULL;

  buf_init(&cr, SIGV4_MAX_CANONICAL);
  buf_init(&sh, SIGV4_MAX_CANONICAL);
  if (build_canonical(req, creds, amz_date, &cr, &sh) == 0)
    out = buf_steal(&cr);
  buf_free(&cr);
  buf_free(&sh);
  return out;
}

static int
hmac256(const void *key, size_t keylen, const void *msg, size_t msglen,
        unsigned char out[32])
{
  unsigned int len = 32;
  return HMAC(EVP_sha256(), key, (int) keylen, msg, msglen, out, &len) ? 0 : -EIO;
}

int
sigv4_sign(const struct sigv4_request *req, const struct aws_credentials *creds,
           const char *region, const char *service, time_t now,
           struct sigv4_signed *out)
{
  struct buf cr, sh, key0;
  char date[9], cr_hash[65], sts[256 + 65];
  unsigned char k[32], sig[32];
  char sighex[65];
  struct tm tm;
  int r, n;

  if (creds == NULL || creds->access_key_id == NULL || creds->secret_access_key == NULL)
    return -EINVAL;
  if (gmtime_r(&now, &tm) == NULL)
    return -EINVAL;
  strftime(out->amz_date, sizeof out->amz_date, "%Y%m%dT%H%M%SZ", &tm);
  memcpy(date, out->amz_date, 8);
  date[8] = '\0';
  if (req->unsigned_payload)
    memcpy(out->content_sha256, "UNSIGNED-PAYLOAD", sizeof "UNSIGNED-PAYLOAD");
  else
    out->content_sha256[0] = '\0';

  buf_init(&cr, SIGV4_MAX_CANONICAL);
  buf_init(&sh, SIGV4_MAX_CANONICAL);
  buf_init(&key0, 1024);
  r = build_canonical(req, creds, out->amz_date, &cr, &sh);
  if (r < 0)
    goto out;
  sigv4_sha256_hex(cr.data, cr.len, cr_hash);

  n = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
               out->amz_date, date, region, service, cr_hash);
  if (n < 0 || (size_t) n >= sizeof sts) {
    r = -ENAMETOOLONG;
    goto out;
  }

  if ((r = buf_printf(&key0, "AWS4%s", creds->secret_access_key)) < 0 ||
      (r = hmac256(key0.data, key0.len, date, strlen(date), k)) < 0 ||
      (r = hmac256(k, 32, region, strlen(region), k)) < 0 ||
      (r = hmac256(k, 32, service, strlen(service), k)) < 0 ||
      (r = hmac256(k, 32, "aws4_request", 12, k)) < 0 ||
      (r = hmac256(k, 32, sts, (size_t) n, sig)) < 0)
    goto out;
  for (int i = 0; i < 32; i++) {
    sighex[2 * i] = hexdigits_lower[sig[i] >> 4];
    sighex[2 * i + 1] = hexdigits_lower[sig[i] & 15];
  }
  sighex[64] = '\0';

  n = snprintf(out->authorization, sizeof out->authorization,
               "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
               "SignedHeaders=%s, Signature=%s",
               creds->access_key_id, date, region, service, sh.data, sighex);
  if (n < 0 || (size_t) n >= sizeof out->authorization)
    r = -ENAMETOOLONG;
 out:
  OPENSSL_cleanse(k, sizeof k);
  if (key0.data)
    OPENSSL_cleanse(key0.data, key0.len);
  buf_free(&key0);
  buf_free(&cr);
  buf_free(&sh);
  return r;
}
