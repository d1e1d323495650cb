/* fetcher.c - the benchmark's reference "ceiling": list every block of a
 * snapshot and GET each one with N concurrent connections, discarding the data.
 *
 * It is deliberately independent of ebsfs's transport (src/ebs.h): a plain
 * libcurl multi loop, credentials read straight from the environment, and
 * only src/sigv4.h shared for signing.  What it measures is the most this
 * machine and this endpoint deliver to a minimal client, so ebsfs's figures
 * can be stated as a ratio of it.  It verifies each block's x-amz-Checksum
 * (as any correct downloader must; --no-verify to skip), paces itself to
 * --rate requests/s when asked, and retries throttles and 5xx with jittered
 * backoff.  The result is one JSON object on stdout.
 *
 * --put N is the write-side ceiling: StartSnapshot, N PutSnapshotBlocks of
 * distinct data (each hashed, as an uploader must), CompleteSnapshot with the
 * LINEAR checksum.
 *
 *   fetcher --snapshot ID [--endpoint URL] [--region R] [--connections N]
 *           [--rate R] [--max-blocks N] [--no-verify] [--list-only]
 *   fetcher --put N [--endpoint URL] [--region R] [--connections N] [--rate R]
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "buf.h"
#include "credentials.h"
#include "sigv4.h"

#define BLOCK_SIZE 524288u
#define MAX_ATTEMPTS 10
#define MAX_PAGE_BYTES (16u << 20)      /* a 10,000-entry page is ~3 MB */
#define MAX_ERR_BODY 512

struct block {
  uint32_t index;
  char *token;
};

struct retry {                  /* a block waiting to be sent again */
  size_t block;
  int attempts;
  double due;                   /* monotonic seconds */
};

struct slot {                   /* one connection's easy handle */
  struct fetcher *f;
  CURL *h;
  struct curl_slist *hdrs;
  bool busy;
  size_t block;
  int attempts;
  EVP_MD_CTX *md;
  uint64_t got;
  char checksum[64];            /* x-amz-Checksum */
  char error_type[96];          /* x-amzn-ErrorType */
  unsigned char *data;          /* --put: the block being sent */
  struct buf errbody;
  char url[1024];
};

struct fetcher {
  const char *endpoint;         /* "http://127.0.0.1:PORT", no trailing slash */
  char host[256];               /* host[:port] as signed */
  const char *region;
  const char *snapshot;
  struct aws_credentials creds;
  unsigned connections;
  double rate;                  /* requests/s, 0 = unpaced */
  bool verify;
  size_t max_blocks;            /* 0 = all */
  size_t put;                   /* --put N: blocks to write, 0 = read mode */
  unsigned char *pattern;       /* --put: BLOCK_SIZE random bytes */
  char new_snapshot[80];        /* --put: the snapshot StartSnapshot made */
  unsigned char (*put_digests)[32];

  struct block *blocks;
  size_t nblocks, cap;
  int64_t volume_size_gib;

  size_t next;                  /* next block never sent */
  size_t done;
  struct retry *retries;        /* small unordered set */
  size_t nretries, retries_cap;
  double next_send;             /* pacing: earliest time of the next request */

  uint64_t bytes, requests, retried, throttles, failures;
  unsigned pages;
};

