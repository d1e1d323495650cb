/* sigv4_test.c - the published AWS SigV4 test suite (aws-sig-v4-test-suite,
 * 2015-08-30: AKIDEXAMPLE, us-east-1, service "service") and the EBS
 * specifics the suite does not cover: UNSIGNED-PAYLOAD, the query encoding
 * of page tokens, a host with a port.  The expected canonical requests and
 * signatures are AWS's published ones; botocore is compared separately by
 * tests/client-sigv4-botocore.sh. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"
#include "sigv4.h"
#include "testing.h"

#define SUITE_TIME 1440938160           /* 20150830T123600Z */
#define SUITE_HOST "example.amazonaws.com"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUITE_TOKEN "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

struct vector {
  const char *name;
  const char *method;
  const char *path;
  struct sigv4_param query[3];
  size_t nquery;
  struct sigv4_header headers[5];
  size_t nheaders;
  const char *body;
  bool with_token;
  const char *creq;             /* NULL: not published in a usable form */
  const char *signed_headers;
  const char *signature;
};

#define BASIC_CREQ(method, uri, query) \
  method "\n" uri "\n" query "\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n" \
  "host;x-amz-date\n" EMPTY_SHA256

static const struct vector vectors[] = {
  { "get-vanilla", "GET", "/", {{0}}, 0, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", ""), "host;x-amz-date",
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },
  { "get-vanilla-query", "GET", "/", {{0}}, 0, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", ""), "host;x-amz-date",
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },
  { "get-vanilla-empty-query-key", "GET", "/", {{ "Param1", "value1" }}, 1, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", "Param1=value1"), "host;x-amz-date",
    "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb" },
  /* Sorted by name... */
  { "get-vanilla-query-order-key-case", "GET", "/",
    {{ "Param2", "value2" }, { "Param1", "value1" }}, 2, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", "Param1=value1&Param2=value2"), "host;x-amz-date",
    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },
  /* ...then by value (the suite names these two differently across copies;
   * the requests and signatures are what count). */
  { "get-vanilla-query-order-value", "GET", "/",
    {{ "Param1", "value2" }, { "Param1", "value1" }}, 2, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", "Param1=value1&Param1=value2"), "host;x-amz-date",
    "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694" },
  { "get-vanilla-query-order-key", "GET", "/",
    {{ "Param1", "value2" }, { "Param1", "Value1" }}, 2, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", "Param1=Value1&Param1=value2"), "host;x-amz-date",
    "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1" },
  { "get-vanilla-query-unreserved", "GET", "/",
    {{ "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" }}, 1, {{0}}, 0,
    "", false,
    BASIC_CREQ("GET", "/", "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
               "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    "host;x-amz-date",
    "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197" },
  { "get-vanilla-utf8-query", "GET", "/", {{ "\xe1\x88\xb4", "bar" }}, 1, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/", "%E1%88%B4=bar"), "host;x-amz-date",
    "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04" },
  { "get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    {{0}}, 0, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", ""),
    "host;x-amz-date",
    "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },
  { "get-utf8", "GET", "/\xe1\x88\xb4", {{0}}, 0, {{0}}, 0, "", false,
    BASIC_CREQ("GET", "/%E1%88%B4", ""), "host;x-amz-date",
    "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85" },
  { "get-header-value-trim", "GET", "/", {{0}}, 0,
    {{ "My-Header1", " value1" }, { "My-Header2", "\"a   b   c\"" }}, 2, "", false,
    "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
    "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_SHA256,
    "host;my-header1;my-header2;x-amz-date",
    "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736" },
  { "get-header-key-duplicate", "GET", "/", {{0}}, 0,
    {{ "My-Header1", "value2" }, { "My-Header1", "value2" }, { "My-Header1", "value1" }}, 3,
    "", false,
    "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
    "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA256,
    "host;my-header1;x-amz-date",
    "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea" },
  { "get-header-value-order", "GET", "/", {{0}}, 0,
    {{ "My-Header1", "value4" }, { "My-Header1", "value1" }, { "My-Header1", "value3" },
     { "My-Header1", "value2" }}, 4, "", false,
    "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\n"
    "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA256,
    "host;my-header1;x-amz-date",
    "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01" },
  { "post-vanilla", "POST", "/", {{0}}, 0, {{0}}, 0, "", false,
    BASIC_CREQ("POST", "/", ""), "host;x-amz-date",
    "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b" },
  { "post-vanilla-query", "POST", "/", {{ "Param1", "value1" }}, 1, {{0}}, 0, "", false,
    BASIC_CREQ("POST", "/", "Param1=value1"), "host;x-amz-date",
    "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11" },
  { "post-header-key-sort", "POST", "/", {{0}}, 0, {{ "My-Header1", "value1" }}, 1, "", false,
    "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\n"
    "host;my-header1;x-amz-date\n" EMPTY_SHA256,
    "host;my-header1;x-amz-date",
    "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c" },
  { "post-header-key-case", "POST", "/", {{0}}, 0, {{0}}, 0, "", false,
    BASIC_CREQ("POST", "/", ""), "host;x-amz-date",
    "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b" },
  { "post-header-value-case", "POST", "/", {{0}}, 0, {{ "My-Header1", "VALUE1" }}, 1, "", false,
    "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\n"
    "host;my-header1;x-amz-date\n" EMPTY_SHA256,
    "host;my-header1;x-amz-date",
    "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d" },
  /* The suite's .creq for this case lists content-length, but its .sts and
   * .authz were made without it; the signature is the one that matters. */
  { "post-x-www-form-urlencoded", "POST", "/", {{0}}, 0,
    {{ "Content-Type", "application/x-www-form-urlencoded" }}, 1, "Param1=value1", false,
    "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
    "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
    "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
    "content-type;host;x-amz-date",
    "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },
  { "post-sts-header-before", "POST", "/", {{0}}, 0, {{0}}, 0, "", true,
    "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
    "x-amz-security-token:" SUITE_TOKEN "\n\nhost;x-amz-date;x-amz-security-token\n" EMPTY_SHA256,
    "host;x-amz-date;x-amz-security-token",
    "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead" },
};

static struct aws_credentials suite_creds = {
  .access_key_id = (char *) "AKIDEXAMPLE",
  .secret_access_key = (char *) SECRET,
  .source = "test",
};

static struct aws_credentials suite_creds_token = {
  .access_key_id = (char *) "AKIDEXAMPLE",
  .secret_access_key = (char *) SECRET,
  .session_token = (char *) SUITE_TOKEN,
  .source = "test",
};

static void
run_vector(const struct vector *v)
{
  struct sigv4_request req = {
    .method = v->method, .host = SUITE_HOST, .path = v->path,
    .query = v->query, .nquery = v->nquery,
    .headers = v->headers, .nheaders = v->nheaders,
    .body = v->body, .body_len = strlen(v->body),
  };
  const struct aws_credentials *c = v->with_token ? &suite_creds_token : &suite_creds;
  struct sigv4_signed out;
  char expected[512];
  char *creq;
  int before = test_failures;

  creq = sigv4_canonical_request(&req, c, "20150830T123600Z");
  if (v->creq)
    CHECK_STREQ(creq, v->creq);
  free(creq);
  CHECK_INTEQ(sigv4_sign(&req, c, "us-east-1", "service", SUITE_TIME, &out), 0);
  snprintf(expected, sizeof expected,
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
           "SignedHeaders=%s, Signature=%s", v->signed_headers, v->signature);
  CHECK_STREQ(out.authorization, expected);
  CHECK_STREQ(out.amz_date, "20150830T123600Z");
  CHECK_STREQ(out.content_sha256, "");
  /* The Authorization header never carries a secret. */
  CHECK(strstr(out.authorization, SECRET) == NULL);
  CHECK(strstr(out.authorization, "EXAMPLEtc764") == NULL);
  if (test_failures != before)
    fprintf(stderr, "  in vector %s\n", v->name);
}

static void
test_encoding(void)
{
  char *s;
  struct sigv4_param q[] = {
    { "startingBlockIndex", "0" },
    { "pageToken", "AAUBAQ+/x=" },
    { "maxResults", "1000" },
    { "firstSnapshotId", "snap-0123" },
    { "a b", "" },
    { "~", NULL },
  };

  s = sigv4_uri_encode("a+b/c=d e~f-_.%");
  CHECK_STREQ(s, "a%2Bb%2Fc%3Dd%20e~f-_.%25");
  free(s);
  s = sigv4_uri_encode("");
  CHECK_STREQ(s, "");
  free(s);
  s = sigv4_canonical_query(q, 0);
  CHECK_STREQ(s, "");
  free(s);
  /* Sorted by the encoded name: "a%20b" < "firstSnapshotId" < ... < "~". */
  s = sigv4_canonical_query(q, sizeof q / sizeof q[0]);
  CHECK_STREQ(s, "a%20b=&firstSnapshotId=snap-0123&maxResults=1000&"
              "pageToken=AAUBAQ%2B%2Fx%3D&startingBlockIndex=0&~=");
  free(s);
}

/* PutSnapshotBlock's shape: UNSIGNED-PAYLOAD is both a signed header and the
 * payload hash; a non-default port stays in host; x-amz-checksum sorts
 * before x-amz-checksum-algorithm (curl 7.88's bug); unsigned headers such
 * as User-Agent and Expect are left out. */
static void
test_ebs_put(void)
{
  struct sigv4_header h[] = {
    { "x-amz-Data-Length", "524288" },
    { "x-amz-Checksum-Algorithm", "SHA256" },
    { "x-amz-Checksum", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" },
    { "User-Agent", "ebsfs/0.1" },
    { "Expect", "" },
    { "Content-Type", "application/octet-stream" },
  };
  struct sigv4_request req = {
    .method = "PUT", .host = "127.0.0.1:8080", .path = "/snapshots/snap-0abc/blocks/7",
    .headers = h, .nheaders = 6, .body = "ignored", .body_len = 7, .unsigned_payload = true,
  };
  struct sigv4_signed out;
  char *creq;

  creq = sigv4_canonical_request(&req, &suite_creds_token, "20150830T123600Z");
  CHECK_STREQ(creq,
              "PUT\n/snapshots/snap-0abc/blocks/7\n\n"
              "content-type:application/octet-stream\n"
              "host:127.0.0.1:8080\n"
              "x-amz-checksum:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
              "x-amz-checksum-algorithm:SHA256\n"
              "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
              "x-amz-data-length:524288\n"
              "x-amz-date:20150830T123600Z\n"
              "x-amz-security-token:" SUITE_TOKEN "\n\n"
              "content-type;host;x-amz-checksum;x-amz-checksum-algorithm;x-amz-content-sha256;"
              "x-amz-data-length;x-amz-date;x-amz-security-token\n"
              "UNSIGNED-PAYLOAD");
  free(creq);
  CHECK_INTEQ(sigv4_sign(&req, &suite_creds_token, "us-east-1", "ebs", SUITE_TIME, &out), 0);
  CHECK_STREQ(out.content_sha256, "UNSIGNED-PAYLOAD");
  CHECK(strstr(out.authorization, "Credential=AKIDEXAMPLE/20150830/us-east-1/ebs/aws4_request, "
               "SignedHeaders=content-type;host;x-amz-checksum;x-amz-checksum-algorithm;"
               "x-amz-content-sha256;x-amz-data-length;x-amz-date;x-amz-security-token, "
               "Signature=") != NULL);
  CHECK(strstr(out.authorization, SUITE_TOKEN) == NULL);

  /* Signing refuses incomplete credentials. */
  struct aws_credentials half = { .access_key_id = (char *) "AKID" };
  CHECK_INTEQ(sigv4_sign(&req, &half, "us-east-1", "ebs", SUITE_TIME, &out), -EINVAL);
  CHECK_INTEQ(sigv4_sign(&req, NULL, "us-east-1", "ebs", SUITE_TIME, &out), -EINVAL);
}

static void
test_sha256(void)
{
  char hex[65];

  sigv4_sha256_hex(NULL, 0, hex);
  CHECK_STREQ(hex, EMPTY_SHA256);
  sigv4_sha256_hex("Param1=value1", 13, hex);
  CHECK_STREQ(hex, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
}

int
main(void)
{
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
    run_vector(&vectors[i]);
  test_encoding();
  test_ebs_put();
  test_sha256();
  TEST_EXIT();
}
