/* block_index.c - the lazy, compact block index (block_index.h).
 *
 * State is one array of struct grain (a few dozen bytes per 5 GiB of volume)
 * and, per loaded grain that has listed blocks, one allocation holding its
 * block offsets and token bytes.  A single mutex guards the array; it is
 * dropped while a grain is being listed, and the grain's state (LOADING,
 * refreshing) makes every other reader of that grain wait on the condition
 * variable instead of listing it again.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block_index.h"
#include "ebs.h"
#include "log.h"

#define MAX_PAGES_PER_LOAD 64           /* a grain needs 1-2; more is a broken server */
#define REFRESH_MARGIN_MAX 300.0        /* re-list 5 min before ExpiryTime (ebuse) */

enum { G_EMPTY, G_LOADING, G_LOADED };

/* The listed blocks of one grain, in one allocation. */
struct grain_data {
  uint32_t n;
  uint16_t prefix_len;          /* bytes shared by every token of the grain */
  uint16_t fixed_len;           /* suffix length when all equal, else 0 */
  bool raw;                     /* tokens kept as text: not canonical base64 */
  bool variable;                /* off[] present */
  uint16_t *idx;                /* block - grain start, ascending */
  uint32_t *off;                /* n + 1 suffix offsets when variable */
  uint8_t *prefix;
  uint8_t *suffixes;
  size_t alloc_size;
};

struct grain {
  struct grain_data *d;         /* NULL: loaded and empty, or not loaded */
  double expiry;                /* ExpiryTime of the tokens; 0: none given */
  double loaded_at;
  uint32_t seq;                 /* bumped when a load or refresh finishes */
  int err;                      /* that load's -errno, 0 if it succeeded */
  uint8_t state;
  bool refreshing;
  bool stale;                   /* a token was rejected: re-list before use */
};

struct block_index {
  struct block_lister l;
  uint64_t nblocks;
  uint64_t ngrains;
  struct grain *grains;
  /* The head: a short first page (block_index_preload_head), answering for
   * blocks [0, head_end) until grain 0 is loaded; then freed. */
  struct grain_data *head;
  uint64_t head_end;
  double head_expiry, head_loaded_at;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct block_index_stats st;
  struct ebs_error last_err;    /* handed to waiters of a failed load */
};

/* ---- base64 (tokens are stored decoded: 3/4 of the size) ------------------ */