static double
now_mono(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
max_rss_kib(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static double
cpu_seconds(double *user, double *sys)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *sys = (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  return *user + *sys;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void
die(const char *fmt, ...)
{
  va_list ap;

  fprintf(stderr, "fetcher: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

/* Append "name: value" (value NULL: "name:", which removes a curl default). */
static struct curl_slist *
add_header(struct curl_slist *l, const char *name, const char *value)
{
  size_t n = strlen(name) + (value ? strlen(value) : 0) + 4;
  char *line = malloc(n);
  struct curl_slist *t;

  if (line == NULL)
    die("out of memory");
  snprintf(line, n, "%s:%s%s", name, value ? " " : "", value ? value : "");
  t = curl_slist_append(l, line);
  free(line);
  if (t == NULL)
    die("out of memory");
  return t;
}

/* The endpoint's host[:port], as it goes into the signature's host header. */
static void
parse_endpoint(struct fetcher *f, const char *url)
{
  const char *p = strstr(url, "://");
  size_t n;

  if (p == NULL)
    die("endpoint '%s' is not a URL", url);
  p += 3;
  n = strcspn(p, "/");
  if (n == 0 || n >= sizeof f->host)
    die("bad host in endpoint '%s'", url);
  memcpy(f->host, p, n);
  f->host[n] = '\0';
  if (p[n] != '\0' && strcmp(p + n, "/") != 0)
    die("endpoint '%s' must not have a path", url);
  /* Keep the endpoint without a trailing slash so paths can be appended. */
  char *e = strdup(url);
  if (e == NULL)
    die("out of memory");
  size_t el = strlen(e);
  if (el && e[el - 1] == '/')
    e[el - 1] = '\0';
  f->endpoint = e;
}

/* Sign a request and put the resulting headers (plus extra) on a new list;
 * writes the URL to send (query in canonical form) into url. */
static struct curl_slist *
sign_request(struct fetcher *f, const char *method, const char *path,
             const struct sigv4_param *q, size_t nq,
             const struct sigv4_header *extra, size_t nextra,
             const void *body, size_t body_len, bool unsigned_payload,
             char *url, size_t urllen)
{
  struct sigv4_request req = {
    .method = method, .host = f->host, .path = path, .query = q, .nquery = nq,
    .headers = extra, .nheaders = nextra, .body = body, .body_len = body_len,
    .unsigned_payload = unsigned_payload,
  };
  struct sigv4_signed s;
  struct curl_slist *l = NULL;
  char *query;
  int r;

  r = sigv4_sign(&req, &f->creds, f->region, "ebs", time(NULL), &s);
  if (r < 0)
    die("signing failed");
  query = sigv4_canonical_query(q, nq);
  if (query == NULL)
    die("out of memory");
  r = snprintf(url, urllen, "%s%s%s%s", f->endpoint, path, *query ? "?" : "", query);
  free(query);
  if (r < 0 || (size_t) r >= urllen)
    die("URL too long");

  l = add_header(l, "X-Amz-Date", s.amz_date);
  l = add_header(l, "Authorization", s.authorization);
  if (s.content_sha256[0])
    l = add_header(l, "X-Amz-Content-SHA256", s.content_sha256);
  if (f->creds.session_token)
    l = add_header(l, "X-Amz-Security-Token", f->creds.session_token);
  for (size_t i = 0; i < nextra; i++)
    l = add_header(l, extra[i].name, extra[i].value);
  l = add_header(l, "Expect", NULL);          /* no 100-continue round trip */
  return l;
}

static size_t
write_buf(char *p, size_t size, size_t n, void *arg)
{
  return buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* ---- listing --------------------------------------------------------------- */

static void
add_block(struct fetcher *f, uint32_t index, const char *token)
{
  if (f->nblocks == f->cap) {
    size_t nc = f->cap ? f->cap * 2 : 16384;
    struct block *nb = realloc(f->blocks, nc * sizeof *nb);
    if (nb == NULL)
      die("out of memory");
    f->blocks = nb;
    f->cap = nc;
  }
  f->blocks[f->nblocks].index = index;
  if ((f->blocks[f->nblocks].token = strdup(token)) == NULL)
    die("out of memory");
  f->nblocks++;
}

/* One ListSnapshotBlocks page; returns the NextToken (malloc'd) or NULL. */
static char *
list_page(struct fetcher *f, CURL *h, const char *page_token)
{
  struct sigv4_param q[2] = { { "maxResults", "10000" }, { "pageToken", page_token } };
  char path[256], url[2048];
  struct curl_slist *hdrs;
  struct buf body;
  long status = 0;
  CURLcode cc;
  cJSON *doc, *blocks, *b, *next;
  char *next_token = NULL;

  snprintf(path, sizeof path, "/snapshots/%s/blocks", f->snapshot);
  hdrs = sign_request(f, "GET", path, q, page_token ? 2 : 1, NULL, 0, NULL, 0, false,
                      url, sizeof url);
  buf_init(&body, MAX_PAGE_BYTES);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_buf);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  cc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hdrs);
  f->pages++;
  if (cc != CURLE_OK)
    die("ListSnapshotBlocks: %s", curl_easy_strerror(cc));
  if (status != 200) {
    fprintf(stderr, "fetcher: ListSnapshotBlocks: HTTP %ld: %.300s\n", status,
            body.data ? body.data : "");
    exit(1);
  }
  doc = cJSON_ParseWithLength(body.data, body.len);
  buf_free(&body);
  if (doc == NULL)
    die("ListSnapshotBlocks: the answer is not JSON");
  cJSON *vs = cJSON_GetObjectItemCaseSensitive(doc, "VolumeSize");
  if (cJSON_IsNumber(vs))
    f->volume_size_gib = (int64_t) vs->valuedouble;
  blocks = cJSON_GetObjectItemCaseSensitive(doc, "Blocks");
  cJSON_ArrayForEach(b, blocks) {
    cJSON *bi = cJSON_GetObjectItemCaseSensitive(b, "BlockIndex");
    cJSON *bt = cJSON_GetObjectItemCaseSensitive(b, "BlockToken");
    if (!cJSON_IsNumber(bi) || !cJSON_IsString(bt))
      die("ListSnapshotBlocks: a block without index or token");
    if (f->max_blocks && f->nblocks >= f->max_blocks)
      break;
    add_block(f, (uint32_t) bi->valuedouble, bt->valuestring);
  }
  next = cJSON_GetObjectItemCaseSensitive(doc, "NextToken");
  if (cJSON_IsString(next) && next->valuestring[0] &&
      !(f->max_blocks && f->nblocks >= f->max_blocks))
    if ((next_token = strdup(next->valuestring)) == NULL)
      die("out of memory");
  cJSON_Delete(doc);
  return next_token;
}

static void
list_all(struct fetcher *f)
{
  CURL *h = curl_easy_init();
  char *tok = NULL, *next;

  if (h == NULL)
    die("curl_easy_init failed");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  do {
    next = list_page(f, h, tok);
    free(tok);
    tok = next;
  } while (tok);
  curl_easy_cleanup(h);
}

/* ---- --put: StartSnapshot and CompleteSnapshot ------------------------------ */

/* One synchronous POST; returns the HTTP status, the body in *body. */
static long
post(struct fetcher *f, const char *path, const struct sigv4_header *h, size_t nh,
     const char *data, struct buf *body)
{
  CURL *c = curl_easy_init();
  struct curl_slist *hdrs;
  char url[1024];
  long status = 0;
  CURLcode cc;

  if (c == NULL)
    die("curl_easy_init failed");
  hdrs = sign_request(f, "POST", path, NULL, 0, h, nh, data, strlen(data), false,
                      url, sizeof url);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(data));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_buf);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  cc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  if (cc != CURLE_OK)
    die("POST %s: %s", path, curl_easy_strerror(cc));
  return status;
}

static void
start_snapshot(struct fetcher *f)
{
  struct sigv4_header h[] = { { "Content-Type", "application/json" } };
  char json[256];
  struct buf body;
  cJSON *doc, *id;
  long status;

  f->volume_size_gib = (int64_t) (((uint64_t) f->put * BLOCK_SIZE + (1u << 30) - 1) >> 30);
  snprintf(json, sizeof json,
           "{\"VolumeSize\": %" PRId64 ", \"Timeout\": 60, "
           "\"Description\": \"ebsfs benchmark fetcher --put\"}", f->volume_size_gib);
  buf_init(&body, 64 * 1024);
  status = post(f, "/snapshots", h, 1, json, &body);
  if (status != 201)
    die("StartSnapshot: HTTP %ld: %.300s", status, body.data ? body.data : "");
  doc = cJSON_ParseWithLength(body.data, body.len);
  id = doc ? cJSON_GetObjectItemCaseSensitive(doc, "SnapshotId") : NULL;
  if (!cJSON_IsString(id) || strlen(id->valuestring) >= sizeof f->new_snapshot)
    die("StartSnapshot: no SnapshotId in the answer");
  strcpy(f->new_snapshot, id->valuestring);
  cJSON_Delete(doc);
  buf_free(&body);
}

static void
complete_snapshot(struct fetcher *f)
{
  unsigned char agg[32], b64[64];
  char count[32], path[160];
  struct buf body;
  long status;

  /* LINEAR: SHA-256 over the blocks' digests in ascending index. */
  if (EVP_Digest(f->put_digests, f->put * 32, agg, NULL, EVP_sha256(), NULL) != 1)
    die("EVP_Digest failed");
  EVP_EncodeBlock(b64, agg, 32);
  snprintf(count, sizeof count, "%zu", f->put);
  struct sigv4_header h[] = {
    { "x-amz-ChangedBlocksCount", count },
    { "x-amz-Checksum", (char *) b64 },
    { "x-amz-Checksum-Algorithm", "SHA256" },
    { "x-amz-Checksum-Aggregation-Method", "LINEAR" },
  };
  snprintf(path, sizeof path, "/snapshots/completion/%s", f->new_snapshot);
  buf_init(&body, 64 * 1024);
  status = post(f, path, h, 4, "", &body);
  if (status != 202)
    die("CompleteSnapshot: HTTP %ld: %.300s", status, body.data ? body.data : "");
  buf_free(&body);
}

static void
prepare_put(struct fetcher *f)
{
  if (f->put > (size_t) 65536 * 2048)
    die("--put: at most 64 TiB of blocks");
  if ((f->pattern = malloc(BLOCK_SIZE)) == NULL ||
      (f->put_digests = calloc(f->put, 32)) == NULL)
    die("out of memory");
  for (size_t i = 0; i < BLOCK_SIZE; i++)
    f->pattern[i] = (unsigned char) rand();
  for (size_t i = 0; i < f->put; i++)
    add_block(f, (uint32_t) i, "");
  start_snapshot(f);
  f->snapshot = f->new_snapshot;
}

/* ---- fetching ---------------------------------------------------------------- */

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
  struct slot *s = arg;
  size_t len = size * n, vl;
  const char *v;

#define HDR(name, dst) \
  if (len > sizeof name && strncasecmp(p, name ":", sizeof name) == 0) { \
    v = p + sizeof name; \
    while (*v == ' ') v++; \
    vl = (size_t) (p + len - v); \
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--; \
    if (vl >= sizeof dst) vl = sizeof dst - 1; \
    memcpy(dst, v, vl); dst[vl] = '\0'; \
  }
  HDR("x-amz-Checksum", s->checksum)
  HDR("x-amzn-ErrorType", s->error_type)
#undef HDR
  return len;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
  struct slot *s = arg;
  size_t len = size * n;
  long status = 0;

  curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    (void) buf_append(&s->errbody, p, len);   /* truncated past the cap: fine */
    return len;
  }
  if (s->got + len > BLOCK_SIZE)
    return 0;                                 /* longer than a block: fail it */
  if (s->f->verify && EVP_DigestUpdate(s->md, p, len) != 1)
    return 0;
  s->got += len;
  return len;
}

