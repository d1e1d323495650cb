/* credentials_test.c - the environment and shared-file sources, their
 * precedence, reference counting, the refresh windows, concurrent callers,
 * and that no error text carries a secret.  The sources that run a command
 * or talk HTTP are tested by tests/client-credentials.sh. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "credentials.h"
#include "credentials_int.h"
#include "testing.h"

#define SECRET_ENV  "envSECRETdoNotLeak0123456789"
#define SECRET_FILE "fileSECRETdoNotLeak0123456789"
#define TOKEN_ENV   "envTOKENdoNotLeak"

static char dir[] = "/tmp/credentials_test.XXXXXX";
static char cfg_path[256], cred_path[256];

static void
write_file(const char *path, const char *text)
{
  FILE *fp = fopen(path, "w");

  if (fp == NULL || fputs(text, fp) < 0 || fclose(fp) != 0) {
    perror(path);
    exit(1);
  }
}

static void
check_no_secret(const char *s)
{
  CHECK(strstr(s, "doNotLeak") == NULL);   /* in every test secret */
}

static void
env_reset(void)
{
  const char *vars[] = { "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                         "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                         "AWS_CREDENTIAL_EXPIRATION",
                         "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                         "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                         "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                         "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                         "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN" };
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    unsetenv(vars[i]);
  /* Never reach out to a real metadata service from a unit test. */
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  setenv("AWS_CONFIG_FILE", cfg_path, 1);
  setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
  write_file(cfg_path, "");
  write_file(cred_path, "");
}