static const char b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64val(int ch)
{
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

static size_t
b64_encode(const uint8_t *in, size_t n, char *out)
{
  size_t i, o = 0;

  for (i = 0; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = b64[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t) in[i] << 16;
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = '=';
    out[o++] = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

/* Decode s into out; -1 unless s is canonical padded base64, i.e. encoding
 * the result gives s back exactly (so storing decoded bytes loses nothing). */
static int
b64_decode_canonical(const char *s, size_t len, uint8_t *out)
{
  size_t i, o = 0;
  char check[BLOCK_TOKEN_MAX + 4];

  if (len == 0 || len % 4 != 0 || len > BLOCK_TOKEN_MAX)
    return -1;
  for (i = 0; i < len; i += 4) {
    int a = b64val(s[i]), b = b64val(s[i + 1]);
    int c = s[i + 2] == '=' ? 0 : b64val(s[i + 2]);
    int d = s[i + 3] == '=' ? 0 : b64val(s[i + 3]);
    uint32_t v;

    if (a < 0 || b < 0 || c < 0 || d < 0)
      return -1;
    if ((s[i + 2] == '=' || s[i + 3] == '=') && i + 4 != len)
      return -1;
    v = (uint32_t) a << 18 | (uint32_t) b << 12 | (uint32_t) c << 6 | (uint32_t) d;
    out[o++] = (uint8_t) (v >> 16);
    if (s[i + 2] != '=')
      out[o++] = (uint8_t) (v >> 8);
    if (s[i + 3] != '=')
      out[o++] = (uint8_t) v;
  }
  if (b64_encode(out, o, check) != len || memcmp(check, s, len) != 0)
    return -1;
  return (int) o;
}

/* ---- building a grain's data --------------------------------------------- */

/* refs: the grain's listed blocks (ascending), base: its first block index. */
static struct grain_data *
grain_data_build(const struct ebs_block_ref *refs, size_t n, uint64_t base)
{
  uint8_t *tmp = NULL;
  uint16_t *lens = NULL;
  size_t *starts = NULL;
  size_t total = 0, i, prefix, suffix_total, size, pos, idx_bytes;
  bool raw = false, variable = false;
  struct grain_data *d = NULL;
  char *p;

  if (n == 0)
    return NULL;
  for (i = 0; i < n; i++)
    total += strlen(refs[i].token);
  tmp = malloc(total + 1);
  lens = calloc(n, sizeof *lens);     /* calloc: gcc cannot see every path sets it */
  starts = malloc(n * sizeof *starts);
  if (tmp == NULL || lens == NULL || starts == NULL)
    goto out;

  /* Decode all; one token that is not canonical base64 keeps all as text. */
  pos = 0;
  for (i = 0; i < n; i++) {
    size_t tl = strlen(refs[i].token);
    int r = b64_decode_canonical(refs[i].token, tl, tmp + pos);
    if (r < 0) { raw = true; break; }
    starts[i] = pos;
    lens[i] = (uint16_t) r;
    pos += (size_t) r;
  }
  if (raw) {
    pos = 0;
    for (i = 0; i < n; i++) {
      size_t tl = strlen(refs[i].token);
      if (tl > BLOCK_TOKEN_MAX) tl = BLOCK_TOKEN_MAX;   /* the API's cap */
      memcpy(tmp + pos, refs[i].token, tl);
      starts[i] = pos;
      lens[i] = (uint16_t) tl;
      pos += tl;
    }
  }

  /* Common prefix and whether every token has the same length. */
  prefix = lens[0];
  for (i = 1; i < n; i++) {
    size_t k = 0, m = lens[i] < prefix ? lens[i] : prefix;
    while (k < m && tmp[starts[i] + k] == tmp[starts[0] + k])
      k++;
    prefix = k;
    if (lens[i] != lens[0])
      variable = true;
  }
  suffix_total = pos - n * prefix;
  /* idx[] is uint16_t; off[] after it needs 4-byte alignment. */
  idx_bytes = n * sizeof (uint16_t);
  if (variable)
    idx_bytes = (idx_bytes + 3) & ~(size_t) 3;

  size = sizeof *d + idx_bytes
         + (variable ? (n + 1) * sizeof (uint32_t) : 0) + prefix + suffix_total;
  d = calloc(1, size);
  if (d == NULL)
    goto out;
  d->alloc_size = size;
  d->n = (uint32_t) n;
  d->raw = raw;
  d->variable = variable;
  d->prefix_len = (uint16_t) prefix;
  d->fixed_len = variable ? 0 : (uint16_t) (lens[0] - prefix);
  p = (char *) (d + 1);
  d->idx = (uint16_t *) p;
  p += idx_bytes;
  if (variable) {
    d->off = (uint32_t *) p;
    p += (n + 1) * sizeof (uint32_t);
  }
  d->prefix = (uint8_t *) p;
  memcpy(d->prefix, tmp + starts[0], prefix);
  p += prefix;
  d->suffixes = (uint8_t *) p;
  pos = 0;
  for (i = 0; i < n; i++) {
    size_t sl = lens[i] - prefix;
    d->idx[i] = (uint16_t) (refs[i].index - base);
    if (variable)
      d->off[i] = (uint32_t) pos;
    memcpy(d->suffixes + pos, tmp + starts[i] + prefix, sl);
    pos += sl;
  }
  if (variable)
    d->off[n] = (uint32_t) pos;
out:
  free(tmp);
  free(lens);
  free(starts);
  return d;
}

/* Position of the first listed block >= rel in d (d->n when none). */
static uint32_t
grain_lower_bound(const struct grain_data *d, uint32_t rel)
{
  uint32_t lo = 0, hi = d->n;

  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (d->idx[mid] < rel) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static void
grain_token(const struct grain_data *d, uint32_t i, char *out, size_t cap)
{
  uint8_t bin[BLOCK_TOKEN_MAX + 1];
  size_t sl, so, len;

  if (d->variable) {
    so = d->off[i];
    sl = d->off[i + 1] - so;
  } else {
    sl = d->fixed_len;
    so = (size_t) i * sl;
  }
  len = d->prefix_len + sl;
  memcpy(bin, d->prefix, d->prefix_len);
  memcpy(bin + d->prefix_len, d->suffixes + so, sl);
  if (d->raw) {
    if (len >= cap) len = cap - 1;
    memcpy(out, bin, len);
    out[len] = '\0';
  } else if ((len + 2) / 3 * 4 < cap) {
    b64_encode(bin, len, out);
  } else {
    out[0] = '\0';
  }
}

/* ---- the index ------------------------------------------------------------- */

static double
now_of(struct block_index *idx)
{
  struct timespec ts;

  if (idx->l.now)
    return idx->l.now(idx->l.arg);
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

struct block_index *
block_index_new(const struct block_lister *lister, uint64_t nblocks)
{
  struct block_index *idx = calloc(1, sizeof *idx);

  if (idx == NULL)
    return NULL;
  idx->l = *lister;
  idx->nblocks = nblocks;
  idx->ngrains = (nblocks + BLOCK_INDEX_GRAIN - 1) / BLOCK_INDEX_GRAIN;
  idx->grains = calloc(idx->ngrains ? idx->ngrains : 1, sizeof *idx->grains);
  if (idx->grains == NULL || pthread_mutex_init(&idx->lock, NULL) != 0) {
    free(idx->grains);
    free(idx);
    return NULL;
  }
  if (pthread_cond_init(&idx->cond, NULL) != 0) {
    pthread_mutex_destroy(&idx->lock);
    free(idx->grains);
    free(idx);
    return NULL;
  }
  idx->st.memory_bytes = sizeof *idx + idx->ngrains * sizeof *idx->grains;
  return idx;
}

void
block_index_free(struct block_index *idx)
{
  uint64_t g;

  if (idx == NULL)
    return;
  for (g = 0; g < idx->ngrains; g++)
    free(idx->grains[g].d);
  free(idx->head);
  pthread_cond_destroy(&idx->cond);
  pthread_mutex_destroy(&idx->lock);
  free(idx->grains);
  free(idx);
}

static void
set_local_error(struct ebs_error *err, int errnum, const char *msg)
{
  if (err == NULL)
    return;
  memset(err, 0, sizeof *err);
  err->errnum = errnum;
  snprintf(err->message, sizeof err->message, "%s", msg);
}

/* Are tokens listed at loaded_at, expiring at expiry, due for a re-list? */
static bool
near_expiry(struct block_index *idx, double expiry, double loaded_at)
{
  double margin;

  if (expiry <= 0)
    return false;
  margin = (expiry - loaded_at) / 4;
  if (margin > REFRESH_MARGIN_MAX)
    margin = REFRESH_MARGIN_MAX;
  return now_of(idx) >= expiry - margin;
}

/* With the lock held: forget the head (grain 0 has superseded it, or one of
 * its tokens was rejected). */
static void
drop_head_locked(struct block_index *idx)
{
  if (idx->head)
    idx->st.memory_bytes -= idx->head->alloc_size;
  free(idx->head);
  idx->head = NULL;
  idx->head_end = 0;
}

/* Called with the lock held, state of grain g set to LOADING or refreshing
 * by the caller.  Lists from the grain's start until the grain is covered,
 * drops the lock meanwhile, installs every grain the pages covered entirely,
 * and returns with the lock held.  seed, when not NULL, is a page already
 * listed from the grain's start (any maxResults): it is
 * used as the first page instead of asking for it (and freed either way). */
static int
load_grain(struct block_index *idx, uint64_t g, struct ebs_block_page *seed,
           struct ebs_error *err)
{
  struct ebs_block_page pages[MAX_PAGES_PER_LOAD];
  struct ebs_block_ref *all = NULL;
  struct grain_data **built = NULL;
  size_t npages = 0, nall = 0, cap = 0, i;
  uint64_t start = g * BLOCK_INDEX_GRAIN;
  uint64_t target = start + BLOCK_INDEX_GRAIN < idx->nblocks
                    ? start + BLOCK_INDEX_GRAIN : idx->nblocks;
  uint64_t covered = start, first_g, end_g, h;
  const char *ptok = NULL;
  double expiry = 0, now;
  int rc = 0;
  struct ebs_error lerr;

  memset(&lerr, 0, sizeof lerr);
  pthread_mutex_unlock(&idx->lock);

  while (covered < target) {
    struct ebs_block_page *p;
    int64_t prev = (int64_t) start - 1;

    if (npages == MAX_PAGES_PER_LOAD) {
      set_local_error(&lerr, EIO, "ListSnapshotBlocks made no progress");
      rc = -EIO;
      break;
    }
    p = &pages[npages];
    if (seed) {
      *p = *seed;                       /* ours now: freed with the others */
      memset(seed, 0, sizeof *seed);
      seed = NULL;
      rc = 0;
    } else {
      memset(p, 0, sizeof *p);
      rc = idx->l.list(idx->l.arg, ptok, ptok ? -1 : (int64_t) start,
                       (int) BLOCK_INDEX_GRAIN, p, &lerr);
      __atomic_add_fetch(&idx->st.list_calls, 1, __ATOMIC_RELAXED);
    }
    if (rc != 0) {
      if (rc > 0) rc = -rc;
      break;
    }
    npages++;
    if (nall + p->nblocks > cap) {
      size_t ncap = (nall + p->nblocks) * 2;
      struct ebs_block_ref *na = realloc(all, ncap * sizeof *all);
      if (na == NULL) {
        set_local_error(&lerr, ENOMEM, "out of memory listing blocks");
        rc = -ENOMEM;
        break;
      }
      all = na;
      cap = ncap;
    }
    if (nall)
      prev = all[nall - 1].index;
    for (i = 0; i < p->nblocks; i++) {
      if ((int64_t) p->blocks[i].index <= prev || p->blocks[i].index < start) {
        set_local_error(&lerr, EIO, "ListSnapshotBlocks answered blocks out of order");
        rc = -EIO;
        break;
      }
      prev = p->blocks[i].index;
      if (p->blocks[i].index < idx->nblocks && p->blocks[i].token)
        all[nall++] = p->blocks[i];
    }
    if (rc)
      break;
    if (p->expiry_time > 0 && (expiry == 0 || p->expiry_time < expiry))
      expiry = p->expiry_time;
    if (p->next_token == NULL)
      covered = idx->nblocks;
    else if (p->nblocks)
      covered = (uint64_t) p->blocks[p->nblocks - 1].index + 1 > covered
                ? (uint64_t) p->blocks[p->nblocks - 1].index + 1 : covered;
    ptok = p->next_token;
  }

  /* Build every grain the listing covered entirely (outside the lock). */
  first_g = g;
  end_g = rc == 0 ? (covered >= idx->nblocks ? idx->ngrains : covered / BLOCK_INDEX_GRAIN) : g;
  if (rc == 0 && end_g <= g) {
    set_local_error(&lerr, EIO, "ListSnapshotBlocks did not cover the requested range");
    rc = -EIO;
    end_g = g;
  }
  if (rc == 0) {
    size_t k = 0;

    built = calloc(end_g - first_g, sizeof *built);
    if (built == NULL) {
      set_local_error(&lerr, ENOMEM, "out of memory listing blocks");
      rc = -ENOMEM;
    }
    for (h = first_g; rc == 0 && h < end_g; h++) {
      uint64_t hs = h * BLOCK_INDEX_GRAIN, he = hs + BLOCK_INDEX_GRAIN;
      size_t j = k;

      while (j < nall && all[j].index < he)
        j++;
      if (j > k) {
        built[h - first_g] = grain_data_build(all + k, j - k, hs);
        if (built[h - first_g] == NULL) {
          set_local_error(&lerr, ENOMEM, "out of memory building the block index");
          rc = -ENOMEM;
        }
      }
      k = j;
    }
  }
  for (i = 0; i < npages; i++)
    idx->l.free_page(idx->l.arg, &pages[i]);
  free(all);

  now = now_of(idx);
  pthread_mutex_lock(&idx->lock);
  if (rc == 0) {
    for (h = first_g; h < end_g; h++) {
      struct grain *gr = &idx->grains[h];
      struct grain_data *d = built[h - first_g];

      if (h != g && (gr->state == G_LOADING || gr->refreshing)) {
        free(d);                        /* another load owns it */
        continue;
      }
      if (gr->d) {
        idx->st.memory_bytes -= gr->d->alloc_size;
        idx->st.listed_blocks -= gr->d->n;
      }
      if (gr->state != G_LOADED)
        idx->st.grains_loaded++;
      free(gr->d);
      gr->d = d;
      if (d) {
        idx->st.memory_bytes += d->alloc_size;
        idx->st.listed_blocks += d->n;
      }
      gr->state = G_LOADED;
      gr->stale = false;
      gr->expiry = expiry;
      gr->loaded_at = now;
      gr->err = 0;
      gr->seq++;
      if (h == 0)
        drop_head_locked(idx);
    }
  } else {
    struct grain *gr = &idx->grains[g];

    if (gr->state == G_LOADING)
      gr->state = G_EMPTY;
    gr->err = rc;
    gr->seq++;
    idx->last_err = lerr;
    idx->last_err.errnum = -rc;
    if (err)
      *err = idx->last_err;
  }
  if (idx->grains[g].refreshing) {
    idx->grains[g].refreshing = false;
    if (rc == 0)
      idx->st.refreshes++;
  }
  free(built);
  pthread_cond_broadcast(&idx->cond);
  return rc;
}

static bool
needs_refresh(struct block_index *idx, const struct grain *gr)
{
  return gr->stale || near_expiry(idx, gr->expiry, gr->loaded_at);
}

/* With the lock held: make grain g loaded (and its tokens fresh if
 * need_token).  Returns 0 with the grain usable, or -errno; the lock is held
 * on return either way. */
static int
ensure_locked(struct block_index *idx, uint64_t g, bool need_token,
              struct ebs_error *err)
{
  for (;;) {
    struct grain *gr = &idx->grains[g];
    uint32_t seq = gr->seq;

    if (gr->state == G_LOADED && !(need_token && (gr->refreshing || needs_refresh(idx, gr))))
      return 0;
    if (gr->state == G_EMPTY) {
      gr->state = G_LOADING;
      return load_grain(idx, g, NULL, err);
    }
    if (gr->state == G_LOADED && !gr->refreshing) {
      gr->refreshing = true;
      log_debug(LOG_SUB_INDEX, "re-listing blocks %llu.. for fresh tokens",
                (unsigned long long) (g * BLOCK_INDEX_GRAIN));
      return load_grain(idx, g, NULL, err);
    }
    /* Someone else is listing this grain: wait for that one. */
    while (gr->seq == seq)
      pthread_cond_wait(&idx->cond, &idx->lock);
    if (gr->err != 0) {
      if (err) *err = idx->last_err;
      return gr->err;
    }
  }
}

int
block_index_preload(struct block_index *idx, struct ebs_block_page *first,
                    struct ebs_error *err)
{
  int rc = 0;

  pthread_mutex_lock(&idx->lock);
  if (idx->ngrains > 0 && idx->grains[0].state == G_EMPTY) {
    idx->grains[0].state = G_LOADING;
    rc = load_grain(idx, 0, first, err);
  }
  pthread_mutex_unlock(&idx->lock);
  idx->l.free_page(idx->l.arg, first);  /* zeroed when load_grain took it */
  return rc;
}

int
block_index_preload_head(struct block_index *idx, struct ebs_block_page *first,
                         struct ebs_error *err)
{
  uint64_t grain0_end = BLOCK_INDEX_GRAIN < idx->nblocks ? BLOCK_INDEX_GRAIN : idx->nblocks;
  struct grain_data *d;
  size_t i;
  int rc = 1;

  /* A page that ends the listing or reaches past grain 0 is grain 0 (and
   * maybe more) by itself. */
  if (idx->ngrains == 0 || first->next_token == NULL || first->nblocks == 0 ||
      first->blocks[first->nblocks - 1].index + 1 >= grain0_end)
    return block_index_preload(idx, first, err);
  for (i = 0; i < first->nblocks; i++) {
    if (first->blocks[i].token == NULL ||
        (i > 0 && first->blocks[i].index <= first->blocks[i - 1].index)) {
      set_local_error(err, EIO, "ListSnapshotBlocks answered blocks out of order");
      idx->l.free_page(idx->l.arg, first);
      return -EIO;
    }
  }
  d = grain_data_build(first->blocks, first->nblocks, 0);
  if (d == NULL) {
    set_local_error(err, ENOMEM, "out of memory building the block index");
    idx->l.free_page(idx->l.arg, first);
    return -ENOMEM;
  }
  pthread_mutex_lock(&idx->lock);
  if (idx->grains[0].state == G_EMPTY && idx->head == NULL) {
    idx->head = d;
    idx->head_end = first->blocks[first->nblocks - 1].index + 1;
    idx->head_expiry = first->expiry_time;
    idx->head_loaded_at = now_of(idx);
    idx->st.memory_bytes += d->alloc_size;
    idx->grains[0].state = G_LOADING;   /* block_index_finish_preload's */
  } else {
    free(d);
    rc = 0;
  }
  pthread_mutex_unlock(&idx->lock);
  idx->l.free_page(idx->l.arg, first);
  return rc;
}

int
block_index_finish_preload(struct block_index *idx, struct ebs_block_page *grain0,
                           int list_rc, const struct ebs_error *list_err,
                           struct ebs_error *err)
{
  struct grain *gr;
  int rc;

  pthread_mutex_lock(&idx->lock);
  gr = &idx->grains[0];
  if (idx->ngrains == 0 || gr->state != G_LOADING) {
    /* Not after a block_index_preload_head() that returned 1. */
    pthread_mutex_unlock(&idx->lock);
    if (grain0)
      idx->l.free_page(idx->l.arg, grain0);
    set_local_error(err, EINVAL, "block_index_finish_preload without a head");
    return -EINVAL;
  }
  if (list_rc == 0) {
    rc = load_grain(idx, 0, grain0, err);
  } else {
    /* As a failed load: its waiters get the error, the next lookup of a
     * block past the head lists grain 0 again. */
    rc = list_rc > 0 ? -list_rc : list_rc;
    gr->state = G_EMPTY;
    gr->err = rc;
    gr->seq++;
    if (list_err)
      idx->last_err = *list_err;
    else
      set_local_error(&idx->last_err, -rc, "listing the first blocks failed");
    idx->last_err.errnum = -rc;
    if (err)
      *err = idx->last_err;
    pthread_cond_broadcast(&idx->cond);
  }
  pthread_mutex_unlock(&idx->lock);
  if (grain0)
    idx->l.free_page(idx->l.arg, grain0);       /* zeroed when load_grain took it */
  return rc;
}

/* Is block in d?  1 (token copied when token != NULL) or 0. */
static int
grain_find(const struct grain_data *d, uint32_t rel, char *token, size_t token_cap)
{
  uint32_t i;

  if (d == NULL || (i = grain_lower_bound(d, rel)) >= d->n || d->idx[i] != rel)
    return 0;
  if (token)
    grain_token(d, i, token, token_cap);
  return 1;
}

int
block_index_lookup(struct block_index *idx, uint64_t block, char *token,
                   size_t token_cap, struct ebs_error *err)
{
  uint64_t g = block / BLOCK_INDEX_GRAIN;
  uint32_t rel = (uint32_t) (block % BLOCK_INDEX_GRAIN);
  int rc;

  if (block >= idx->nblocks)
    return 0;
  pthread_mutex_lock(&idx->lock);
  /* The head answers for its blocks while grain 0 is still being listed:
   * the volume's first reads never wait for the long page. */
  if (g == 0 && block < idx->head_end && idx->grains[0].state != G_LOADED &&
      !(token && near_expiry(idx, idx->head_expiry, idx->head_loaded_at))) {
    rc = grain_find(idx->head, rel, token, token_cap);
    pthread_mutex_unlock(&idx->lock);
    return rc;
  }
  rc = ensure_locked(idx, g, token != NULL, err);
  if (rc == 0)
    rc = grain_find(idx->grains[g].d, rel, token, token_cap);
  pthread_mutex_unlock(&idx->lock);
  return rc;
}
void
block_index_invalidate(struct block_index *idx, uint64_t block)
{
  uint64_t g = block / BLOCK_INDEX_GRAIN;

  if (block >= idx->nblocks)
    return;
  pthread_mutex_lock(&idx->lock);
  if (idx->grains[g].state == G_LOADED)
    idx->grains[g].stale = true;
  else if (g == 0)
    drop_head_locked(idx);              /* its blocks then wait for grain 0 */
  pthread_mutex_unlock(&idx->lock);
}

/* Shared walk for SEEK_DATA (want_data) and SEEK_HOLE. */
static int64_t
next_block(struct block_index *idx, uint64_t from, bool want_data,
           struct ebs_error *err)
{
  uint64_t b = from;
  int64_t result = (int64_t) idx->nblocks;

  pthread_mutex_lock(&idx->lock);
  while (b < idx->nblocks) {
    uint64_t g = b / BLOCK_INDEX_GRAIN, gs = g * BLOCK_INDEX_GRAIN;
    const struct grain_data *d;
    uint32_t rel = (uint32_t) (b - gs), i;
    int rc = ensure_locked(idx, g, false, err);

    if (rc < 0) {
      result = rc;
      break;
    }
    d = idx->grains[g].d;
    i = d ? grain_lower_bound(d, rel) : 0;
    if (want_data) {
      if (d && i < d->n) {
        result = (int64_t) (gs + d->idx[i]);
        break;
      }
    } else {
      /* Walk the run of listed blocks starting at rel. */
      while (d && i < d->n && d->idx[i] == rel) {
        i++;
        rel++;
      }
      if (rel < BLOCK_INDEX_GRAIN && gs + rel < idx->nblocks) {
        result = (int64_t) (gs + rel);
        break;
      }
    }
    b = gs + BLOCK_INDEX_GRAIN;
  }
  pthread_mutex_unlock(&idx->lock);
  return result;
}

int64_t
block_index_next_data(struct block_index *idx, uint64_t from, struct ebs_error *err)
{
  return next_block(idx, from, true, err);
}

int64_t
block_index_next_hole(struct block_index *idx, uint64_t from, struct ebs_error *err)
{
  return next_block(idx, from, false, err);
}

void
block_index_get_stats(struct block_index *idx, struct block_index_stats *out)
{
  pthread_mutex_lock(&idx->lock);
  *out = idx->st;
  out->list_calls = __atomic_load_n(&idx->st.list_calls, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&idx->lock);
}