/* --put: block i's data is a shared random pattern stamped with i in every
 * 4 KiB sector, so no two blocks (or sectors) are equal. */
static void
make_block(const unsigned char *pattern, uint64_t index, unsigned char *out)
{
  memcpy(out, pattern, BLOCK_SIZE);
  for (size_t off = 0; off < BLOCK_SIZE; off += 4096)
    memcpy(out + off, &index, sizeof index);
}

static void
start(struct fetcher *f, struct slot *s, size_t block, int attempts)
{
  char path[256];

  curl_slist_free_all(s->hdrs);
  if (f->put) {
    unsigned char *md = f->put_digests[block], b64[64];
    char len[16];
    snprintf(path, sizeof path, "/snapshots/%s/blocks/%" PRIu32, f->new_snapshot,
             f->blocks[block].index);
    make_block(f->pattern, f->blocks[block].index, s->data);
    if (EVP_Digest(s->data, BLOCK_SIZE, md, NULL, EVP_sha256(), NULL) != 1)
      die("EVP_Digest failed");
    EVP_EncodeBlock(b64, md, 32);
    snprintf(len, sizeof len, "%u", BLOCK_SIZE);
    struct sigv4_header h[] = {
      { "x-amz-Data-Length", len },
      { "x-amz-Checksum", (char *) b64 },
      { "x-amz-Checksum-Algorithm", "SHA256" },
      { "Content-Type", "application/octet-stream" },
    };
    s->hdrs = sign_request(f, "PUT", path, NULL, 0, h, 4, s->data, BLOCK_SIZE, true,
                           s->url, sizeof s->url);
    curl_easy_setopt(s->h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->data);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) BLOCK_SIZE);
  }
  else {
    struct sigv4_param q[1] = { { "blockToken", f->blocks[block].token } };
    snprintf(path, sizeof path, "/snapshots/%s/blocks/%" PRIu32, f->snapshot,
             f->blocks[block].index);
    s->hdrs = sign_request(f, "GET", path, q, 1, NULL, 0, NULL, 0, false,
                           s->url, sizeof s->url);
  }
  s->block = block;
  s->attempts = attempts;
  s->got = 0;
  s->checksum[0] = s->error_type[0] = '\0';
  buf_reset(&s->errbody);
  if (!f->put && f->verify && EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
    die("EVP_DigestInit_ex failed");
  curl_easy_setopt(s->h, CURLOPT_URL, s->url);
  curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
  s->busy = true;
  f->requests++;
}