static void
set_env_creds(const char *akid, const char *secret, time_t expiration)
{
  setenv("AWS_ACCESS_KEY_ID", akid, 1);
  setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
  if (expiration) {
    char buf[32];
    struct tm tm;
    gmtime_r(&expiration, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    setenv("AWS_CREDENTIAL_EXPIRATION", buf, 1);
  }
  else
    unsetenv("AWS_CREDENTIAL_EXPIRATION");
}

/* Get once from a fresh provider; returns the access key id's source. */
static int
get_once(const char *profile, struct aws_credentials **c, char *err, size_t errlen)
{
  struct credentials_options o = { .profile = profile };
  struct credentials_provider *p = credentials_provider_new(&o);
  int r;

  CHECK(p != NULL);
  err[0] = '\0';
  r = credentials_get(p, c, err, errlen);
  credentials_provider_free(p);    /* our reference outlives the provider */
  return r;
}

static void
test_parse_time(void)
{
  time_t t;

  CHECK_INTEQ(creds_parse_time("2015-08-30T12:36:00Z", &t), 0);
  CHECK_INTEQ(t, 1440938160);
  CHECK_INTEQ(creds_parse_time("2015-08-30T12:36:00.123456Z", &t), 0);
  CHECK_INTEQ(t, 1440938160);
  CHECK_INTEQ(creds_parse_time("2015-08-30T14:36:00+02:00", &t), 0);
  CHECK_INTEQ(t, 1440938160);
  CHECK_INTEQ(creds_parse_time("2015-08-30T11:36:00-0100", &t), 0);
  CHECK_INTEQ(t, 1440938160);
  CHECK_INTEQ(creds_parse_time("2015-08-30T12:36:00", &t), -EINVAL);
  CHECK_INTEQ(creds_parse_time("2015-13-30T12:36:00Z", &t), -EINVAL);
  CHECK_INTEQ(creds_parse_time("2015-08-30T12:36:00Zjunk", &t), -EINVAL);
  CHECK_INTEQ(creds_parse_time("", &t), -EINVAL);
  CHECK_INTEQ(creds_parse_time("1440938160", &t), -EINVAL);
}

static void
test_json(void)
{
  struct aws_credentials *c = NULL;
  char err[256];
  const char *ok = "{\"Version\": 1, \"AccessKeyId\": \"AKIDJSON\", \"SecretAccessKey\": \""
    SECRET_FILE "\", \"SessionToken\": \"" TOKEN_ENV "\", \"Expiration\": \"2030-01-01T00:00:00Z\"}";
  const char *imds = "{\"Code\": \"Success\", \"AccessKeyId\": \"AKIDIMDS\", \"SecretAccessKey\": \""
    SECRET_FILE "\", \"Token\": \"" TOKEN_ENV "\", \"Expiration\": \"2030-01-01T00:00:00Z\"}";

  CHECK_INTEQ(creds_from_json(ok, strlen(ok), "SessionToken", true, "credential-process",
                              &c, err, sizeof err), 0);
  if (c) {
    CHECK_STREQ(c->access_key_id, "AKIDJSON");
    CHECK_STREQ(c->secret_access_key, SECRET_FILE);
    CHECK_STREQ(c->session_token, TOKEN_ENV);
    CHECK_INTEQ(c->expiration, 1893456000);
    CHECK_STREQ(c->source, "credential-process");
    credentials_release(c);
  }
  c = NULL;
  CHECK_INTEQ(creds_from_json(imds, strlen(imds), "Token", false, "imds", &c, err, sizeof err), 0);
  if (c) {
    CHECK_STREQ(c->session_token, TOKEN_ENV);
    credentials_release(c);
  }
  /* Version is required for credential_process. */
  c = NULL;
  err[0] = '\0';
  CHECK(creds_from_json(imds, strlen(imds), "SessionToken", true, "credential-process",
                        &c, err, sizeof err) < 0);
  CHECK(c == NULL);
  CHECK(strstr(err, "Version") != NULL);
  check_no_secret(err);
  /* Malformed documents: errors never quote them. */
  const char *bad[] = {
    "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" SECRET_FILE "\"",
    "{\"Version\": 1, \"SecretAccessKey\": \"" SECRET_FILE "\"}",
    "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" SECRET_FILE
    "\", \"Expiration\": \"tomorrow\"}",
    "[\"" SECRET_FILE "\"]",
    "{\"Code\": \"Failure\", \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" SECRET_FILE "\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    c = NULL;
    err[0] = '\0';
    CHECK(creds_from_json(bad[i], strlen(bad[i]), "Token", i < 3, "test", &c, err, sizeof err) < 0);
    CHECK(c == NULL);
    CHECK(err[0] != '\0');
    check_no_secret(err);
  }
}

static void
test_sources(void)
{
  struct aws_credentials *c = NULL;
  char err[256];

  /* Nothing anywhere. */
  env_reset();
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), -ENOKEY);
  CHECK(c == NULL);
  CHECK(strstr(err, "no AWS credentials") != NULL);

  /* Environment, with a session token. */
  set_env_creds("AKIDENV", SECRET_ENV, 0);
  setenv("AWS_SESSION_TOKEN", TOKEN_ENV, 1);
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), 0);
  if (c) {
    CHECK_STREQ(c->source, "environment");
    CHECK_STREQ(c->access_key_id, "AKIDENV");
    CHECK_STREQ(c->secret_access_key, SECRET_ENV);
    CHECK_STREQ(c->session_token, TOKEN_ENV);
    CHECK_INTEQ(c->expiration, 0);
    credentials_release(c);
  }

  /* Credentials that are already expired are an error, not a success. */
  set_env_creds("AKIDOLD", SECRET_ENV, time(NULL) - 10);
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), -EKEYEXPIRED);
  CHECK(c == NULL);
  CHECK(strstr(err, "expired") != NULL);
  set_env_creds("AKIDENV", SECRET_ENV, 0);

  /* Half set: an error naming the variable, not the value. */
  unsetenv("AWS_SECRET_ACCESS_KEY");
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), -EINVAL);
  CHECK(strstr(err, "AWS_SECRET_ACCESS_KEY") != NULL);
  check_no_secret(err);

  /* Environment beats the files; an explicit profile skips the environment. */
  env_reset();
  set_env_creds("AKIDENV", SECRET_ENV, 0);
  write_file(cred_path, "[default]\naws_access_key_id = AKIDCREDFILE\naws_secret_access_key = "
             SECRET_FILE "\n[other]\naws_access_key_id = AKIDOTHER\n"
             "aws_secret_access_key = " SECRET_FILE "\naws_session_token = " TOKEN_ENV "\n"
             "[partial]\naws_access_key_id = AKIDPARTIAL\n");
  write_file(cfg_path, "[default]\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = "
             SECRET_FILE "\n[profile cfgonly]\naws_access_key_id = AKIDCFGONLY\n"
             "aws_secret_access_key = " SECRET_FILE "\n"
             "[profile other]\naws_access_key_id = AKIDWRONG\n"
             "aws_secret_access_key = " SECRET_FILE "\n");
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), 0);
  CHECK(c && strcmp(c->access_key_id, "AKIDENV") == 0);
  credentials_release(c);
  /* AWS_PROFILE does not skip the environment... */
  setenv("AWS_PROFILE", "other", 1);
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), 0);
  CHECK(c && strcmp(c->access_key_id, "AKIDENV") == 0);
  credentials_release(c);
  /* ...the option does, and the credentials file beats the config file. */
  c = NULL;
  CHECK_INTEQ(get_once("other", &c, err, sizeof err), 0);
  if (c) {
    CHECK_STREQ(c->source, "shared-credentials-file");
    CHECK_STREQ(c->access_key_id, "AKIDOTHER");
    CHECK_STREQ(c->session_token, TOKEN_ENV);
    credentials_release(c);
  }
  /* Without the environment, AWS_PROFILE picks the section. */
  unsetenv("AWS_ACCESS_KEY_ID");
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), 0);
  CHECK(c && strcmp(c->access_key_id, "AKIDOTHER") == 0);
  credentials_release(c);
  unsetenv("AWS_PROFILE");
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), 0);
  CHECK(c && strcmp(c->access_key_id, "AKIDCREDFILE") == 0);
  credentials_release(c);
  /* Static keys in the config file, under [profile x]. */
  c = NULL;
  CHECK_INTEQ(get_once("cfgonly", &c, err, sizeof err), 0);
  if (c) {
    CHECK_STREQ(c->source, "config-file");
    CHECK_STREQ(c->access_key_id, "AKIDCFGONLY");
    CHECK(c->session_token == NULL);
    credentials_release(c);
  }
  /* A key id without its secret is an error, not a fall-through. */
  c = NULL;
  CHECK_INTEQ(get_once("partial", &c, err, sizeof err), -EINVAL);
  CHECK(strstr(err, "partial") != NULL);
  check_no_secret(err);
  c = NULL;
  CHECK_INTEQ(get_once("nosuch", &c, err, sizeof err), -ENOKEY);
  CHECK(strstr(err, "nosuch") != NULL);

  /* Sources botocore has and ebsfs does not are errors, never skipped
   * (that would quietly pick another identity). */
  write_file(cfg_path, "[profile assume]\nrole_arn = arn:aws:iam::123456789012:role/x\n"
             "source_profile = default\n[profile sso]\nsso_session = corp\n");
  c = NULL;
  CHECK_INTEQ(get_once("assume", &c, err, sizeof err), -ENOTSUP);
  CHECK(strstr(err, "role_arn") != NULL);
  c = NULL;
  CHECK_INTEQ(get_once("sso", &c, err, sizeof err), -ENOTSUP);
  CHECK(strstr(err, "sso_session") != NULL);
  setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent", 1);
  setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/x", 1);
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), -ENOTSUP);
  CHECK(strstr(err, "AWS_WEB_IDENTITY_TOKEN_FILE") != NULL);
  /* The environment's keys still come first, as in botocore. */
  set_env_creds("AKIDENV", SECRET_ENV, 0);
  c = NULL;
  CHECK_INTEQ(get_once(NULL, &c, err, sizeof err), 0);
  CHECK(c && strcmp(c->source, "environment") == 0);
  credentials_release(c);
  unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
  unsetenv("AWS_ROLE_ARN");
}

