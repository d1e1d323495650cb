/* credentials.c - the credential chain, the cached credentials and their
 * refresh (see credentials.h for the contract).
 *
 * Credentials are immutable and reference counted: a request holds its own
 * reference for as long as it signs, so a refresh that publishes new ones
 * never pulls anything from under a reader.  The provider keeps one
 * reference to the current set under a mutex held only to swap pointers.
 *
 * Refresh: once fewer than CREDENTIALS_REFRESH_ADVISORY_S remain, the first
 * caller starts one background refresh thread and everyone keeps getting the
 * current set meanwhile; only below CREDENTIALS_REFRESH_BLOCKING_S (or with
 * none at all) do callers wait for the refresh, and then exactly one of them
 * walks the chain while the others sleep on a condition variable.  A failed
 * refresh keeps the old set while it is valid and is not retried for
 * CREDS_RETRY_S, so a broken metadata service is not hammered.
 *
 * The chain follows botocore's order for what ebsfs supports: environment,
 * shared credentials file, credential_process, static keys in the config
 * file, container endpoint, IMDS.  (botocore reads credential_process before
 * the config file's static keys; the environment is skipped when a profile
 * is given explicitly, as with "aws --profile".)  What botocore would try
 * and ebsfs does not implement - assume role, web identity, SSO - is an
 * error rather than a silent step to the next source.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "aws_config.h"
#include "credentials.h"
#include "credentials_int.h"
#include "log.h"

#define CREDS_RETRY_S 10        /* no new refresh attempt sooner than this */

/* The public struct comes first so a struct aws_credentials * is also ours. */
struct creds_obj {
  struct aws_credentials pub;
  atomic_uint refs;
};

struct credentials_provider {
  char *profile;                /* resolved at creation */
  bool profile_explicit;        /* given as an option: skip the environment */
  char *imds_endpoint;          /* NULL: environment or default */

  pthread_mutex_t lock;
  pthread_cond_t done;          /* a refresh finished */
  struct aws_credentials *cur;  /* our reference, NULL before the first success */
  bool refreshing;              /* someone is walking the chain */
  bool thread_started;          /* refresh_thread needs joining */
  pthread_t refresh_thread;
  time_t retry_after;           /* no optional refresh before this */
  int retry_s;                  /* CREDS_RETRY_S; tests shorten it */
  unsigned long generation;     /* bumped by every finished refresh */
  int last_r;                   /* result of the last refresh */
  char last_err[256];
};