static void
schedule_retry(struct fetcher *f, size_t block, int attempts, bool throttled)
{
  if (attempts >= MAX_ATTEMPTS) {
    fprintf(stderr, "fetcher: block %" PRIu32 " failed %d times\n",
            f->blocks[block].index, attempts);
    exit(1);
  }
  if (f->nretries == f->retries_cap) {
    size_t nc = f->retries_cap ? f->retries_cap * 2 : 64;
    struct retry *nr = realloc(f->retries, nc * sizeof *nr);
    if (nr == NULL)
      die("out of memory");
    f->retries = nr;
    f->retries_cap = nc;
  }
  /* Exponential backoff with full jitter: 50 ms base, throttles 100 ms base. */
  double base = (throttled ? 0.1 : 0.05) * (double) (1u << (attempts < 6 ? attempts : 6));
  double delay = base * (0.5 + 0.5 * (double) rand() / RAND_MAX);
  f->retries[f->nretries++] = (struct retry) { block, attempts, now_mono() + delay };
  f->retried++;
}

static bool
checksum_ok(struct slot *s)
{
  unsigned char md[32], b64[64];
  unsigned int mdlen = 0;

  if (!s->f->verify)
    return true;
  if (EVP_DigestFinal_ex(s->md, md, &mdlen) != 1 || mdlen != 32)
    return false;
  EVP_EncodeBlock(b64, md, 32);
  return strcmp((char *) b64, s->checksum) == 0;
}