/* Refresh: expiring credentials are replaced, without re-asking the chain
 * on every call, and in the advisory window in the background. */
static void
test_refresh(void)
{
  struct credentials_provider *p;
  struct aws_credentials *a = NULL, *b = NULL;
  char err[256];
  time_t now = time(NULL);
  int i;

  env_reset();
  p = credentials_provider_new(NULL);
  CHECK(p != NULL);

  /* Long-term credentials: one object, shared. */
  set_env_creds("AKIDSTATIC", SECRET_ENV, 0);
  CHECK_INTEQ(credentials_get(p, &a, err, sizeof err), 0);
  set_env_creds("AKIDCHANGED", SECRET_ENV, 0);
  CHECK_INTEQ(credentials_get(p, &b, err, sizeof err), 0);
  CHECK(a != NULL && a == b);     /* never re-read: they do not expire */
  credentials_release(a);
  credentials_release(b);
  credentials_provider_free(p);

  /* Expiring within the blocking window, then expired. */
  p = credentials_provider_new(NULL);
  set_env_creds("AKIDSHORT", SECRET_ENV, now + 3);
  CHECK_INTEQ(credentials_get(p, &a, err, sizeof err), 0);
  CHECK(a && strcmp(a->access_key_id, "AKIDSHORT") == 0);
  set_env_creds("AKIDLONG", SECRET_ENV, now + 7200);
  /* Just refreshed: still valid, so no new walk of the chain yet. */
  CHECK_INTEQ(credentials_get(p, &b, err, sizeof err), 0);
  CHECK(b == a);
  credentials_release(b);
  sleep(4);
  CHECK_INTEQ(credentials_get(p, &b, err, sizeof err), 0);
  CHECK(b && strcmp(b->access_key_id, "AKIDLONG") == 0);
  /* The old reference is still ours and intact. */
  CHECK(a && strcmp(a->access_key_id, "AKIDSHORT") == 0);
  credentials_release(a);
  credentials_release(b);
  credentials_provider_free(p);

  /* Advisory window: the caller gets the current ones at once and the
   * refresh runs in the background. */
  p = credentials_provider_new(NULL);
  creds_provider_set_retry_interval(p, 0);
  set_env_creds("AKIDADVISORY", SECRET_ENV, now + CREDENTIALS_REFRESH_ADVISORY_S - 120);
  CHECK_INTEQ(credentials_get(p, &a, err, sizeof err), 0);
  set_env_creds("AKIDNEXT", SECRET_ENV, now + 7200);
  CHECK_INTEQ(credentials_get(p, &b, err, sizeof err), 0);
  CHECK(b == a);
  credentials_release(b);
  for (i = 0; i < 500; i++) {
    CHECK_INTEQ(credentials_get(p, &b, err, sizeof err), 0);
    if (b && strcmp(b->access_key_id, "AKIDNEXT") == 0)
      break;
    credentials_release(b);
    usleep(10000);
  }
  CHECK(i < 500);
  if (i < 500)
    credentials_release(b);
  credentials_release(a);
  credentials_provider_free(p);

  /* A failed refresh keeps the still-valid credentials. */
  p = credentials_provider_new(NULL);
  creds_provider_set_retry_interval(p, 0);
  set_env_creds("AKIDKEEP", SECRET_ENV, now + 30);
  CHECK_INTEQ(credentials_get(p, &a, err, sizeof err), 0);
  unsetenv("AWS_SECRET_ACCESS_KEY");
  CHECK_INTEQ(credentials_get(p, &b, err, sizeof err), 0);
  CHECK(b == a);
  credentials_release(a);
  credentials_release(b);
  credentials_provider_free(p);
}

