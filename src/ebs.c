/* ebs.c - the six EBS direct API operations on top of the transport.
 *
 * Each call becomes one struct ebs_op: an http_job (http.h) plus what this
 * operation needs to build, sign and judge each attempt.  The request is
 * described once (method, path, query, headers, body); prepare() signs it
 * again for every attempt with credentials fetched right then, judge()
 * turns the answer into success or a typed ebs_error and a retry class
 * (retry.h decides what happens next), done() hands the result back.
 * Synchronous calls are the asynchronous ones plus a wait.
 *
 * Paths, query names and headers are the service model's (see
 * EBS-DIRECT-API.md); the URL's query is sigv4_canonical_query()'s output,
 * so the query sent is byte for byte the query signed.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "buf.h"
#include "credentials.h"
#include "ebs.h"
#include "ebs_error.h"
#include "ebs_format.h"
#include "ebs_json.h"
#include "http.h"
#include "log.h"
#include "sigv4.h"

#define EBS_MAX_QUERY 4
#define EBS_MAX_HEADERS 6
#define EBS_TOKEN_MAX 1024       /* block and page tokens: API max 256 */

struct ebs_client {
  char *endpoint;                /* "https://host[:port]", no trailing slash */
  char *host;                    /* what is signed: host, :port only when not default */
  char *region;
  struct credentials_provider *creds;
  struct http *http;
};

enum ebs_op_kind {
  OP_LIST_BLOCKS, OP_LIST_CHANGED, OP_GET_BLOCK, OP_START, OP_PUT_BLOCK, OP_COMPLETE,
};

static const char *const op_names[] = {
  "ListSnapshotBlocks", "ListChangedBlocks", "GetSnapshotBlock",
  "StartSnapshot", "PutSnapshotBlock", "CompleteSnapshot",
};

struct waiter {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
  int rc;
};

struct ebs_op {
  struct http_job job;           /* first: the transport's view */
  struct ebs_client *c;
  enum ebs_op_kind kind;
  long ok_status;

  /* The request, described once and signed per attempt. */
  const char *method;
  char path[160];
  char snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];  /* also the rate key */
  struct sigv4_param query[EBS_MAX_QUERY];
  size_t nquery;
  char qval[EBS_MAX_QUERY][32];  /* storage for numeric query values */
  char *token;                   /* copied page/block token */
  char *token2;
  struct sigv4_header hdr[EBS_MAX_HEADERS];
  size_t nhdr;
  char hval[EBS_MAX_HEADERS][64];
  char *body_owned;              /* StartSnapshot's JSON */
  bool unsigned_payload;

  /* Outputs. */
  struct ebs_error err;
  EVP_MD_CTX *md;                /* GetSnapshotBlock: SHA-256 of the body as it arrives */
  struct ebs_block_page *block_page;
  struct ebs_changed_page *changed_page;
  struct ebs_snapshot_info *info;
  char *status_out;

  /* Completion: a callback, or a waiting thread. */
  ebs_done_fn done;
  void *done_arg;
  struct waiter *w;
};

/* ---- building requests ---------------------------------------------------- */

static void
add_query(struct ebs_op *op, const char *name, const char *value)
{
  op->query[op->nquery].name = name;
  op->query[op->nquery].value = value;
  op->nquery++;
}

static void
add_query_num(struct ebs_op *op, const char *name, int64_t v)
{
  snprintf(op->qval[op->nquery], sizeof op->qval[0], "%" PRId64, v);
  add_query(op, name, op->qval[op->nquery]);
}