static void
finish(struct fetcher *f, struct slot *s, CURLcode cc)
{
  long status = 0;

  s->busy = false;
  curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
  if (f->put ? cc == CURLE_OK && status == 201
      : cc == CURLE_OK && status == 200 && s->got == BLOCK_SIZE && checksum_ok(s)) {
    f->bytes += BLOCK_SIZE;
    f->done++;
    return;
  }
  bool throttled = strstr(s->error_type, "Throttl") != NULL || status == 429;
  if (throttled)
    f->throttles++;
  else
    f->failures++;
  if (cc == CURLE_OK && status >= 400 && status < 500 && !throttled) {
    fprintf(stderr, "fetcher: block %" PRIu32 ": HTTP %ld %s: %.300s\n",
            f->blocks[s->block].index, status, s->error_type,
            s->errbody.data ? s->errbody.data : "");
    exit(1);
  }
  schedule_retry(f, s->block, s->attempts + 1, throttled);
}

/* Pick the next piece of work: a due retry first, then a new block. */
static bool
next_work(struct fetcher *f, double now, size_t *block, int *attempts)
{
  for (size_t i = 0; i < f->nretries; i++)
    if (f->retries[i].due <= now) {
      *block = f->retries[i].block;
      *attempts = f->retries[i].attempts;
      f->retries[i] = f->retries[--f->nretries];
      return true;
    }
  if (f->next < f->nblocks) {
    *block = f->next++;
    *attempts = 0;
    return true;
  }
  return false;
}

