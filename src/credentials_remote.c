/* credentials_remote.c - the credential sources reached over HTTP: the
 * ECS/EKS container endpoint and the EC2 instance metadata service (IMDSv2).
 *
 * Each fetch uses its own short-lived libcurl easy handle, independent of
 * the EBS transport's pool: these run once an hour at most, and must work
 * before (and regardless of) anything the transport sets up.  Timeouts are
 * short, as botocore's are (IMDS: 1 s to connect, one attempt; container:
 * 2 s, three attempts), so a machine without IMDS fails in about a second.
 * Proxies are never used: both endpoints are link-local or loopback by
 * design, and a proxy would see the authorization token.
 *
 * Secrets here: the credentials in the replies, the container authorization
 * token and the IMDS session token.  None reaches an error message; errors
 * name the endpoint's host and the HTTP status or curl's reason.
 */
#include <config.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "buf.h"
#include "credentials_int.h"

#define IMDS_DEFAULT_ENDPOINT      "http://169.254.169.254"
#define IMDS_DEFAULT_ENDPOINT_IPV6 "http://[fd00:ec2::254]"
#define IMDS_TOKEN_TTL_S           21600
#define IMDS_CONNECT_MS            1000
#define IMDS_TOTAL_MS              2000
#define CONTAINER_HOST             "http://169.254.170.2"
#define CONTAINER_TIMEOUT_MS       2000
#define CONTAINER_ATTEMPTS         3

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  struct buf *b = userdata;

  if (buf_append(b, ptr, size * nmemb) < 0)
    return 0;                   /* over the cap: curl aborts the transfer */
  return size * nmemb;
}

static size_t
empty_read_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  return 0;
}

static void
wipe_buf(struct buf *b)
{
  if (b->data)
    OPENSSL_cleanse(b->data, b->len);
  buf_free(b);
}

/* One request.  Returns 0 with *status and the body in b, or -errno with
 * curl's reason in err (which names the host, never a header). */
static int
http_fetch(const char *method, const char *url, struct curl_slist *headers,
           long connect_ms, long total_ms, long *status, struct buf *b,
           char *err, size_t errlen)
{
  char cerr[CURL_ERROR_SIZE] = "";
  CURL *h = curl_easy_init();
  CURLcode rc;
  int r = 0;

  if (h == NULL) {
    snprintf(err, errlen, "cannot create a curl handle");
    return -ENOMEM;
  }
  buf_reset(b);
#if HAVE_DECL_CURLOPT_PROTOCOLS_STR
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  if ((rc = curl_easy_setopt(h, CURLOPT_URL, url)) != CURLE_OK) {
    snprintf(err, errlen, "bad URL: %s", curl_easy_strerror(rc));
    curl_easy_cleanup(h);
    return -EINVAL;
  }
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total_ms);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "ebsfs/" PACKAGE_VERSION);
  if (strcmp(method, "PUT") == 0) {
    /* An empty PUT with Content-Length: 0, as IMDS expects. */
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) 0);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, empty_read_cb);
  }
  rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    if (rc == CURLE_WRITE_ERROR)
      snprintf(err, errlen, "reply larger than %d bytes", CREDS_MAX_RESPONSE);
    else
      snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    r = rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT :
        rc == CURLE_WRITE_ERROR ? -E2BIG : -EHOSTUNREACH;
  }
  else
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  curl_easy_cleanup(h);
  return r;
}

static bool
env_true(const char *name)
{
  const char *v = getenv(name);
  return v && strcasecmp(v, "true") == 0;
}

/* A header line carrying a secret: wiped when freed. */
static void
free_secret_slist(struct curl_slist *l)
{
  for (struct curl_slist *p = l; p; p = p->next)
    OPENSSL_cleanse(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

/* ---- container endpoint ---------------------------------------------------- */

/* FULL_URI may only be https, or http to a loopback or the ECS/EKS agent
 * addresses (as botocore requires): the token must not leave the host. */
static bool
full_uri_allowed(const char *url)
{
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  bool ok = false;

  if (u == NULL)
    return false;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    goto out;
  if (strcasecmp(scheme, "https") == 0)
    ok = true;
  else if (strcasecmp(scheme, "http") == 0) {
    struct in_addr a4;
    struct in6_addr a6, lo6 = IN6ADDR_LOOPBACK_INIT, eks6;
    size_t n = strlen(host);

    inet_pton(AF_INET6, "fd00:ec2::23", &eks6);
    if (strcasecmp(host, "localhost") == 0)
      ok = true;
    else if (inet_pton(AF_INET, host, &a4) == 1)
      ok = (ntohl(a4.s_addr) >> 24) == 127 || strcmp(host, "169.254.170.23") == 0;
    else if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
      char inner[64];
      if (n - 2 < sizeof inner) {
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        if (inet_pton(AF_INET6, inner, &a6) == 1)
          ok = memcmp(&a6, &lo6, sizeof a6) == 0 || memcmp(&a6, &eks6, sizeof a6) == 0;
      }
    }
  }
 out:
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  return ok;
}

/* The authorization token: the file wins over the variable, as in botocore. */
static int
container_auth_token(char **token, char *err, size_t errlen)
{
  const char *file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  const char *val = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
  char *t = NULL;
  size_t n;

  *token = NULL;
  if (file && *file) {
    FILE *fp = fopen(file, "re");
    struct buf b;
    char chunk[1024];
    size_t got;
    int r = 0;

    if (fp == NULL) {
      r = -errno;
      snprintf(err, errlen, "container: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %s",
               strerror(-r));
      return r;
    }
    buf_init(&b, 16384);
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0 && r == 0)
      r = buf_append(&b, chunk, got);
    OPENSSL_cleanse(chunk, sizeof chunk);
    fclose(fp);
    if (r < 0) {
      wipe_buf(&b);
      snprintf(err, errlen, "container: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is too large");
      return r;
    }
    t = buf_steal(&b);
    if (t == NULL)
      t = strdup("");
  }
  else if (val && *val)
    t = strdup(val);
  else
    return 0;
  if (t == NULL) {
    snprintf(err, errlen, "container: out of memory");
    return -ENOMEM;
  }
  /* A file written with echo ends in a newline; inside, CR/LF would split
   * the header. */
  n = strlen(t);
  while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
    t[--n] = '\0';
  if (strpbrk(t, "\r\n") != NULL) {
    OPENSSL_cleanse(t, n);
    free(t);
    snprintf(err, errlen, "container: the authorization token is not a legal header value");
    return -EINVAL;
  }
  *token = t;
  return 0;
}

