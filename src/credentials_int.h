/* credentials_int.h - what the credential sources share (internal to the
 * client layer: credentials.c runs the chain and the refresh, the files
 * credentials_process.c and credentials_remote.c hold the sources that run
 * a command or talk HTTP).
 *
 * Every source returns 0 with a new reference in *out, -ENOENT when it is
 * not configured (the chain moves on), or another -errno with a one-line
 * reason in err when it is configured but failed (the chain stops there, as
 * botocore's does, so a broken credential_process is not papered over by
 * some other identity).  Reasons never contain a secret.
 */
#ifndef EBSFS_CREDENTIALS_INT_H
#define EBSFS_CREDENTIALS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "credentials.h"

/* Most bytes we accept from a credential endpoint or command. */
#define CREDS_MAX_RESPONSE (64 * 1024)

/* New credentials with one reference; copies the strings.  token may be
 * NULL or "".  NULL on ENOMEM. */
struct aws_credentials *creds_new(const char *akid, const char *secret, const char *token,
                                  time_t expiration, const char *source);

/* "2026-11-23T09:00:00Z", optional fraction, 'Z' or +HH:MM / -HH:MM.
 * Returns 0 or -EINVAL. */
int creds_parse_time(const char *s, time_t *out);

/* Credentials from a JSON document as credential_process, the container
 * endpoint and IMDS write them.  token_key is "SessionToken" or "Token";
 * need_version checks "Version": 1 (credential_process).  source names both
 * the result and the errors. */
int creds_from_json(const char *json, size_t len, const char *token_key, bool need_version,
                    const char *source, struct aws_credentials **out, char *err, size_t errlen);

/* Tests: how long after a refresh no optional one is started (default 10 s). */
void creds_provider_set_retry_interval(struct credentials_provider *p, int seconds);

/* The sources in credentials_process.c and credentials_remote.c. */
int creds_from_process(const char *profile, struct aws_credentials **out,
                       char *err, size_t errlen);
int creds_from_container(struct aws_credentials **out, char *err, size_t errlen);
int creds_from_imds(const char *endpoint_override, struct aws_credentials **out,
                    char *err, size_t errlen);

#endif
