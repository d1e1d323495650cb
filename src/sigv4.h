/* sigv4.h - AWS Signature Version 4, computed with OpenSSL.
 *
 * We sign ourselves rather than use CURLOPT_AWS_SIGV4: Debian 12's libcurl
 * (7.88) sorts "x-amz-checksum-algorithm" before "x-amz-checksum" and so
 * cannot sign PutSnapshotBlock, passes the query through unsorted, and has
 * no session-token support.  Doing it here also makes the canonical request
 * testable against the AWS test suite and botocore byte for byte.
 *
 * The transport uses sigv4_canonical_query() for the URL it sends, so the
 * query on the wire is exactly the one that was signed.
 */
#ifndef EBSFS_SIGV4_H
#define EBSFS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct aws_credentials;

struct sigv4_param {            /* one query parameter, NOT yet encoded */
  const char *name;
  const char *value;            /* "" for a key with no value */
};

struct sigv4_header {           /* one header to send and sign */
  const char *name;             /* any case; signed lowercased */
  const char *value;
};

struct sigv4_request {
  const char *method;           /* "GET", "PUT", "POST" */
  const char *host;             /* "ebs.us-east-1.amazonaws.com" or "127.0.0.1:8080" (non-default port kept) */
  const char *path;             /* raw path, "/snapshots/snap-1/blocks/0" */
  const struct sigv4_param *query;
  size_t nquery;
  const struct sigv4_header *headers;  /* headers the caller sends, other than
                                        * host/x-amz-date/x-amz-security-token/
                                        * x-amz-content-sha256 which signing adds */
  size_t nheaders;
  const void *body;             /* may be NULL when body_len == 0 */
  size_t body_len;
  bool unsigned_payload;        /* PutSnapshotBlock: X-Amz-Content-SHA256: UNSIGNED-PAYLOAD */
};

/* The headers signing produced; the caller sends each non-empty one. */
struct sigv4_signed {
  char amz_date[17];            /* X-Amz-Date: 20150830T123600Z */
  char content_sha256[65];      /* X-Amz-Content-SHA256 value, "" when not sent */
  char authorization[512];      /* Authorization value (contains no secret) */
  /* X-Amz-Security-Token is the credentials' session token, when present. */
};

/* Percent-encode a query component the SigV4 way (unreserved A-Za-z0-9-_.~
 * kept, everything else %XX uppercase).  Returns malloc'd string or NULL. */
char *sigv4_uri_encode(const char *s);

/* "a=1&b=%2F" - names and values encoded, sorted by name then value.
 * Returns a malloc'd string ("" when nquery == 0), NULL on ENOMEM. */
char *sigv4_canonical_query(const struct sigv4_param *q, size_t nquery);

/* Sign req for service/region at time now.  Returns 0 or -errno. */
int sigv4_sign(const struct sigv4_request *req,
               const struct aws_credentials *creds,
               const char *region, const char *service, time_t now,
               struct sigv4_signed *out);

/* For tests and debug: the canonical request and string to sign that
 * sigv4_sign would use (malloc'd; NULL on error). */
char *sigv4_canonical_request(const struct sigv4_request *req,
                              const struct aws_credentials *creds,
                              const char *amz_date);

/* Lowercase hex SHA-256 of data into out[65]. */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
