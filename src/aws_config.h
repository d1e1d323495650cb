/* aws_config.h - the AWS config conventions users already rely on:
 * ~/.aws/config and ~/.aws/credentials (AWS_CONFIG_FILE,
 * AWS_SHARED_CREDENTIALS_FILE), the active profile, region and endpoint
 * resolution in the documented order.
 */
#ifndef EBSFS_AWS_CONFIG_H
#define EBSFS_AWS_CONFIG_H

#include <stddef.h>

/* The profile in effect: option, else AWS_PROFILE, else "default".  Static
 * or the option's storage; never NULL. */
const char *aws_profile_name(const char *option);

/* Look up key in the profile's section of the config file ([profile x], or
 * [default]) or the credentials file ([x]).  Returns malloc'd value or NULL. */
char *aws_config_get(const char *profile, const char *key);
char *aws_credentials_file_get(const char *profile, const char *key);

/* Region: option > AWS_REGION > AWS_DEFAULT_REGION > profile region.
 * Returns malloc'd region, or NULL with a message in err. */
char *aws_resolve_region(const char *option, const char *profile, char *err, size_t errlen);

/* Endpoint: option > AWS_ENDPOINT_URL_EBS > AWS_ENDPOINT_URL >
 * https://ebs.REGION.amazonaws.com.  Returns malloc'd URL without a trailing
 * slash, or NULL with a message in err (e.g. a URL that is not http(s)). */
char *aws_resolve_endpoint(const char *option, const char *region, char *err, size_t errlen);

#endif