struct worker {
  struct credentials_provider *p;
  int failures;
  int got_new;
};

static void *
worker_main(void *arg)
{
  struct worker *w = arg;
  char err[256];

  for (int i = 0; i < 2000; i++) {
    struct aws_credentials *c = NULL;
    if (credentials_get(w->p, &c, err, sizeof err) != 0 || c == NULL ||
        c->secret_access_key == NULL || strcmp(c->secret_access_key, SECRET_ENV) != 0) {
      w->failures++;
      continue;
    }
    if (strcmp(c->access_key_id, "AKIDTHREADNEW") == 0)
      w->got_new++;
    credentials_release(c);
  }
  return NULL;
}

/* Many threads inside the blocking window: all get usable credentials and
 * all end up with the new ones (ASan/TSan builds catch the rest). */
static void
test_threads(void)
{
  struct credentials_provider *p;
  struct aws_credentials *a = NULL;
  struct worker w[8];
  pthread_t t[8];
  char err[256];

  env_reset();
  p = credentials_provider_new(NULL);
  creds_provider_set_retry_interval(p, 0);
  set_env_creds("AKIDTHREADOLD", SECRET_ENV, time(NULL) + 30);
  CHECK_INTEQ(credentials_get(p, &a, err, sizeof err), 0);
  set_env_creds("AKIDTHREADNEW", SECRET_ENV, time(NULL) + 7200);
  for (int i = 0; i < 8; i++) {
    w[i] = (struct worker) { .p = p };
    CHECK_INTEQ(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
    CHECK_INTEQ(w[i].failures, 0);
    CHECK(w[i].got_new > 0);
  }
  credentials_release(a);
  credentials_provider_free(p);
}

int
main(void)
{
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(cfg_path, sizeof cfg_path, "%s/config", dir);
  snprintf(cred_path, sizeof cred_path, "%s/credentials", dir);
  test_parse_time();
  test_json();
  test_sources();
  test_refresh();
  test_threads();
  unlink(cfg_path);
  unlink(cred_path);
  rmdir(dir);
  TEST_EXIT();
}
