/* ebs_json.c - parse EBS response bodies with cJSON (see ebs_json.h). */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ebs.h"
#include "ebs_json.h"

static int
fail(char *err, size_t errlen, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  if (err && errlen) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -EPROTO;
}

static cJSON *
parse_object(const char *body, size_t len, size_t max, char *err, size_t errlen)
{
  cJSON *root;

  if (body == NULL || len == 0) {
    fail(err, errlen, "empty response body");
    return NULL;
  }
  if (len > max) {
    fail(err, errlen, "response body of %zu bytes is over the %zu-byte limit", len, max);
    return NULL;
  }
  root = cJSON_ParseWithLength(body, len);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    fail(err, errlen, "response body is not a JSON object");
    return NULL;
  }
  return root;
}

/* An integer JSON number within [lo, hi]. */
static bool
get_int(const cJSON *obj, const char *name, double lo, double hi, int64_t *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  double d;
  if (!cJSON_IsNumber(v))
    return false;
  d = v->valuedouble;
  if (!isfinite(d) || d < lo || d > hi || d != floor(d))
    return false;
  *out = (int64_t) d;
  return true;
}

/* A string of at most EBS_JSON_MAX_TOKEN bytes, or absent/null (NULL). */
static int
get_token(const cJSON *obj, const char *name, const char **out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  *out = NULL;
  if (v == NULL || cJSON_IsNull(v))
    return 0;
  if (!cJSON_IsString(v) || strlen(v->valuestring) > EBS_JSON_MAX_TOKEN)
    return -1;
  *out = v->valuestring;
  return 0;
}

/* The fields both list answers share. */
struct page_common {
  int64_t volume_size_gib;
  uint32_t block_size;
  double expiry_time;
  const char *next_token;
};

static int
page_common(const cJSON *root, struct page_common *pc, char *err, size_t errlen)
{
  const cJSON *v;
  int64_t n;

  memset(pc, 0, sizeof *pc);
  if (get_int(root, "VolumeSize", 1, 1024.0 * 1024 * 1024, &n))
    pc->volume_size_gib = n;
  else if (cJSON_GetObjectItemCaseSensitive(root, "VolumeSize"))
    return fail(err, errlen, "VolumeSize is not a valid size");
  if (get_int(root, "BlockSize", 1, 1u << 30, &n))
    pc->block_size = (uint32_t) n;
  else if (cJSON_GetObjectItemCaseSensitive(root, "BlockSize"))
    return fail(err, errlen, "BlockSize is not a valid size");
  v = cJSON_GetObjectItemCaseSensitive(root, "ExpiryTime");
  if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0)
    pc->expiry_time = v->valuedouble;
  if (get_token(root, "NextToken", &pc->next_token) < 0)
    return fail(err, errlen, "NextToken is not a string of at most %d bytes", EBS_JSON_MAX_TOKEN);
  if (pc->next_token && *pc->next_token == '\0')
    pc->next_token = NULL;
  return 0;
}

/* Copy s into the storage at *pos, return the copy. */
static char *
stash(char *storage, size_t *pos, const char *s)
{
  size_t n;
  char *dst;
  if (s == NULL)
    return NULL;
  n = strlen(s) + 1;
  dst = storage + *pos;
  memcpy(dst, s, n);
  *pos += n;
  return dst;
}

static const cJSON *
entries(const cJSON *root, const char *name, int *count, char *err, size_t errlen)
{
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, name);
  if (arr == NULL || cJSON_IsNull(arr)) {
    *count = 0;
    return NULL;
  }
  if (!cJSON_IsArray(arr)) {
    fail(err, errlen, "%s is not an array", name);
    *count = -1;
    return NULL;
  }
  *count = cJSON_GetArraySize(arr);
  if (*count > EBS_JSON_MAX_ENTRIES) {
    fail(err, errlen, "%s has %d entries, more than %d", name, *count, EBS_JSON_MAX_ENTRIES);
    *count = -1;
  }
  return arr;
}