static void
free_secret(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

struct aws_credentials *
creds_new(const char *akid, const char *secret, const char *token, time_t expiration,
          const char *source)
{
  struct creds_obj *o = calloc(1, sizeof *o);

  if (o == NULL)
    return NULL;
  atomic_init(&o->refs, 1);
  o->pub.access_key_id = strdup(akid);
  o->pub.secret_access_key = strdup(secret);
  if (token && *token)
    o->pub.session_token = strdup(token);
  o->pub.expiration = expiration;
  o->pub.source = source;
  if (o->pub.access_key_id == NULL || o->pub.secret_access_key == NULL ||
      (token && *token && o->pub.session_token == NULL)) {
    credentials_release(&o->pub);
    return NULL;
  }
  return &o->pub;
}

static struct aws_credentials *
creds_ref(struct aws_credentials *c)
{
  atomic_fetch_add(&((struct creds_obj *) c)->refs, 1);
  return c;
}

void
credentials_release(struct aws_credentials *c)
{
  struct creds_obj *o = (struct creds_obj *) c;

  if (c == NULL || atomic_fetch_sub(&o->refs, 1) != 1)
    return;
  free(c->access_key_id);
  free_secret(c->secret_access_key);
  free_secret(c->session_token);
  free(o);
}

static int
two_digits(const char *s)
{
  if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
    return -1;
  return (s[0] - '0') * 10 + (s[1] - '0');
}

int
creds_parse_time(const char *s, time_t *out)
{
  struct tm tm = { 0 };
  int y = 0, hi, lo, off = 0;
  const char *p;
  time_t t;

  for (int i = 0; i < 4; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -EINVAL;
    y = y * 10 + (s[i] - '0');
  }
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      s[13] != ':' || s[16] != ':')
    return -EINVAL;
  tm.tm_year = y - 1900;
  if ((tm.tm_mon = two_digits(s + 5)) < 1 || tm.tm_mon > 12 ||
      (tm.tm_mday = two_digits(s + 8)) < 1 || tm.tm_mday > 31 ||
      (tm.tm_hour = two_digits(s + 11)) < 0 || tm.tm_hour > 23 ||
      (tm.tm_min = two_digits(s + 14)) < 0 || tm.tm_min > 59 ||
      (tm.tm_sec = two_digits(s + 17)) < 0 || tm.tm_sec > 60)
    return -EINVAL;
  tm.tm_mon--;
  p = s + 19;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9')
      return -EINVAL;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if (*p == 'Z' || *p == 'z')
    p++;
  else if (*p == '+' || *p == '-') {
    if ((hi = two_digits(p + 1)) < 0)
      return -EINVAL;
    if (p[3] == ':') {
      if ((lo = two_digits(p + 4)) < 0)
        return -EINVAL;
      off = hi * 3600 + lo * 60;
      off = *p == '-' ? -off : off;
      p += 6;
    }
    else if ((lo = two_digits(p + 3)) >= 0) {
      off = hi * 3600 + lo * 60;
      off = *p == '-' ? -off : off;
      p += 5;
    }
    else
      return -EINVAL;
  }
  else
    return -EINVAL;
  if (*p != '\0')
    return -EINVAL;
  t = timegm(&tm);
  if (t == (time_t) -1)
    return -EINVAL;
  *out = t - off;
  return 0;
}

static const char *
json_str(const cJSON *obj, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) && v->valuestring && *v->valuestring ? v->valuestring : NULL;
}

int
creds_from_json(const char *json, size_t len, const char *token_key, bool need_version,
                const char *source, struct aws_credentials **out, char *err, size_t errlen)
{
  cJSON *root = cJSON_ParseWithLength(json, len);
  const char *akid, *secret, *token, *exp, *code;
  time_t expiration = 0;
  int r = -EPROTO;

  /* cJSON's error position points into the document: never report it. */
  if (root == NULL || !cJSON_IsObject(root)) {
    snprintf(err, errlen, "%s: reply is not a JSON object", source);
    goto out;
  }
  if (need_version) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "Version");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1) {
      snprintf(err, errlen, "%s: unsupported or missing \"Version\" (need 1)", source);
      goto out;
    }
  }
  /* IMDS says {"Code": "Success"}; anything else is its error. */
  code = json_str(root, "Code");
  if (code && strcmp(code, "Success") != 0) {
    snprintf(err, errlen, "%s: service answered Code \"%.64s\"", source, code);
    goto out;
  }
  akid = json_str(root, "AccessKeyId");
  secret = json_str(root, "SecretAccessKey");
  token = json_str(root, token_key);
  exp = json_str(root, "Expiration");
  if (akid == NULL || secret == NULL) {
    snprintf(err, errlen, "%s: reply lacks AccessKeyId or SecretAccessKey", source);
    goto out;
  }
  if (exp && creds_parse_time(exp, &expiration) < 0) {
    snprintf(err, errlen, "%s: cannot parse Expiration \"%.40s\"", source, exp);
    goto out;
  }
  *out = creds_new(akid, secret, token, expiration, source);
  r = *out ? 0 : -ENOMEM;
  if (r < 0)
    snprintf(err, errlen, "%s: out of memory", source);
 out:
  /* The tree held secrets: wipe them before cJSON frees the strings. */
  if (root) {
    const char *wipe[] = { "SecretAccessKey", "SessionToken", "Token" };
    for (size_t i = 0; i < sizeof wipe / sizeof wipe[0]; i++) {
      cJSON *v = cJSON_GetObjectItemCaseSensitive(root, wipe[i]);
      if (cJSON_IsString(v) && v->valuestring)
        OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
    }
    cJSON_Delete(root);
  }
  return r;
}

