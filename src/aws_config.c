/* aws_config.c - the shared AWS config and credentials files, region and
 * endpoint resolution (see aws_config.h for the orders).
 *
 * The files are INI as botocore reads them (Python's RawConfigParser): '#'
 * or ';' start a comment line (no inline comments: a value keeps its '#'),
 * keys are case-insensitive and split from the value at the first '=' or
 * ':', indented lines continue the previous value (nested "s3 =" blocks),
 * and the config file names profiles "[profile x]" except "[default]".  The
 * files are read afresh on every lookup: lookups happen at start-up and on
 * credential refresh only, and this way an edited file is picked up.
 *
 * Values looked up here may be secrets (aws_secret_access_key): nothing in
 * this file logs a value or puts one in an error message.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "aws_config.h"

#define AWS_CONFIG_MAX_LINE 8192   /* longer lines are ignored, not truncated */

const char *
aws_profile_name(const char *option)
{
  const char *env;

  if (option && *option)
    return option;
  env = getenv("AWS_PROFILE");
  if (env && *env)
    return env;
  return "default";
}

/* $HOME, else the password database. */
static const char *
home_dir(void)
{
  const char *h = getenv("HOME");
  struct passwd pw, *res = NULL;
  static __thread char pwbuf[1024];

  if (h && *h)
    return h;
  if (getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &res) == 0 && res)
    return res->pw_dir;
  return NULL;
}

/* The file named by env_name, else ~/.aws/<base>, with '~/' expanded as
 * botocore does.  Returns malloc'd path or NULL. */
static char *
config_path(const char *env_name, const char *base)
{
  const char *env = getenv(env_name), *home;
  char *path = NULL;

  if (env && *env && !(env[0] == '~' && (env[1] == '/' || env[1] == '\0')))
    return strdup(env);
  home = home_dir();
  if (home == NULL)
    return NULL;
  if (env && *env) {
    if (asprintf(&path, "%s%s", home, env + 1) < 0)
      return NULL;
  }
  else if (asprintf(&path, "%s/.aws/%s", home, base) < 0)
    return NULL;
  return path;
}

static char *
trim(char *s)
{
  char *e;

  while (*s == ' ' || *s == '\t')
    s++;
  e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
    e--;
  *e = '\0';
  return s;
}

/* Does section header text (between the brackets, trimmed) name profile?
 * In the config file "[profile x]" is x and "[default]" (or "[profile
 * default]") is default; in the credentials file the name is as written. */
static bool
section_matches(const char *sect, const char *profile, bool config_file)
{
  if (!config_file)
    return strcmp(sect, profile) == 0;
  if (strcmp(sect, "default") == 0)
    return strcmp(profile, "default") == 0;
  if (strncmp(sect, "profile", 7) == 0 && (sect[7] == ' ' || sect[7] == '\t')) {
    const char *n = sect + 7;
    while (*n == ' ' || *n == '\t')
      n++;
    return strcmp(n, profile) == 0;
  }
  return false;
}

/* Find key in profile's section of the file at path.  A key given twice
 * keeps its last value, like a merged profile. */
static char *
ini_lookup(const char *path, const char *profile, const char *key, bool config_file)
{
  FILE *fp;
  char *line = NULL, *found = NULL;
  size_t cap = 0;
  ssize_t n;
  bool in_section = false;

  fp = fopen(path, "re");
  if (fp == NULL)
    return NULL;
  while ((n = getline(&line, &cap, fp)) >= 0) {
    char *s, *sep, *k, *v;

    if (n > AWS_CONFIG_MAX_LINE)
      continue;
    /* Indented lines continue a value (nested blocks); never a key of ours. */
    if (line[0] == ' ' || line[0] == '\t')
      continue;
    s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';')
      continue;
    if (*s == '[') {
      char *close = strchr(s, ']');
      if (close == NULL) {
        in_section = false;
        continue;
      }
      *close = '\0';
      in_section = section_matches(trim(s + 1), profile, config_file);
      continue;
    }
    if (!in_section)
      continue;
    sep = strpbrk(s, "=:");
    if (sep == NULL)
      continue;
    *sep = '\0';
    k = trim(s);
    v = trim(sep + 1);
    if (strcasecmp(k, key) != 0)
      continue;
    if (found) {
      OPENSSL_cleanse(found, strlen(found));
      free(found);
    }
    found = strdup(v);
    if (found == NULL)
      break;
  }
  if (line) {
    OPENSSL_cleanse(line, cap);       /* it held secrets, maybe */
    free(line);
  }
  fclose(fp);
  return found;
}

