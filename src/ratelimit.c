/* ratelimit.c - per-snapshot pacing with AIMD (see ratelimit.h). */
#include <config.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define RL_BURST_MS        100.0   /* requests may go out this far ahead of the pace */
#define RL_DECREASE        0.7     /* multiplicative decrease on a throttle */
#define RL_DECREASE_GAP_MS 500.0   /* one decrease per this, however many throttles */
#define RL_INCREASE_FRAC   0.05    /* of the configured rate, per second of calm */
#define RL_CALM_MS         1000.0  /* no recovery this soon after a throttle */
#define RL_MIN_RATE        1.0
#define RL_MAX_KEYS        4096    /* then the least recently used key is recycled */
#define RL_KEY_MAX         64

struct rl_key {
  char key[RL_KEY_MAX + 1];
  double rate;                    /* current pace, requests/s */
  double tat;                     /* theoretical arrival time of the next request */
  double last_throttle;           /* when we last cut the rate */
  double last_update;             /* when the rate was last recomputed */
  double last_use;
  bool used;
};

struct ratelimit {
  double max_rate;
  struct rl_key *keys;            /* small open list; a mount has few snapshots */
  size_t nkeys, cap;
};

struct ratelimit *
ratelimit_new(double rate)
{
  struct ratelimit *rl = calloc(1, sizeof *rl);
  if (rl == NULL)
    return NULL;
  rl->max_rate = rate > 0 ? rate : RATELIMIT_DEFAULT_RATE;
  return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
  if (rl == NULL)
    return;
  free(rl->keys);
  free(rl);
}

/* Additive increase for the calm time since the last update: recovery
 * starts only RL_CALM_MS after the last throttle. */
static void
recover(struct ratelimit *rl, struct rl_key *k, double now_ms)
{
  double from = k->last_update;
  if (from < k->last_throttle + RL_CALM_MS)
    from = k->last_throttle + RL_CALM_MS;
  if (k->rate < rl->max_rate && now_ms > from) {
    k->rate += rl->max_rate * RL_INCREASE_FRAC * (now_ms - from) / 1000.0;
    if (k->rate > rl->max_rate)
      k->rate = rl->max_rate;
  }
  if (now_ms > k->last_update)
    k->last_update = now_ms;
}

static struct rl_key *
find(struct ratelimit *rl, const char *key, double now_ms)
{
  struct rl_key *k, *oldest = NULL;

  for (size_t i = 0; i < rl->nkeys; i++) {
    k = &rl->keys[i];
    if (strcmp(k->key, key) == 0) {
      recover(rl, k, now_ms);
      k->last_use = now_ms;
      return k;
    }
    if (oldest == NULL || k->last_use < oldest->last_use)
      oldest = k;
  }
  if (rl->nkeys == rl->cap && rl->cap < RL_MAX_KEYS) {
    size_t ncap = rl->cap ? rl->cap * 2 : 8;
    struct rl_key *n = realloc(rl->keys, ncap * sizeof *n);
    if (n == NULL)
      return NULL;
    rl->keys = n;
    rl->cap = ncap;
  }
  if (rl->nkeys < rl->cap)
    k = &rl->keys[rl->nkeys++];
  else
    k = oldest;                   /* full: recycle the least recently used */
  memset(k, 0, sizeof *k);
  strncpy(k->key, key, RL_KEY_MAX);
  k->rate = rl->max_rate;
  k->tat = now_ms - RL_BURST_MS;  /* a new key starts with its burst */
  k->last_throttle = -1e18;
  k->last_update = k->last_use = now_ms;
  return k;
}

double
ratelimit_reserve(struct ratelimit *rl, const char *key, double now_ms)
{
  struct rl_key *k = find(rl, key, now_ms);
  double interval, base;

  if (k == NULL)
    return now_ms;
  interval = 1000.0 / k->rate;
  /* GCRA: the slot after the last reserved one, but never earlier than one
   * burst window before now (idle time does not accumulate credit). */
  base = k->tat;
  if (base < now_ms - RL_BURST_MS)
    base = now_ms - RL_BURST_MS;
  k->tat = base + interval;
  return base > now_ms ? base : now_ms;
}

void
ratelimit_throttled(struct ratelimit *rl, const char *key, double now_ms)
{
  struct rl_key *k = find(rl, key, now_ms);

  if (k == NULL || now_ms - k->last_throttle < RL_DECREASE_GAP_MS)
    return;
  k->rate *= RL_DECREASE;
  if (k->rate < RL_MIN_RATE)
    k->rate = RL_MIN_RATE;
  k->last_throttle = now_ms;
  /* Requests already holding slots keep them; the throttled ones come back
   * through the retry backoff and get new slots at the new pace. */
}

double
ratelimit_rate(struct ratelimit *rl, const char *key, double now_ms)
{
  struct rl_key *k = find(rl, key, now_ms);
  return k ? k->rate : rl->max_rate;
}