/* ---- environment --------------------------------------------------------- */

static int
from_env(struct aws_credentials **out, char *err, size_t errlen)
{
  const char *akid = getenv("AWS_ACCESS_KEY_ID");
  const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
  const char *token = getenv("AWS_SESSION_TOKEN");
  const char *exp = getenv("AWS_CREDENTIAL_EXPIRATION");
  time_t expiration = 0;

  if (akid == NULL || *akid == '\0')
    return -ENOENT;
  if (secret == NULL || *secret == '\0') {
    snprintf(err, errlen, "environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    return -EINVAL;
  }
  if (token == NULL || *token == '\0')
    token = getenv("AWS_SECURITY_TOKEN");       /* the older name */
  if (exp && *exp && creds_parse_time(exp, &expiration) < 0) {
    snprintf(err, errlen, "environment: cannot parse AWS_CREDENTIAL_EXPIRATION");
    return -EINVAL;
  }
  *out = creds_new(akid, secret, token, expiration, "environment");
  if (*out == NULL) {
    snprintf(err, errlen, "environment: out of memory");
    return -ENOMEM;
  }
  return 0;
}

/* ---- static keys in a shared file ----------------------------------------- */

static int
from_file(const char *profile, bool config_file, struct aws_credentials **out,
          char *err, size_t errlen)
{
  char *(*get)(const char *, const char *) =
    config_file ? aws_config_get : aws_credentials_file_get;
  const char *source = config_file ? "config-file" : "shared-credentials-file";
  const char *what = config_file ? "config file" : "shared credentials file";
  char *akid, *secret = NULL, *token = NULL;
  int r = 0;

  akid = get(profile, "aws_access_key_id");
  if (akid == NULL || *akid == '\0') {
    free(akid);
    return -ENOENT;
  }
  secret = get(profile, "aws_secret_access_key");
  if (secret == NULL || *secret == '\0') {
    snprintf(err, errlen, "%s: profile '%s' has aws_access_key_id but no "
             "aws_secret_access_key", what, profile);
    r = -EINVAL;
    goto out;
  }
  token = get(profile, "aws_session_token");
  if (token == NULL)
    token = get(profile, "aws_security_token");
  *out = creds_new(akid, secret, token, 0, source);
  if (*out == NULL) {
    snprintf(err, errlen, "%s: out of memory", what);
    r = -ENOMEM;
  }
 out:
  free(akid);
  free_secret(secret);
  free_secret(token);
  return r;
}

/* ---- sources ebsfs does not implement ---------------------------------------- */

/* botocore would use these before the shared files; silently going on to
 * the next source could hand out another identity (say the instance role
 * instead of the profile's assumed role), so they are an error instead. */
static int
unsupported_source(const char *profile, char *err, size_t errlen)
{
  static const struct { const char *key, *what; } keys[] = {
    { "role_arn", "role_arn (assume role)" },
    { "web_identity_token_file", "web_identity_token_file (web identity)" },
    { "sso_start_url", "sso_start_url (IAM Identity Center)" },
    { "sso_session", "sso_session (IAM Identity Center)" },
  };
  const char *wi = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *ra = getenv("AWS_ROLE_ARN");

  if (wi && *wi && ra && *ra) {
    snprintf(err, errlen, "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (web identity) are "
             "set, which ebsfs does not support; use a credential_process instead");
    return -ENOTSUP;
  }
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    char *v = aws_credentials_file_get(profile, keys[i].key);
    if (v == NULL)
      v = aws_config_get(profile, keys[i].key);
    if (v) {
      free(v);
      snprintf(err, errlen, "profile '%s' uses %s, which ebsfs does not support; use a "
               "credential_process (for example one that runs the AWS CLI) instead",
               profile, keys[i].what);
      return -ENOTSUP;
    }
  }
  return -ENOENT;
}