int
ebs_json_block_page(const char *body, size_t len, struct ebs_block_page *out,
                    char *err, size_t errlen)
{
  cJSON *root;
  const cJSON *arr, *it;
  struct page_common pc;
  int count, r = -EPROTO;
  size_t bytes, pos, i;
  int64_t prev = -1;
  char *storage = NULL;

  memset(out, 0, sizeof *out);
  root = parse_object(body, len, EBS_JSON_MAX_PAGE_BODY, err, errlen);
  if (root == NULL)
    return -EPROTO;
  if (page_common(root, &pc, err, errlen) < 0)
    goto out;
  arr = entries(root, "Blocks", &count, err, errlen);
  if (count < 0)
    goto out;

  /* Pass 1: validate and size the one storage block. */
  bytes = (size_t) count * sizeof(struct ebs_block_ref) +
          (pc.next_token ? strlen(pc.next_token) + 1 : 0);
  cJSON_ArrayForEach(it, arr) {
    int64_t idx;
    const char *tok;
    if (!cJSON_IsObject(it) || !get_int(it, "BlockIndex", 0, UINT32_MAX, &idx)) {
      fail(err, errlen, "a block has no valid BlockIndex");
      goto out;
    }
    if (idx <= prev) {
      fail(err, errlen, "block indexes are not ascending (%lld after %lld)",
           (long long) idx, (long long) prev);
      goto out;
    }
    prev = idx;
    if (get_token(it, "BlockToken", &tok) < 0 || tok == NULL) {
      fail(err, errlen, "block %lld has no valid BlockToken", (long long) idx);
      goto out;
    }
    bytes += strlen(tok) + 1;
  }

  /* Pass 2: fill. */
  storage = malloc(bytes ? bytes : 1);
  if (storage == NULL) {
    r = -ENOMEM;
    fail(err, errlen, "out of memory for a %zu-byte page", bytes);
    goto out;
  }
  out->blocks = (struct ebs_block_ref *) storage;
  pos = (size_t) count * sizeof(struct ebs_block_ref);
  i = 0;
  cJSON_ArrayForEach(it, arr) {
    int64_t idx;
    const char *tok;
    get_int(it, "BlockIndex", 0, UINT32_MAX, &idx);
    get_token(it, "BlockToken", &tok);
    out->blocks[i].index = (uint32_t) idx;
    out->blocks[i].token = stash(storage, &pos, tok);
    i++;
  }
  out->nblocks = i;
  out->next_token = stash(storage, &pos, pc.next_token);
  out->volume_size_gib = pc.volume_size_gib;
  out->block_size = pc.block_size;
  out->expiry_time = pc.expiry_time;
  out->storage_ = storage;
  storage = NULL;
  r = 0;
 out:
  free(storage);
  cJSON_Delete(root);
  if (r < 0)
    memset(out, 0, sizeof *out);
  return r;
}

void
ebs_block_page_free(struct ebs_block_page *p)
{
  if (p == NULL)
    return;
  free(p->storage_);
  memset(p, 0, sizeof *p);
}