char *
aws_config_get(const char *profile, const char *key)
{
  char *path = config_path("AWS_CONFIG_FILE", "config"), *v;

  if (path == NULL)
    return NULL;
  v = ini_lookup(path, profile ? profile : aws_profile_name(NULL), key, true);
  free(path);
  return v;
}

char *
aws_credentials_file_get(const char *profile, const char *key)
{
  char *path = config_path("AWS_SHARED_CREDENTIALS_FILE", "credentials"), *v;

  if (path == NULL)
    return NULL;
  v = ini_lookup(path, profile ? profile : aws_profile_name(NULL), key, false);
  free(path);
  return v;
}

/* botocore's region check: it becomes part of a host name. */
static bool
region_valid(const char *r)
{
  size_t n = strlen(r);

  if (n == 0 || n > 63 || !isalnum((unsigned char) r[0]) || !isalnum((unsigned char) r[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char) r[i]) && r[i] != '-')
      return false;
  return true;
}

char *
aws_resolve_region(const char *option, const char *profile, char *err, size_t errlen)
{
  const char *src = NULL;
  char *region = NULL;
  const char *env;

  if (option && *option) {
    region = strdup(option);
    src = "the region option";
  }
  else if ((env = getenv("AWS_REGION")) && *env) {
    region = strdup(env);
    src = "AWS_REGION";
  }
  else if ((env = getenv("AWS_DEFAULT_REGION")) && *env) {
    region = strdup(env);
    src = "AWS_DEFAULT_REGION";
  }
  else {
    const char *p = aws_profile_name(profile);
    region = aws_config_get(p, "region");
    if (region == NULL) {
      snprintf(err, errlen, "no region: set -o region=, AWS_REGION, AWS_DEFAULT_REGION "
               "or 'region' in profile '%s' of the AWS config file", p);
      return NULL;
    }
    src = "the AWS config file";
  }
  if (region == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (!region_valid(region)) {
    snprintf(err, errlen, "invalid region '%.64s' from %s", region, src);
    free(region);
    return NULL;
  }
  return region;
}

/* Check scheme and host, drop trailing slashes. */
static char *
endpoint_clean(const char *url, const char *src, char *err, size_t errlen)
{
  const char *host;
  char *out;
  size_t n;

  if (strncasecmp(url, "https://", 8) == 0)
    host = url + 8;
  else if (strncasecmp(url, "http://", 7) == 0)
    host = url + 7;
  else {
    snprintf(err, errlen, "endpoint from %s must start with http:// or https://", src);
    return NULL;
  }
  if (*host == '\0' || *host == '/' || *host == ':') {
    snprintf(err, errlen, "endpoint from %s has no host", src);
    return NULL;
  }
  for (const char *p = url; *p; p++)
    if (isspace((unsigned char) *p) || iscntrl((unsigned char) *p)) {
      snprintf(err, errlen, "endpoint from %s contains white space", src);
      return NULL;
    }
  if (strpbrk(host, "?#")) {
    snprintf(err, errlen, "endpoint from %s must not have a query or fragment", src);
    return NULL;
  }
  out = strdup(url);
  if (out == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  n = strlen(out);
  while (n > (size_t) (host - url) && out[n - 1] == '/')
    out[--n] = '\0';
  return out;
}

char *
aws_resolve_endpoint(const char *option, const char *region, char *err, size_t errlen)
{
  const char *env;
  char *out = NULL;

  if (option && *option)
    return endpoint_clean(option, "the endpoint option", err, errlen);
  if ((env = getenv("AWS_ENDPOINT_URL_EBS")) && *env)
    return endpoint_clean(env, "AWS_ENDPOINT_URL_EBS", err, errlen);
  if ((env = getenv("AWS_ENDPOINT_URL")) && *env)
    return endpoint_clean(env, "AWS_ENDPOINT_URL", err, errlen);
  if (region == NULL || !region_valid(region)) {
    snprintf(err, errlen, "no endpoint: a valid region is needed for the default endpoint");
    return NULL;
  }
  if (asprintf(&out, "https://ebs.%s.amazonaws.com", region) < 0) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return out;
}