/* ---- the chain ------------------------------------------------------------ */

static int
resolve_chain(struct credentials_provider *p, struct aws_credentials **out,
              char *err, size_t errlen)
{
  char why[200];
  int r;

  *out = NULL;
  if (!p->profile_explicit && (r = from_env(out, err, errlen)) != -ENOENT)
    return r;
  if ((r = unsupported_source(p->profile, err, errlen)) != -ENOENT)
    return r;
  if ((r = from_file(p->profile, false, out, err, errlen)) != -ENOENT)
    return r;
  if ((r = creds_from_process(p->profile, out, err, errlen)) != -ENOENT)
    return r;
  if ((r = from_file(p->profile, true, out, err, errlen)) != -ENOENT)
    return r;
  if ((r = creds_from_container(out, err, errlen)) != -ENOENT)
    return r;
  /* IMDS is last: its failure is the "nothing anywhere" answer. */
  why[0] = '\0';
  r = creds_from_imds(p->imds_endpoint, out, why, sizeof why);
  if (r == 0 || r == -ENOMEM) {
    if (r < 0)
      snprintf(err, errlen, "%s", why);
    return r;
  }
  snprintf(err, errlen, "no AWS credentials found for profile '%s' (tried the environment, "
           "shared files, credential_process, container; %s)", p->profile, why);
  return -ENOKEY;
}

/* ---- the provider ---------------------------------------------------------- */

struct credentials_provider *
credentials_provider_new(const struct credentials_options *opts)
{
  struct credentials_provider *p = calloc(1, sizeof *p);

  if (p == NULL)
    return NULL;
  p->profile = strdup(aws_profile_name(opts ? opts->profile : NULL));
  p->profile_explicit = opts && opts->profile && *opts->profile;
  p->retry_s = CREDS_RETRY_S;
  if (opts && opts->imds_endpoint)
    p->imds_endpoint = strdup(opts->imds_endpoint);
  if (p->profile == NULL || (opts && opts->imds_endpoint && p->imds_endpoint == NULL) ||
      pthread_mutex_init(&p->lock, NULL) != 0) {
    free(p->profile);
    free(p->imds_endpoint);
    free(p);
    return NULL;
  }
  if (pthread_cond_init(&p->done, NULL) != 0) {
    pthread_mutex_destroy(&p->lock);
    free(p->profile);
    free(p->imds_endpoint);
    free(p);
    return NULL;
  }
  return p;
}

void
credentials_provider_free(struct credentials_provider *p)
{
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  while (p->refreshing)
    pthread_cond_wait(&p->done, &p->lock);
  pthread_mutex_unlock(&p->lock);
  if (p->thread_started)
    pthread_join(p->refresh_thread, NULL);
  credentials_release(p->cur);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->lock);
  free(p->profile);
  free(p->imds_endpoint);
  free(p);
}

void
creds_provider_set_retry_interval(struct credentials_provider *p, int seconds)
{
  pthread_mutex_lock(&p->lock);
  p->retry_s = seconds;
  pthread_mutex_unlock(&p->lock);
}