int
creds_from_container(struct aws_credentials **out, char *err, size_t errlen)
{
  const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  struct curl_slist *hdrs = NULL, *tmp;
  char *url = NULL, *token = NULL, *auth = NULL;
  char why[CURL_ERROR_SIZE + 64] = "";
  long status = 0;
  struct buf b;
  int r;

  if (rel && *rel) {
    if (asprintf(&url, "%s%s%s", CONTAINER_HOST, rel[0] == '/' ? "" : "/", rel) < 0)
      url = NULL;
  }
  else if (full && *full) {
    if (!full_uri_allowed(full)) {
      snprintf(err, errlen, "container: AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or "
               "http to a loopback address, 169.254.170.23 or fd00:ec2::23");
      return -EINVAL;
    }
    url = strdup(full);
  }
  else
    return -ENOENT;
  if (url == NULL) {
    snprintf(err, errlen, "container: out of memory");
    return -ENOMEM;
  }
  if ((r = container_auth_token(&token, err, errlen)) < 0) {
    free(url);
    return r;
  }
  if (token) {
    if (asprintf(&auth, "Authorization: %s", token) < 0)
      auth = NULL;
    OPENSSL_cleanse(token, strlen(token));
    free(token);
    if (auth == NULL || (tmp = curl_slist_append(hdrs, auth)) == NULL) {
      r = -ENOMEM;
      snprintf(err, errlen, "container: out of memory");
      goto out;
    }
    hdrs = tmp;
  }
  if ((tmp = curl_slist_append(hdrs, "Accept: application/json")) == NULL) {
    r = -ENOMEM;
    snprintf(err, errlen, "container: out of memory");
    goto out;
  }
  hdrs = tmp;

  buf_init(&b, CREDS_MAX_RESPONSE);
  for (int attempt = 1; attempt <= CONTAINER_ATTEMPTS; attempt++) {
    r = http_fetch("GET", url, hdrs, CONTAINER_TIMEOUT_MS, CONTAINER_TIMEOUT_MS, &status, &b,
                   why, sizeof why);
    if (r == 0 && status < 500)
      break;
    if (r == 0)
      snprintf(why, sizeof why, "HTTP %ld", status);
    if (attempt < CONTAINER_ATTEMPTS)
      usleep(100000 * attempt);
  }
  if (r < 0 || status >= 500) {
    snprintf(err, errlen, "container endpoint: %s", why);
    r = -EIO;
  }
  else if (status != 200) {
    snprintf(err, errlen, "container endpoint answered HTTP %ld", status);
    r = -EACCES;
  }
  else
    r = creds_from_json(b.data ? b.data : "", b.len, "Token", false, "container",
                        out, err, errlen);
  wipe_buf(&b);
 out:
  if (auth) {
    OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
  }
  free_secret_slist(hdrs);
  free(url);
  return r;
}

/* ---- EC2 instance metadata (IMDSv2) ------------------------------------------ */

static char *
imds_base(const char *override)
{
  const char *e = override;
  size_t n;
  char *base;

  if (e == NULL || *e == '\0')
    e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (e == NULL || *e == '\0') {
    const char *mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    e = mode && strcasecmp(mode, "ipv6") == 0 ? IMDS_DEFAULT_ENDPOINT_IPV6 : IMDS_DEFAULT_ENDPOINT;
  }
  base = strdup(e);
  if (base) {
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
      base[--n] = '\0';
  }
  return base;
}

