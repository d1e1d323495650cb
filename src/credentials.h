/* credentials.h - where AWS credentials come from, in botocore's order.
 *
 * Chain: environment; shared credentials/config files (profile, [profile x]);
 * credential_process; container (ECS/EKS) endpoint; EC2 IMDSv2.
 * Temporary credentials are refreshed ahead of expiry by whoever asks first
 * after the refresh window opens, while other threads keep using the still
 * valid ones: credentials_get() never blocks on the network while the cached
 * credentials have more than CREDENTIALS_REFRESH_BLOCKING_S left.
 *
 * Secrets never reach a log line or an error message: errors name the source
 * and the problem, not the values.
 */
#ifndef EBSFS_CREDENTIALS_H
#define EBSFS_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define CREDENTIALS_REFRESH_ADVISORY_S (15 * 60)  /* start refreshing this early */
#define CREDENTIALS_REFRESH_BLOCKING_S 60         /* below this, wait for the refresh */

/* Immutable once published; shared by reference count. */
struct aws_credentials {
  char *access_key_id;
  char *secret_access_key;
  char *session_token;          /* NULL for long-term keys */
  time_t expiration;            /* 0 = does not expire */
  const char *source;           /* "environment", "shared-credentials-file",
                                 * "config-file", "credential-process",
                                 * "container", "imds" (static string) */
};

struct credentials_options {
  const char *profile;          /* -o profile=; NULL: AWS_PROFILE, else "default" */
  const char *imds_endpoint;    /* override for tests; NULL: env or the default */
};

struct credentials_provider;

/* Does not contact anything yet.  Returns NULL on ENOMEM only. */
struct credentials_provider *credentials_provider_new(const struct credentials_options *opts);
void credentials_provider_free(struct credentials_provider *p);

/* Get a reference to usable credentials (release with credentials_release).
 * Returns 0, or -errno with a one-line reason (no secrets) in err. */
int credentials_get(struct credentials_provider *p, struct aws_credentials **out,
                    char *err, size_t errlen);
void credentials_release(struct aws_credentials *c);

#endif
