/* ebs_format.h - small pure helpers for the EBS API's formats: checksums
 * (base64 SHA-256 as in x-amz-Checksum) and identifiers.  The public ones
 * (ebs_linear_checksum, ebs_valid_snapshot_id) are declared in ebs.h.
 */
#ifndef EBSFS_EBS_FORMAT_H
#define EBSFS_EBS_FORMAT_H

#include <stddef.h>

#include "ebs.h"

#define EBS_B64_SHA256_LEN 44    /* base64 of 32 bytes, with padding */

/* out: EBS_B64_SHA256_LEN + 1 bytes. */
void ebs_b64_digest(const unsigned char digest[32], char out[EBS_B64_SHA256_LEN + 1]);
void ebs_sha256(const void *data, size_t len, unsigned char out[32]);
/* A fresh random idempotency token (uuid4 text) in out[37].  0 or -EIO. */
int ebs_random_token(char out[37]);

#endif