int
creds_from_imds(const char *endpoint_override, struct aws_credentials **out,
                char *err, size_t errlen)
{
  struct curl_slist *put_hdrs = NULL, *get_hdrs = NULL;
  char *base, *url = NULL, *hdr = NULL, *role = NULL;
  char why[CURL_ERROR_SIZE + 64];
  long status = 0;
  struct buf b;
  size_t n;
  int r;

  if (env_true("AWS_EC2_METADATA_DISABLED")) {
    snprintf(err, errlen, "IMDS: disabled by AWS_EC2_METADATA_DISABLED");
    return -ENOENT;
  }
  base = imds_base(endpoint_override);
  if (base == NULL) {
    snprintf(err, errlen, "IMDS: out of memory");
    return -ENOMEM;
  }
  buf_init(&b, CREDS_MAX_RESPONSE);

  /* 1. Session token. */
  if (asprintf(&url, "%s/latest/api/token", base) < 0 ||
      asprintf(&hdr, "x-aws-ec2-metadata-token-ttl-seconds: %d", IMDS_TOKEN_TTL_S) < 0 ||
      (put_hdrs = curl_slist_append(NULL, hdr)) == NULL) {
    r = -ENOMEM;
    snprintf(err, errlen, "IMDS: out of memory");
    goto out;
  }
  r = http_fetch("PUT", url, put_hdrs, IMDS_CONNECT_MS, IMDS_TOTAL_MS, &status, &b,
                 why, sizeof why);
  if (r < 0) {
    snprintf(err, errlen, "IMDS at %s not reachable: %s", base, why);
    goto out;
  }
  if (status == 200 && b.len > 0) {
    free(hdr);
    hdr = NULL;
    if (asprintf(&hdr, "x-aws-ec2-metadata-token: %.*s",
                 (int) strcspn(b.data, "\r\n"), b.data) < 0 ||
        (get_hdrs = curl_slist_append(NULL, hdr)) == NULL) {
      r = -ENOMEM;
      snprintf(err, errlen, "IMDS: out of memory");
      goto out;
    }
    OPENSSL_cleanse(hdr, strlen(hdr));
  }
  else if ((status == 403 || status == 404 || status == 405) &&
           !env_true("AWS_EC2_METADATA_V1_DISABLED")) {
    /* No IMDSv2 here: botocore falls back to IMDSv1 (no token). */
  }
  else {
    snprintf(err, errlen, "IMDS at %s: token request answered HTTP %ld", base, status);
    r = -EACCES;
    goto out;
  }

  /* 2. The role attached to the instance. */
  free(url);
  if (asprintf(&url, "%s/latest/meta-data/iam/security-credentials/", base) < 0) {
    url = NULL;
    r = -ENOMEM;
    snprintf(err, errlen, "IMDS: out of memory");
    goto out;
  }
  wipe_buf(&b);
  buf_init(&b, CREDS_MAX_RESPONSE);
  r = http_fetch("GET", url, get_hdrs, IMDS_CONNECT_MS, IMDS_TOTAL_MS, &status, &b,
                 why, sizeof why);
  if (r < 0) {
    snprintf(err, errlen, "IMDS at %s: %s", base, why);
    goto out;
  }
  if (status == 404) {
    snprintf(err, errlen, "IMDS at %s: no IAM role is attached to this instance", base);
    r = -ENOENT;
    goto out;
  }
  if (status != 200 || b.len == 0) {
    snprintf(err, errlen, "IMDS at %s: role request answered HTTP %ld", base, status);
    r = -EACCES;
    goto out;
  }
  n = strcspn(b.data, "\r\n");
  role = strndup(b.data, n);
  if (role == NULL) {
    r = -ENOMEM;
    snprintf(err, errlen, "IMDS: out of memory");
    goto out;
  }
  for (char *p = role; *p; p++)
    if (!isalnum((unsigned char) *p) && strchr("+=,.@_-", *p) == NULL) {
      snprintf(err, errlen, "IMDS at %s: the role name is not a valid IAM role name", base);
      r = -EPROTO;
      goto out;
    }

  /* 3. That role's credentials. */
  free(url);
  if (asprintf(&url, "%s/latest/meta-data/iam/security-credentials/%s", base, role) < 0) {
    url = NULL;
    r = -ENOMEM;
    snprintf(err, errlen, "IMDS: out of memory");
    goto out;
  }
  wipe_buf(&b);
  buf_init(&b, CREDS_MAX_RESPONSE);
  r = http_fetch("GET", url, get_hdrs, IMDS_CONNECT_MS, IMDS_TOTAL_MS, &status, &b,
                 why, sizeof why);
  if (r < 0) {
    snprintf(err, errlen, "IMDS at %s: %s", base, why);
    goto out;
  }
  if (status != 200) {
    snprintf(err, errlen, "IMDS at %s: credentials request answered HTTP %ld", base, status);
    r = -EACCES;
    goto out;
  }
  r = creds_from_json(b.data ? b.data : "", b.len, "Token", false, "imds", out, err, errlen);
 out:
  wipe_buf(&b);
  if (hdr) {
    OPENSSL_cleanse(hdr, strlen(hdr));
    free(hdr);
  }
  curl_slist_free_all(put_hdrs);
  free_secret_slist(get_hdrs);
  free(role);
  free(url);
  free(base);
  return r;
}