static void
fetch_all(struct fetcher *f)
{
  CURLM *m = curl_multi_init();
  struct slot *slots = calloc(f->connections, sizeof *slots);
  double interval = f->rate > 0 ? 1.0 / f->rate : 0;

  if (m == NULL || slots == NULL)
    die("out of memory");
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long) f->connections);
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long) f->connections);
  for (unsigned i = 0; i < f->connections; i++) {
    struct slot *s = &slots[i];
    s->f = f;
    if ((s->h = curl_easy_init()) == NULL || (s->md = EVP_MD_CTX_new()) == NULL)
      die("out of memory");
    if (f->put && (s->data = malloc(BLOCK_SIZE)) == NULL)
      die("out of memory");
    buf_init(&s->errbody, MAX_ERR_BODY);
    curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* stalled for 15 s: fail */
    curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_TIME, 15L);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(s->h, CURLOPT_BUFFERSIZE, 256L * 1024);
  }
  f->next_send = now_mono();

  while (f->done < f->nblocks) {
    double now = now_mono(), wait_s = 0.1;
    int running, left, freed;
    CURLMsg *msg;

    /* Start work on idle slots while pacing allows. */
    for (unsigned i = 0; i < f->connections; i++) {
      size_t block;
      int attempts;
      if (slots[i].busy)
        continue;
      if (interval > 0 && f->next_send > now)
        break;
      if (!next_work(f, now, &block, &attempts))
        break;
      start(f, &slots[i], block, attempts);
      if (curl_multi_add_handle(m, slots[i].h) != CURLM_OK)
        die("curl_multi_add_handle failed");
      if (interval > 0) {
        /* Credit of at most 100 ms (the service allows a second's burst), so a
         * loop iteration slowed by CPU contention does not lose its turns. */
        if (f->next_send < now - 0.1)
          f->next_send = now - 0.1;
        f->next_send += interval;
      }
    }

    if (curl_multi_perform(m, &running) != CURLM_OK)
      die("curl_multi_perform failed");
    freed = 0;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      char *priv = NULL;
      if (msg->msg != CURLMSG_DONE)
        continue;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      struct slot *s = (struct slot *) priv;
      CURLcode cc = msg->data.result;
      curl_multi_remove_handle(m, s->h);
      finish(f, s, cc);
      freed++;
    }

    /* Sleep until the socket is ready, the pacer or the next retry allow work.
     * A slot freed just now is refilled at once: nothing else would wake the
     * poll for it (with one connection, every request waited the full 100 ms). */
    now = now_mono();
    if (freed)
      wait_s = 0;
    if (interval > 0 && f->next_send > now && f->next_send - now < wait_s)
      wait_s = f->next_send - now;
    for (size_t i = 0; i < f->nretries; i++)
      if (f->retries[i].due - now < wait_s)
        wait_s = f->retries[i].due - now;
    if (wait_s < 0)
      wait_s = 0;
    if (curl_multi_poll(m, NULL, 0, (int) (wait_s * 1000) + (wait_s > 0), NULL) != CURLM_OK)
      die("curl_multi_poll failed");
  }

  for (unsigned i = 0; i < f->connections; i++) {
    curl_slist_free_all(slots[i].hdrs);
    curl_easy_cleanup(slots[i].h);
    EVP_MD_CTX_free(slots[i].md);
    free(slots[i].data);
    buf_free(&slots[i].errbody);
  }
  curl_multi_cleanup(m);
  free(slots);
}

static void
usage(FILE *fp)
{
  fprintf(fp,
          "usage: fetcher --snapshot ID [--endpoint URL] [--region R] [--connections N]\n"
          "               [--rate REQ_PER_S] [--max-blocks N] [--no-verify] [--list-only]\n"
          "       fetcher --put N [--endpoint URL] [--region R] [--connections N] [--rate R]\n"
          "Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY [, AWS_SESSION_TOKEN].\n"
          "Endpoint: --endpoint, else AWS_ENDPOINT_URL_EBS, else https://ebs.REGION.amazonaws.com.\n");
}