static void
format_time(time_t t, char *out, size_t len)
{
  struct tm tm;

  if (t == 0 || gmtime_r(&t, &tm) == NULL)
    snprintf(out, len, "never");
  else
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Walk the chain (p->refreshing is ours) and publish the result. */
static int
do_refresh(struct credentials_provider *p)
{
  struct aws_credentials *fresh = NULL, *old = NULL;
  char err[256] = "";
  char when[32];
  bool had_cur;
  int r;

  r = resolve_chain(p, &fresh, err, sizeof err);
  if (r == 0 && fresh->expiration != 0 && fresh->expiration <= time(NULL)) {
    /* A stale AWS_CREDENTIAL_EXPIRATION, or a source handing out old keys. */
    format_time(fresh->expiration, when, sizeof when);
    snprintf(err, sizeof err, "credentials from %s expired at %s", fresh->source, when);
    credentials_release(fresh);
    fresh = NULL;
    r = -EKEYEXPIRED;
  }
  pthread_mutex_lock(&p->lock);
  p->refreshing = false;
  p->generation++;
  p->last_r = r;
  snprintf(p->last_err, sizeof p->last_err, "%s", r == 0 ? "" : err);
  /* Also after a success: a source that hands out short-lived credentials
   * must not be asked again on every request. */
  p->retry_after = time(NULL) + p->retry_s;
  had_cur = p->cur != NULL;
  if (r == 0) {
    old = p->cur;
    p->cur = fresh;
    format_time(fresh->expiration, when, sizeof when);
    log_debug(LOG_SUB_CREDS, "credentials: %s, key %s, expire %s",
              fresh->source, fresh->access_key_id, when);
  }
  pthread_cond_broadcast(&p->done);
  pthread_mutex_unlock(&p->lock);
  credentials_release(old);
  if (r < 0 && had_cur)
    log_warn("credentials refresh failed: %s", err);
  return r;
}

static void *
refresh_thread_main(void *arg)
{
  do_refresh(arg);
  return NULL;
}

int
credentials_get(struct credentials_provider *p, struct aws_credentials **out,
                char *err, size_t errlen)
{
  struct aws_credentials *c;
  unsigned long gen;
  time_t now, left;
  int r;

  *out = NULL;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    now = time(NULL);
    c = p->cur;
    left = c ? c->expiration - now : 0;
    if (c && (c->expiration == 0 || left > CREDENTIALS_REFRESH_ADVISORY_S))
      goto use_current;
    if (c && left > CREDENTIALS_REFRESH_BLOCKING_S) {
      /* Advisory window: start a refresh in the background, use these. */
      if (!p->refreshing && now >= p->retry_after) {
        if (p->thread_started)          /* finished: refreshing is false */
          pthread_join(p->refresh_thread, NULL);
        p->thread_started = false;
        p->refreshing = true;
        if (pthread_create(&p->refresh_thread, NULL, refresh_thread_main, p) == 0)
          p->thread_started = true;
        else
          p->refreshing = false;        /* retried by a later caller */
      }
      goto use_current;
    }
    if (c && left > 0 && !p->refreshing && now < p->retry_after)
      goto use_current;                 /* just tried; these still work */
    if (!p->refreshing)
      break;
    /* Too close to expiry (or none yet): wait for the refresh under way. */
    gen = p->generation;
    while (p->refreshing)
      pthread_cond_wait(&p->done, &p->lock);
    if (p->generation != gen && p->last_r < 0 &&
        (p->cur == NULL || p->cur->expiration <= time(NULL))) {
      r = p->last_r;
      snprintf(err, errlen, "%s", p->last_err);
      pthread_mutex_unlock(&p->lock);
      return r;
    }
  }
  /* We walk the chain; others wait or use the current set. */
  p->refreshing = true;
  pthread_mutex_unlock(&p->lock);
  r = do_refresh(p);
  pthread_mutex_lock(&p->lock);
  c = p->cur;
  if (r < 0 && c && (c->expiration == 0 || c->expiration > time(NULL))) {
    log_warn("credentials: keeping the current ones from %s until they expire", c->source);
    r = 0;
  }
  if (r < 0) {
    snprintf(err, errlen, "%s", p->last_err);
    pthread_mutex_unlock(&p->lock);
    return r;
  }
 use_current:
  *out = creds_ref(c);
  pthread_mutex_unlock(&p->lock);
  return 0;
}