static void
add_header(struct ebs_op *op, const char *name, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static void
add_header(struct ebs_op *op, const char *name, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(op->hval[op->nhdr], sizeof op->hval[0], fmt, ap);
  va_end(ap);
  op->hdr[op->nhdr].name = name;
  op->hdr[op->nhdr].value = op->hval[op->nhdr];
  op->nhdr++;
}

static struct curl_slist *
slist_add(struct curl_slist *l, bool *ok, const char *name, const char *value)
{
  char line[2200];
  struct curl_slist *n;

  if (!*ok)
    return l;
  if ((size_t) snprintf(line, sizeof line, "%s: %s", name, value) >= sizeof line) {
    *ok = false;
    return l;
  }
  n = curl_slist_append(l, line);
  if (n == NULL)
    *ok = false;
  return n ? n : l;
}

/* ---- the transport's callbacks ---------------------------------------------- */

static int
op_prepare(struct http_job *job)
{
  struct ebs_op *op = (struct ebs_op *) job;
  struct ebs_client *c = op->c;
  struct aws_credentials *cr = NULL;
  struct sigv4_signed sig;
  struct curl_slist *l = NULL;
  char why[256];
  bool ok = true;
  int r;

  curl_slist_free_all(job->headers);
  job->headers = NULL;

  if (job->url == NULL) {        /* the URL does not change between attempts */
    char *q = sigv4_canonical_query(op->query, op->nquery);
    struct buf u;
    if (q == NULL)
      goto nomem;
    buf_init(&u, 8192);
    r = buf_printf(&u, "%s%s%s%s", c->endpoint, op->path, *q ? "?" : "", q);
    free(q);
    if (r < 0) {
      buf_free(&u);
      goto nomem;
    }
    job->url = buf_steal(&u);
  }

  /* Fresh credentials for every attempt: temporary ones may have been
   * refreshed since the last one. */
  why[0] = '\0';
  r = credentials_get(c->creds, &cr, why, sizeof why);
  if (r < 0) {
    ebs_error_set(&op->err, -r, "no usable AWS credentials: %s", why);
    return r;
  }
  {
    struct sigv4_request req = {
      .method = op->method, .host = c->host, .path = op->path,
      .query = op->query, .nquery = op->nquery,
      .headers = op->hdr, .nheaders = op->nhdr,
      .body = job->upload, .body_len = job->upload_len,
      .unsigned_payload = op->unsigned_payload,
    };
    r = sigv4_sign(&req, cr, c->region, "ebs", time(NULL), &sig);
  }
  if (r < 0) {
    credentials_release(cr);
    ebs_error_set(&op->err, -r, "cannot sign the %s request", op_names[op->kind]);
    return r;
  }
  for (size_t i = 0; i < op->nhdr; i++)
    l = slist_add(l, &ok, op->hdr[i].name, op->hdr[i].value);
  l = slist_add(l, &ok, "X-Amz-Date", sig.amz_date);
  if (sig.content_sha256[0])
    l = slist_add(l, &ok, "X-Amz-Content-SHA256", sig.content_sha256);
  if (cr->session_token)
    l = slist_add(l, &ok, "X-Amz-Security-Token", cr->session_token);
  l = slist_add(l, &ok, "Authorization", sig.authorization);
  credentials_release(cr);
  /* Headers curl would add on its own: not signed, so not sent.  "Expect:"
   * also saves a round trip per PutSnapshotBlock. */
  if (ok)
    l = curl_slist_append(l, "Expect:");
  if (l && op->body_owned == NULL && strcmp(op->method, "GET") != 0)
    l = curl_slist_append(l, "Content-Type:");
  if (!ok || l == NULL) {
    curl_slist_free_all(l);
    goto nomem;
  }
  job->headers = l;

  if (op->md && EVP_DigestInit_ex(op->md, EVP_sha256(), NULL) != 1) {
    ebs_error_set(&op->err, EIO, "SHA-256 initialisation failed");
    return -EIO;
  }
  return 0;

 nomem:
  ebs_error_set(&op->err, ENOMEM, "out of memory building the %s request", op_names[op->kind]);
  return -ENOMEM;
}

static int
curl_errno(int code)
{
  switch ((CURLcode) code) {
  case CURLE_OPERATION_TIMEDOUT: return ETIMEDOUT;
  case CURLE_COULDNT_CONNECT: return ECONNREFUSED;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return EHOSTUNREACH;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE: return ECONNRESET;
  case CURLE_OUT_OF_MEMORY: return ENOMEM;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM: return EPERM;
  default: return EIO;
  }
}

/* A 2xx answer: check and parse the body.  0, or -errno with err filled. */
static int
judge_success(struct ebs_op *op, enum retry_class *cls)
{
  struct http_job *job = &op->job;
  char why[200];
  int r = 0;

  why[0] = '\0';
  switch (op->kind) {
  case OP_GET_BLOCK: {
    unsigned char digest[32];
    unsigned int dlen = 32;
    char b64[EBS_B64_SHA256_LEN + 1];
    char *end;
    unsigned long long declared = strtoull(job->hdr_data_length, &end, 10);

    /* A block that does not match its own headers is never handed out: it
     * is retried like a 5xx (a corrupted or truncated transfer). */
    if (job->hdr_data_length[0] == '\0' || *end != '\0' || declared != job->direct_len ||
        job->direct_len != EBS_BLOCK_SIZE) {
      snprintf(why, sizeof why, "GetSnapshotBlock body is %zu bytes, x-amz-Data-Length says '%s'",
               job->direct_len, job->hdr_data_length);
      *cls = RETRY_ERROR;
      r = -EIO;
      break;
    }
    if (EVP_DigestFinal_ex(op->md, digest, &dlen) != 1) {
      snprintf(why, sizeof why, "SHA-256 failed");
      r = -EIO;
      break;
    }
    ebs_b64_digest(digest, b64);
    if (strcmp(b64, job->hdr_checksum) != 0) {
      snprintf(why, sizeof why, "GetSnapshotBlock body does not match its x-amz-Checksum");
      *cls = RETRY_ERROR;
      r = -EIO;
    }
    break;
  }
  case OP_LIST_BLOCKS:
    r = ebs_json_block_page(job->body.data, job->body.len, op->block_page, why, sizeof why);
    break;
  case OP_LIST_CHANGED:
    r = ebs_json_changed_page(job->body.data, job->body.len, op->changed_page, why, sizeof why);
    break;
  case OP_START:
    r = ebs_json_snapshot_info(job->body.data, job->body.len, op->info, why, sizeof why);
    break;
  case OP_COMPLETE:
    r = ebs_json_status(job->body.data, job->body.len, op->status_out, 16, why, sizeof why);
    break;
  case OP_PUT_BLOCK:
    break;
  }
  if (r < 0) {
    if (r == -EPROTO)
      *cls = RETRY_ERROR;        /* a mangled body may be a one-off */
    ebs_error_set(&op->err, -r, "%s: %s", op_names[op->kind], why);
    op->err.http_status = (int) job->status;
    snprintf(op->err.request_id, sizeof op->err.request_id, "%s", job->hdr_request_id);
  }
  return r;
}

static int
op_judge(struct http_job *job, enum retry_class *cls)
{
  struct ebs_op *op = (struct ebs_op *) job;

  ebs_error_clear(&op->err);
  op->err.attempts = (int) job->attempts;
  *cls = RETRY_NEVER;

  if (job->curl_code != CURLE_OK) {
    int e = curl_errno(job->curl_code);
    *cls = retry_classify_curl(job->curl_code);
    if (job->body_too_long)
      ebs_error_set(&op->err, EIO, "%s: the response body is larger than expected",
                    op_names[op->kind]);
    else
      ebs_error_set(&op->err, e, "%s: %s", op_names[op->kind],
                    job->curl_error[0] ? job->curl_error
                                       : curl_easy_strerror((CURLcode) job->curl_code));
    op->err.attempts = (int) job->attempts;
    return -op->err.errnum;
  }
  if (job->status == op->ok_status) {
    int r = judge_success(op, cls);
    op->err.attempts = (int) job->attempts;
    return r;
  }
  ebs_error_from_response(&op->err, (int) job->status, job->hdr_error_type,
                          job->body.data, job->body.len, job->hdr_request_id);
  op->err.attempts = (int) job->attempts;
  *cls = retry_classify_http((int) job->status, op->err.code);
  if (*cls != RETRY_NEVER || log_debug_on(LOG_SUB_HTTP)) {
    char line[900];
    log_debug(LOG_SUB_HTTP, "%s %s: %s", op_names[op->kind], op->snapshot_id,
              ebs_error_string(&op->err, line, sizeof line));
  }
  return -op->err.errnum;
}

static void
op_free(struct ebs_op *op)
{
  curl_slist_free_all(op->job.headers);
  free(op->job.url);
  free(op->token);
  free(op->token2);
  free(op->body_owned);
  EVP_MD_CTX_free(op->md);
  free(op);
}

static void
op_done(struct http_job *job, int rc)
{
  struct ebs_op *op = (struct ebs_op *) job;

  if (rc == 0)
    ebs_error_clear(&op->err);
  else {
    if (op->err.message[0] == '\0')
      ebs_error_set(&op->err, -rc, "%s: %s", op_names[op->kind],
                    rc == -ECANCELED ? "cancelled: the EBS client is shutting down"
                                     : "failed");
    op->err.attempts = (int) job->attempts;
    if (op->err.errnum <= 0)
      op->err.errnum = -rc;
  }
  if (op->w) {
    /* The waiting thread owns op from here; nothing may touch it after the
     * unlock. */
    struct waiter *w = op->w;
    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return;
  }
  op->done(op->done_arg, rc, &op->err);
  op_free(op);
}

static const struct http_job_ops op_ops = { op_prepare, op_judge, op_done };

/* ---- running ops ------------------------------------------------------------- */

static struct ebs_op *
op_new(struct ebs_client *c, enum ebs_op_kind kind, const char *method, long ok_status,
       size_t body_max)
{
  struct ebs_op *op = calloc(1, sizeof *op);
  if (op == NULL)
    return NULL;
  op->c = c;
  op->kind = kind;
  op->method = method;
  op->ok_status = ok_status;
  op->job.ops = &op_ops;
  op->job.method = method;
  op->job.body_max = body_max;
  return op;
}

static int
op_submit_async(struct ebs_op *op, ebs_done_fn done, void *arg)
{
  int r;
  op->done = done;
  op->done_arg = arg;
  if (op->snapshot_id[0])
    op->job.owner = op->snapshot_id;
  r = http_submit(op->c->http, &op->job);
  if (r < 0)
    op_free(op);
  return r;
}

/* Run op and wait; copies the error out and frees op. */
static int
op_run_sync(struct ebs_op *op, struct ebs_error *err)
{
  struct waiter w;
  int r;

  pthread_mutex_init(&w.lock, NULL);
  pthread_cond_init(&w.cond, NULL);
  w.done = false;
  w.rc = 0;
  op->w = &w;
  if (op->snapshot_id[0])
    op->job.owner = op->snapshot_id;
  r = http_submit(op->c->http, &op->job);
  if (r < 0) {
    ebs_error_clear(err);
    ebs_error_set(err, -r, "%s: the EBS client is shutting down", op_names[op->kind]);
  }
  else {
    pthread_mutex_lock(&w.lock);
    while (!w.done)
      pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    r = w.rc;
    if (err)
      *err = op->err;
  }
  pthread_mutex_destroy(&w.lock);
  pthread_cond_destroy(&w.cond);
  op_free(op);
  return r;
}

static int
bad_arg(struct ebs_error *err, const char *what)
{
  ebs_error_clear(err);
  ebs_error_set(err, EINVAL, "%s", what);
  return -EINVAL;
}

static int
no_memory(struct ebs_error *err)
{
  ebs_error_clear(err);
  ebs_error_set(err, ENOMEM, "out of memory");
  return -ENOMEM;
}

static bool
valid_token(const char *t)
{
  return t && *t && strlen(t) <= EBS_TOKEN_MAX;
}

/* ---- the operations ---------------------------------------------------------- */

int
ebs_list_snapshot_blocks(struct ebs_client *c, const char *snapshot_id,
                         const char *page_token, int64_t starting_block,
                         int max_results, struct ebs_block_page *out,
                         struct ebs_error *err)
{
  struct ebs_op *op;

  memset(out, 0, sizeof *out);
  if (!ebs_valid_snapshot_id(snapshot_id))
    return bad_arg(err, "ListSnapshotBlocks: not a snapshot id");
  if (page_token && !valid_token(page_token))
    return bad_arg(err, "ListSnapshotBlocks: invalid page token");
  op = op_new(c, OP_LIST_BLOCKS, "GET", 200, EBS_JSON_MAX_PAGE_BODY);
  if (op == NULL || (page_token && (op->token = strdup(page_token)) == NULL)) {
    free(op);
    return no_memory(err);
  }
  snprintf(op->snapshot_id, sizeof op->snapshot_id, "%s", snapshot_id);
  snprintf(op->path, sizeof op->path, "/snapshots/%s/blocks", snapshot_id);
  if (max_results > 0)
    add_query_num(op, "maxResults", max_results);
  if (op->token)
    add_query(op, "pageToken", op->token);
  if (starting_block >= 0)
    add_query_num(op, "startingBlockIndex", starting_block);
  op->block_page = out;
  return op_run_sync(op, err);
}

int
ebs_list_changed_blocks(struct ebs_client *c, const char *first_snapshot_id,
                        const char *second_snapshot_id, const char *page_token,
                        int64_t starting_block, int max_results,
                        struct ebs_changed_page *out, struct ebs_error *err)
{
  struct ebs_op *op;

  memset(out, 0, sizeof *out);
  if (!ebs_valid_snapshot_id(second_snapshot_id) ||
      (first_snapshot_id && !ebs_valid_snapshot_id(first_snapshot_id)))
    return bad_arg(err, "ListChangedBlocks: not a snapshot id");
  if (page_token && !valid_token(page_token))
    return bad_arg(err, "ListChangedBlocks: invalid page token");
  op = op_new(c, OP_LIST_CHANGED, "GET", 200, EBS_JSON_MAX_PAGE_BODY);
  if (op == NULL || (page_token && (op->token = strdup(page_token)) == NULL) ||
      (first_snapshot_id && (op->token2 = strdup(first_snapshot_id)) == NULL)) {
    if (op)
      op_free(op);
    return no_memory(err);
  }
  snprintf(op->snapshot_id, sizeof op->snapshot_id, "%s", second_snapshot_id);
  snprintf(op->path, sizeof op->path, "/snapshots/%s/changedblocks", second_snapshot_id);
  if (op->token2)
    add_query(op, "firstSnapshotId", op->token2);
  if (max_results > 0)
    add_query_num(op, "maxResults", max_results);
  if (op->token)
    add_query(op, "pageToken", op->token);
  if (starting_block >= 0)
    add_query_num(op, "startingBlockIndex", starting_block);
  op->changed_page = out;
  return op_run_sync(op, err);
}

static struct ebs_op *
get_block_op(struct ebs_client *c, const char *snapshot_id, uint32_t index,
             const char *block_token, void *buf, struct ebs_error *err, int *r)
{
  struct ebs_op *op;

  if (!ebs_valid_snapshot_id(snapshot_id)) {
    *r = bad_arg(err, "GetSnapshotBlock: not a snapshot id");
    return NULL;
  }
  if (!valid_token(block_token)) {
    *r = bad_arg(err, "GetSnapshotBlock: invalid block token");
    return NULL;
  }
  op = op_new(c, OP_GET_BLOCK, "GET", 200, EBS_JSON_MAX_SMALL_BODY);
  if (op == NULL || (op->token = strdup(block_token)) == NULL ||
      (op->md = EVP_MD_CTX_new()) == NULL) {
    if (op)
      op_free(op);
    *r = no_memory(err);
    return NULL;
  }
  snprintf(op->snapshot_id, sizeof op->snapshot_id, "%s", snapshot_id);
  snprintf(op->path, sizeof op->path, "/snapshots/%s/blocks/%" PRIu32, snapshot_id, index);
  add_query(op, "blockToken", op->token);
  op->job.rate_key = op->snapshot_id;
  op->job.tag = index;
  op->job.direct = buf;
  op->job.direct_max = EBS_BLOCK_SIZE;
  op->job.direct_hash = op->md;
  return op;
}

int
ebs_get_snapshot_block(struct ebs_client *c, const char *snapshot_id,
                       uint32_t index, const char *block_token, void *buf,
                       struct ebs_error *err)
{
  int r = 0;
  struct ebs_op *op = get_block_op(c, snapshot_id, index, block_token, buf, err, &r);
  if (op == NULL)
    return r;
  return op_run_sync(op, err);
}

int
ebs_get_snapshot_block_async(struct ebs_client *c, const char *snapshot_id,
                             uint32_t index, const char *block_token, void *buf,
                             bool background, ebs_done_fn done, void *arg)
{
  struct ebs_error err;
  int r = 0;
  struct ebs_op *op = get_block_op(c, snapshot_id, index, block_token, buf, &err, &r);
  if (op == NULL)
    return r;
  op->job.background = background;
  return op_submit_async(op, done, arg);
}

void
ebs_promote_block(struct ebs_client *c, const char *snapshot_id, uint32_t index)
{
  http_promote(c->http, snapshot_id, index);
}

void
ebs_cancel_snapshot(struct ebs_client *c, const char *snapshot_id)
{
  http_cancel_owner(c->http, snapshot_id);
}

/* StartSnapshot's JSON body; NULL on ENOMEM. */
static char *
start_body(const struct ebs_start_params *p, const char *client_token)
{
  cJSON *o = cJSON_CreateObject();
  char *s = NULL;
  bool ok = o != NULL;

  ok = ok && cJSON_AddNumberToObject(o, "VolumeSize", (double) p->volume_size_gib);
  if (p->parent_snapshot_id)
    ok = ok && cJSON_AddStringToObject(o, "ParentSnapshotId", p->parent_snapshot_id);
  if (p->description)
    ok = ok && cJSON_AddStringToObject(o, "Description", p->description);
  ok = ok && cJSON_AddStringToObject(o, "ClientToken", client_token);
  if (p->timeout_minutes > 0)
    ok = ok && cJSON_AddNumberToObject(o, "Timeout", p->timeout_minutes);
  if (p->encrypted)
    ok = ok && cJSON_AddTrueToObject(o, "Encrypted");
  if (p->kms_key_arn)
    ok = ok && cJSON_AddStringToObject(o, "KmsKeyArn", p->kms_key_arn);
  if (ok && p->ntags > 0) {
    cJSON *tags = cJSON_AddArrayToObject(o, "Tags");
    ok = tags != NULL;
    for (size_t i = 0; ok && i < p->ntags; i++) {
      cJSON *t = cJSON_CreateObject();
      ok = t && cJSON_AddStringToObject(t, "Key", p->tags[i].key) &&
           cJSON_AddStringToObject(t, "Value", p->tags[i].value);
      if (t && !cJSON_AddItemToArray(tags, t)) {
        cJSON_Delete(t);
        ok = false;
      }
    }
  }
  if (ok)
    s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

int
ebs_start_snapshot(struct ebs_client *c, const struct ebs_start_params *p,
                   struct ebs_snapshot_info *out, struct ebs_error *err)
{
  struct ebs_op *op;
  char token[37];

  memset(out, 0, sizeof *out);
  if (p->volume_size_gib < 1)
    return bad_arg(err, "StartSnapshot: the volume size must be at least 1 GiB");
  if (p->parent_snapshot_id && !ebs_valid_snapshot_id(p->parent_snapshot_id))
    return bad_arg(err, "StartSnapshot: the parent is not a snapshot id");
  /* Without a ClientToken a retried StartSnapshot could create a second
   * snapshot; make one up, as botocore does. */
  if (p->client_token == NULL && ebs_random_token(token) < 0)
    return bad_arg(err, "StartSnapshot: no random numbers for a client token");
  op = op_new(c, OP_START, "POST", 201, EBS_JSON_MAX_SMALL_BODY);
  if (op == NULL || (op->body_owned = start_body(p, p->client_token ? p->client_token : token)) == NULL) {
    if (op)
      op_free(op);
    return no_memory(err);
  }
  snprintf(op->path, sizeof op->path, "/snapshots");
  add_header(op, "Content-Type", "application/json");
  op->job.upload = op->body_owned;
  op->job.upload_len = strlen(op->body_owned);
  op->info = out;
  return op_run_sync(op, err);
}

static struct ebs_op *
put_block_op(struct ebs_client *c, const char *snapshot_id, uint32_t index,
             const void *data, const unsigned char sha256[32], int progress,
             struct ebs_error *err, int *r)
{
  struct ebs_op *op;
  unsigned char digest[32];
  char b64[EBS_B64_SHA256_LEN + 1];

  if (!ebs_valid_snapshot_id(snapshot_id)) {
    *r = bad_arg(err, "PutSnapshotBlock: not a snapshot id");
    return NULL;
  }
  if (progress > 100) {
    *r = bad_arg(err, "PutSnapshotBlock: progress over 100");
    return NULL;
  }
  if (sha256 == NULL) {
    ebs_sha256(data, EBS_BLOCK_SIZE, digest);
    sha256 = digest;
  }
  ebs_b64_digest(sha256, b64);
  op = op_new(c, OP_PUT_BLOCK, "PUT", 201, EBS_JSON_MAX_SMALL_BODY);
  if (op == NULL) {
    *r = no_memory(err);
    return NULL;
  }
  snprintf(op->snapshot_id, sizeof op->snapshot_id, "%s", snapshot_id);
  snprintf(op->path, sizeof op->path, "/snapshots/%s/blocks/%" PRIu32, snapshot_id, index);
  add_header(op, "x-amz-Data-Length", "%u", EBS_BLOCK_SIZE);
  add_header(op, "x-amz-Checksum", "%s", b64);
  add_header(op, "x-amz-Checksum-Algorithm", "SHA256");
  if (progress >= 0)
    add_header(op, "x-amz-Progress", "%d", progress);
  op->unsigned_payload = true;  /* as the service model says: the body is not hashed */
  op->job.upload = data;
  op->job.upload_len = EBS_BLOCK_SIZE;
  op->job.rate_key = op->snapshot_id;
  return op;
}

int
ebs_put_snapshot_block(struct ebs_client *c, const char *snapshot_id,
                       uint32_t index, const void *data,
                       const unsigned char sha256[32], int progress,
                       struct ebs_error *err)
{
  int r = 0;
  struct ebs_op *op = put_block_op(c, snapshot_id, index, data, sha256, progress, err, &r);
  if (op == NULL)
    return r;
  return op_run_sync(op, err);
}

int
ebs_put_snapshot_block_async(struct ebs_client *c, const char *snapshot_id,
                             uint32_t index, const void *data,
                             const unsigned char sha256[32], int progress,
                             ebs_done_fn done, void *arg)
{
  struct ebs_error err;
  int r = 0;
  struct ebs_op *op = put_block_op(c, snapshot_id, index, data, sha256, progress, &err, &r);
  if (op == NULL)
    return r;
  return op_submit_async(op, done, arg);
}

int
ebs_complete_snapshot(struct ebs_client *c, const char *snapshot_id,
                      uint32_t changed_blocks_count,
                      const unsigned char linear_sha256[32],
                      char *status_out, struct ebs_error *err)
{
  struct ebs_op *op;
  char dummy[16];

  if (!ebs_valid_snapshot_id(snapshot_id))
    return bad_arg(err, "CompleteSnapshot: not a snapshot id");
  op = op_new(c, OP_COMPLETE, "POST", 202, EBS_JSON_MAX_SMALL_BODY);
  if (op == NULL)
    return no_memory(err);
  snprintf(op->snapshot_id, sizeof op->snapshot_id, "%s", snapshot_id);
  snprintf(op->path, sizeof op->path, "/snapshots/completion/%s", snapshot_id);
  add_header(op, "x-amz-ChangedBlocksCount", "%" PRIu32, changed_blocks_count);
  if (linear_sha256) {
    char b64[EBS_B64_SHA256_LEN + 1];
    ebs_b64_digest(linear_sha256, b64);
    add_header(op, "x-amz-Checksum", "%s", b64);
    add_header(op, "x-amz-Checksum-Algorithm", "SHA256");
    add_header(op, "x-amz-Checksum-Aggregation-Method", "LINEAR");
  }
  op->status_out = status_out ? status_out : dummy;
  return op_run_sync(op, err);
}

/* ---- the client -------------------------------------------------------------- */

struct ebs_client *
ebs_client_new(const struct ebs_client_config *cfg, struct ebs_error *err)
{
  struct ebs_client *c;
  struct http_config hc;
  const char *hoststart, *slash, *ep = cfg->endpoint;
  size_t hostlen, eplen;
  bool https;

  ebs_error_clear(err);
  if (ep == NULL || cfg->region == NULL || *cfg->region == '\0' || cfg->credentials == NULL) {
    ebs_error_set(err, EINVAL, "the EBS client needs an endpoint, a region and credentials");
    return NULL;
  }
  https = strncmp(ep, "https://", 8) == 0;
  if (!https && strncmp(ep, "http://", 7) != 0) {
    ebs_error_set(err, EINVAL, "endpoint '%.200s' is not an http:// or https:// URL", ep);
    return NULL;
  }
  hoststart = ep + (https ? 8 : 7);
  slash = strchr(hoststart, '/');
  hostlen = slash ? (size_t) (slash - hoststart) : strlen(hoststart);
  if (hostlen == 0 || memchr(hoststart, '@', hostlen) || (slash && strspn(slash, "/") != strlen(slash))) {
    ebs_error_set(err, EINVAL, "endpoint '%.200s' must be scheme://host[:port] with no path", ep);
    return NULL;
  }
  eplen = (size_t) (hoststart - ep) + hostlen;

  c = calloc(1, sizeof *c);
  if (c == NULL)
    goto nomem;
  c->endpoint = strndup(ep, eplen);
  /* SigV4 signs the Host header as sent: curl leaves out a default port. */
  if (hostlen > 4 && https && strncmp(hoststart + hostlen - 4, ":443", 4) == 0)
    hostlen -= 4;
  else if (hostlen > 3 && !https && strncmp(hoststart + hostlen - 3, ":80", 3) == 0)
    hostlen -= 3;
  c->host = strndup(hoststart, hostlen);
  c->region = strdup(cfg->region);
  c->creds = cfg->credentials;
  if (c->endpoint == NULL || c->host == NULL || c->region == NULL)
    goto nomem;

  memset(&hc, 0, sizeof hc);
  hc.max_in_flight = cfg->max_in_flight;
  hc.connect_timeout_ms = cfg->connect_timeout_ms;
  hc.stall_timeout_ms = cfg->stall_timeout_ms;
  hc.max_attempts = cfg->max_attempts;
  hc.retry_budget_ms = cfg->retry_budget_ms;
  hc.rate_limit = cfg->rate_limit;
  hc.ca_bundle = cfg->ca_bundle;
  c->http = http_new(&hc);
  if (c->http == NULL) {
    ebs_error_set(err, errno, "cannot start the HTTP transport: %s", strerror(errno));
    ebs_client_free(c);
    return NULL;
  }
  return c;

 nomem:
  ebs_client_free(c);
  ebs_error_set(err, ENOMEM, "out of memory");
  return NULL;
}

void
ebs_client_free(struct ebs_client *c)
{
  if (c == NULL)
    return;
  http_free(c->http);
  free(c->endpoint);
  free(c->host);
  free(c->region);
  free(c);
}

void
ebs_client_get_stats(struct ebs_client *c, struct ebs_client_stats *out)
{
  struct http_stats s;
  http_get_stats(c->http, &s);
  out->requests = s.requests;
  out->retries = s.retries;
  out->throttles = s.throttles;
  out->bytes_in = s.bytes_in;
  out->bytes_out = s.bytes_out;
  out->in_flight = s.in_flight;
}