int
main(int argc, char **argv)
{
  static const struct option opts[] = {
    { "snapshot", required_argument, NULL, 's' },
    { "endpoint", required_argument, NULL, 'e' },
    { "region", required_argument, NULL, 'r' },
    { "connections", required_argument, NULL, 'c' },
    { "rate", required_argument, NULL, 'R' },
    { "max-blocks", required_argument, NULL, 'm' },
    { "no-verify", no_argument, NULL, 'V' },
    { "list-only", no_argument, NULL, 'L' },
    { "put", required_argument, NULL, 'P' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct fetcher f = { .connections = 64, .verify = true };
  const char *endpoint = getenv("AWS_ENDPOINT_URL_EBS");
  bool list_only = false;
  char default_endpoint[256];
  int c;

  f.region = getenv("AWS_REGION");
  if (f.region == NULL || !*f.region)
    f.region = getenv("AWS_DEFAULT_REGION");
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': f.snapshot = optarg; break;
    case 'e': endpoint = optarg; break;
    case 'r': f.region = optarg; break;
    case 'c': f.connections = (unsigned) strtoul(optarg, NULL, 10); break;
    case 'R': f.rate = strtod(optarg, NULL); break;
    case 'm': f.max_blocks = strtoull(optarg, NULL, 10); break;
    case 'V': f.verify = false; break;
    case 'L': list_only = true; break;
    case 'P': f.put = strtoull(optarg, NULL, 10); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if ((f.snapshot == NULL) == (f.put == 0) || optind != argc || f.connections == 0 || f.connections > 4096 ||
      f.rate < 0) {
    usage(stderr);
    return 2;
  }
  if (f.snapshot && (strspn(f.snapshot, "snap-0123456789abcdef") != strlen(f.snapshot) ||
                     strlen(f.snapshot) > 64))
    die("bad snapshot id '%s'", f.snapshot);
  if (f.region == NULL || !*f.region)
    f.region = "us-east-1";
  if (endpoint == NULL || !*endpoint) {
    snprintf(default_endpoint, sizeof default_endpoint, "https://ebs.%s.amazonaws.com", f.region);
    endpoint = default_endpoint;
  }
  parse_endpoint(&f, endpoint);
  f.creds.access_key_id = getenv("AWS_ACCESS_KEY_ID");
  f.creds.secret_access_key = getenv("AWS_SECRET_ACCESS_KEY");
  f.creds.session_token = getenv("AWS_SESSION_TOKEN");
  if (f.creds.session_token && !*f.creds.session_token)
    f.creds.session_token = NULL;
  f.creds.source = "environment";
  if (f.creds.access_key_id == NULL || f.creds.secret_access_key == NULL)
    die("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    die("curl_global_init failed");
  srand((unsigned) time(NULL));

  double u0, s0, u1, s1, u2, s2;
  double t0 = now_mono();
  double cpu0 = cpu_seconds(&u0, &s0);
  if (f.put)
    prepare_put(&f);
  else
    list_all(&f);
  double t1 = now_mono();
  double cpu1 = cpu_seconds(&u1, &s1);
  if (!list_only)
    fetch_all(&f);
  if (f.put)
    complete_snapshot(&f);
  double t2 = now_mono();
  double cpu2 = cpu_seconds(&u2, &s2);

  double fetch_s = t2 - t1, mib = (double) f.bytes / (1024.0 * 1024.0);
  printf("{\"snapshot\": \"%s\", \"volume_size_gib\": %" PRId64 ", \"blocks\": %zu, "
         "\"bytes\": %" PRIu64 ", \"connections\": %u, \"rate\": %g, \"verify\": %s, "
         "\"list_pages\": %u, \"list_seconds\": %.6f, \"fetch_seconds\": %.6f, "
         "\"seconds\": %.6f, \"mib_s\": %.3f, \"req_s\": %.3f, "
         "\"requests\": %" PRIu64 ", \"retries\": %" PRIu64 ", \"throttles\": %" PRIu64 ", "
         "\"failures\": %" PRIu64 ", \"cpu_user\": %.3f, \"cpu_sys\": %.3f, "
         "\"cpu_seconds\": %.3f, \"fetch_cpu_seconds\": %.3f, \"max_rss_kib\": %ld}\n",
         f.snapshot, f.volume_size_gib, f.nblocks, f.bytes, f.connections, f.rate,
         f.verify ? "true" : "false", f.pages, t1 - t0, fetch_s, t2 - t0,
         fetch_s > 0 ? mib / fetch_s : 0.0,
         fetch_s > 0 ? (double) f.done / fetch_s : 0.0,
         f.requests, f.retried, f.throttles, f.failures, u2 - u0, s2 - s0,
         cpu2 - cpu0, cpu2 - cpu1, max_rss_kib());

  for (size_t i = 0; i < f.nblocks; i++)
    free(f.blocks[i].token);
  free(f.blocks);
  free(f.retries);
  free(f.pattern);
  free(f.put_digests);
  free((char *) f.endpoint);
  curl_global_cleanup();
  return 0;
}