int
ebs_json_changed_page(const char *body, size_t len, struct ebs_changed_page *out,
                      char *err, size_t errlen)
{
  cJSON *root;
  const cJSON *arr, *it;
  struct page_common pc;
  int count, r = -EPROTO;
  size_t bytes, pos, i;
  int64_t prev = -1;
  char *storage = NULL;

  memset(out, 0, sizeof *out);
  root = parse_object(body, len, EBS_JSON_MAX_PAGE_BODY, err, errlen);
  if (root == NULL)
    return -EPROTO;
  if (page_common(root, &pc, err, errlen) < 0)
    goto out;
  arr = entries(root, "ChangedBlocks", &count, err, errlen);
  if (count < 0)
    goto out;

  bytes = (size_t) count * sizeof(struct ebs_changed_ref) +
          (pc.next_token ? strlen(pc.next_token) + 1 : 0);
  cJSON_ArrayForEach(it, arr) {
    int64_t idx;
    const char *t1, *t2;
    if (!cJSON_IsObject(it) || !get_int(it, "BlockIndex", 0, UINT32_MAX, &idx)) {
      fail(err, errlen, "a changed block has no valid BlockIndex");
      goto out;
    }
    if (idx <= prev) {
      fail(err, errlen, "changed block indexes are not ascending (%lld after %lld)",
           (long long) idx, (long long) prev);
      goto out;
    }
    prev = idx;
    if (get_token(it, "FirstBlockToken", &t1) < 0 ||
        get_token(it, "SecondBlockToken", &t2) < 0) {
      fail(err, errlen, "changed block %lld has an invalid token", (long long) idx);
      goto out;
    }
    bytes += (t1 ? strlen(t1) + 1 : 0) + (t2 ? strlen(t2) + 1 : 0);
  }

  storage = malloc(bytes ? bytes : 1);
  if (storage == NULL) {
    r = -ENOMEM;
    fail(err, errlen, "out of memory for a %zu-byte page", bytes);
    goto out;
  }
  out->blocks = (struct ebs_changed_ref *) storage;
  pos = (size_t) count * sizeof(struct ebs_changed_ref);
  i = 0;
  cJSON_ArrayForEach(it, arr) {
    int64_t idx;
    const char *t1, *t2;
    get_int(it, "BlockIndex", 0, UINT32_MAX, &idx);
    get_token(it, "FirstBlockToken", &t1);
    get_token(it, "SecondBlockToken", &t2);
    out->blocks[i].index = (uint32_t) idx;
    out->blocks[i].first_token = stash(storage, &pos, t1);
    out->blocks[i].second_token = stash(storage, &pos, t2);
    i++;
  }
  out->nblocks = i;
  out->next_token = stash(storage, &pos, pc.next_token);
  out->volume_size_gib = pc.volume_size_gib;
  out->block_size = pc.block_size;
  out->expiry_time = pc.expiry_time;
  out->storage_ = storage;
  storage = NULL;
  r = 0;
 out:
  free(storage);
  cJSON_Delete(root);
  if (r < 0)
    memset(out, 0, sizeof *out);
  return r;
}

void
ebs_changed_page_free(struct ebs_changed_page *p)
{
  if (p == NULL)
    return;
  free(p->storage_);
  memset(p, 0, sizeof *p);
}

static bool
copy_str(const cJSON *obj, const char *name, char *dst, size_t dstlen)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= dstlen)
    return false;
  strcpy(dst, v->valuestring);
  return true;
}

int
ebs_json_snapshot_info(const char *body, size_t len, struct ebs_snapshot_info *out,
                       char *err, size_t errlen)
{
  cJSON *root;
  int64_t n;
  int r = -EPROTO;

  memset(out, 0, sizeof *out);
  root = parse_object(body, len, EBS_JSON_MAX_SMALL_BODY, err, errlen);
  if (root == NULL)
    return -EPROTO;
  if (!copy_str(root, "SnapshotId", out->snapshot_id, sizeof out->snapshot_id) ||
      !ebs_valid_snapshot_id(out->snapshot_id)) {
    fail(err, errlen, "the answer has no valid SnapshotId");
    goto out;
  }
  if (!copy_str(root, "Status", out->status, sizeof out->status)) {
    fail(err, errlen, "the answer has no valid Status");
    goto out;
  }
  if (get_int(root, "VolumeSize", 1, 1024.0 * 1024 * 1024, &n))
    out->volume_size_gib = n;
  if (get_int(root, "BlockSize", 1, 1u << 30, &n))
    out->block_size = (uint32_t) n;
  if (cJSON_GetObjectItemCaseSensitive(root, "ParentSnapshotId") &&
      !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "ParentSnapshotId")) &&
      !copy_str(root, "ParentSnapshotId", out->parent_snapshot_id,
                sizeof out->parent_snapshot_id)) {
    fail(err, errlen, "ParentSnapshotId is not a valid snapshot id");
    goto out;
  }
  r = 0;
 out:
  cJSON_Delete(root);
  return r;
}

int
ebs_json_status(const char *body, size_t len, char *status, size_t statuslen,
                char *err, size_t errlen)
{
  cJSON *root = parse_object(body, len, EBS_JSON_MAX_SMALL_BODY, err, errlen);
  int r = 0;

  if (root == NULL)
    return -EPROTO;
  if (!copy_str(root, "Status", status, statuslen))
    r = fail(err, errlen, "the answer has no valid Status");
  cJSON_Delete(root);
  return r;
}
