/* ebs_format.c - checksums and identifiers of the EBS API (see ebs_format.h). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ebs.h"
#include "ebs_format.h"

bool
ebs_valid_snapshot_id(const char *s)
{
  size_t n;
  if (s == NULL || strncmp(s, "snap-", 5) != 0)
    return false;
  n = strlen(s);
  if (n <= 5 || n > EBS_SNAPSHOT_ID_MAX)
    return false;
  for (size_t i = 5; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

void
ebs_sha256(const void *data, size_t len, unsigned char out[32])
{
  unsigned int n = 32;
  if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
    memset(out, 0, 32);          /* cannot happen short of a broken libcrypto */
}

void
ebs_b64_digest(const unsigned char digest[32], char out[EBS_B64_SHA256_LEN + 1])
{
  EVP_EncodeBlock((unsigned char *) out, digest, 32);
  out[EBS_B64_SHA256_LEN] = '\0';
}

void
ebs_linear_checksum(const unsigned char (*digests)[32], size_t n, unsigned char out[32])
{
  /* One pass over the concatenation, without building it. */
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned int len = 32;

  if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
      (n > 0 && EVP_DigestUpdate(ctx, digests, n * 32) != 1) ||
      EVP_DigestFinal_ex(ctx, out, &len) != 1)
    memset(out, 0, 32);
  EVP_MD_CTX_free(ctx);
}

int
ebs_random_token(char out[37])
{
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1)
    return -EIO;
  b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
           b[12], b[13], b[14], b[15]);
  return 0;
}
