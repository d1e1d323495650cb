/* aws_config_test.c - shared config/credentials file parsing, the profile
 * name, and the region and endpoint orders, with files in a temp dir. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws_config.h"
#include "testing.h"

static char dir[] = "/tmp/aws_config_test.XXXXXX";

static void
write_file(const char *name, const char *text)
{
  char path[256];
  FILE *fp;

  snprintf(path, sizeof path, "%s/%s", dir, name);
  fp = fopen(path, "w");
  if (fp == NULL || fputs(text, fp) < 0 || fclose(fp) != 0) {
    perror(path);
    exit(1);
  }
}

static void
remove_file(const char *name)
{
  char path[256];

  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
}

static void
check_get(char *got, const char *expected)
{
  if (expected == NULL)
    CHECK(got == NULL);
  else
    CHECK_STREQ(got, expected);
  free(got);
}

static void
env_clear(void)
{
  const char *vars[] = { "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                         "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EBS",
                         "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE" };
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    unsetenv(vars[i]);
}

static void
test_profile_name(void)
{
  env_clear();
  CHECK_STREQ(aws_profile_name(NULL), "default");
  CHECK_STREQ(aws_profile_name(""), "default");
  setenv("AWS_PROFILE", "fromenv", 1);
  CHECK_STREQ(aws_profile_name(NULL), "fromenv");
  CHECK_STREQ(aws_profile_name("opt"), "opt");
  unsetenv("AWS_PROFILE");
}

static void
test_files(void)
{
  char path[256];

  env_clear();
  write_file("config",
             "# a comment\n"
             "; another\n"
             "[default]\n"
             "region = us-west-2\n"
             "output=json\n"
             "\n"
             "[profile dev]\n"
             "Region=eu-west-1\n"
             "s3 =\n"
             "  region = ap-south-1\n"
             "  max_concurrent_requests = 20\n"
             "endpoint_url: http://localhost:1234\n"
             "note = has # no inline comment\n"
             "[dev]\n"
             "region = wrong-1\n"
             "[profile  spaced ]\n"
             "region = sa-east-1\n"
             "[profile twice]\n"
             "region = first-1\n"
             "region = second-1\n"
             "[profile default]\n"
             "cli_pager =\n");
  write_file("credentials",
             "[default]\n"
             "aws_access_key_id = AKIDDEFAULT\n"
             "[dev]\n"
             "aws_access_key_id=AKIDDEV\r\n"
             "[profile dev]\n"
             "aws_access_key_id = WRONG\n");
  snprintf(path, sizeof path, "%s/config", dir);
  setenv("AWS_CONFIG_FILE", path, 1);
  snprintf(path, sizeof path, "%s/credentials", dir);
  setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);

  check_get(aws_config_get("default", "region"), "us-west-2");
  check_get(aws_config_get("default", "output"), "json");
  check_get(aws_config_get("default", "cli_pager"), "");   /* [profile default] too */
  check_get(aws_config_get("dev", "region"), "eu-west-1");  /* keys are case-insensitive */
  check_get(aws_config_get("dev", "endpoint_url"), "http://localhost:1234");
  check_get(aws_config_get("dev", "max_concurrent_requests"), NULL);  /* nested, not ours */
  check_get(aws_config_get("dev", "note"), "has # no inline comment");
  check_get(aws_config_get("spaced", "region"), "sa-east-1");
  check_get(aws_config_get("twice", "region"), "second-1");
  check_get(aws_config_get("nosuch", "region"), NULL);
  check_get(aws_config_get("dev", "nosuchkey"), NULL);
  /* NULL profile: the one in effect. */
  check_get(aws_config_get(NULL, "region"), "us-west-2");
  setenv("AWS_PROFILE", "dev", 1);
  check_get(aws_config_get(NULL, "region"), "eu-west-1");
  unsetenv("AWS_PROFILE");

  check_get(aws_credentials_file_get("default", "aws_access_key_id"), "AKIDDEFAULT");
  check_get(aws_credentials_file_get("dev", "aws_access_key_id"), "AKIDDEV");  /* CRLF */
  check_get(aws_credentials_file_get("nosuch", "aws_access_key_id"), NULL);

  /* "~/" in the variables means $HOME, as in botocore. */
  setenv("HOME", dir, 1);
  setenv("AWS_CONFIG_FILE", "~/config", 1);
  check_get(aws_config_get("dev", "region"), "eu-west-1");

  /* Without the variables: ~/.aws/config and ~/.aws/credentials. */
  env_clear();
  snprintf(path, sizeof path, "%s/.aws", dir);
  CHECK_INTEQ(mkdir(path, 0700), 0);
  write_file(".aws/config", "[profile home]\nregion = ca-central-1\n");
  write_file(".aws/credentials", "[home]\naws_access_key_id = AKIDHOME\n");
  check_get(aws_config_get("home", "region"), "ca-central-1");
  check_get(aws_credentials_file_get("home", "aws_access_key_id"), "AKIDHOME");
  remove_file(".aws/config");
  remove_file(".aws/credentials");
  rmdir(path);
  /* Missing files are simply empty. */
  check_get(aws_config_get("home", "region"), NULL);
}

static void
test_region(void)
{
  char err[256], path[256];

  env_clear();
  write_file("config", "[default]\nregion = us-west-2\n[profile p]\nregion=eu-north-1\n"
             "[profile bad]\nregion = no/slash\n");
  snprintf(path, sizeof path, "%s/config", dir);
  setenv("AWS_CONFIG_FILE", path, 1);

  check_get(aws_resolve_region(NULL, NULL, err, sizeof err), "us-west-2");
  check_get(aws_resolve_region(NULL, "p", err, sizeof err), "eu-north-1");
  setenv("AWS_PROFILE", "p", 1);
  check_get(aws_resolve_region(NULL, NULL, err, sizeof err), "eu-north-1");
  setenv("AWS_DEFAULT_REGION", "ap-east-1", 1);
  check_get(aws_resolve_region(NULL, NULL, err, sizeof err), "ap-east-1");
  setenv("AWS_REGION", "me-south-1", 1);
  check_get(aws_resolve_region(NULL, NULL, err, sizeof err), "me-south-1");
  check_get(aws_resolve_region("us-east-2", NULL, err, sizeof err), "us-east-2");
  setenv("AWS_REGION", "", 1);          /* empty counts as unset */
  check_get(aws_resolve_region(NULL, NULL, err, sizeof err), "ap-east-1");

  env_clear();
  setenv("AWS_CONFIG_FILE", path, 1);
  err[0] = '\0';
  check_get(aws_resolve_region(NULL, "nosuch", err, sizeof err), NULL);
  CHECK(strstr(err, "no region") != NULL);
  err[0] = '\0';
  check_get(aws_resolve_region(NULL, "bad", err, sizeof err), NULL);
  CHECK(strstr(err, "invalid region") != NULL);
  check_get(aws_resolve_region("us-east-1.evil.com", NULL, err, sizeof err), NULL);
}

static void
test_endpoint(void)
{
  char err[256];

  env_clear();
  check_get(aws_resolve_endpoint(NULL, "us-east-1", err, sizeof err),
            "https://ebs.us-east-1.amazonaws.com");
  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
  check_get(aws_resolve_endpoint(NULL, "us-east-1", err, sizeof err), "http://127.0.0.1:9000");
  setenv("AWS_ENDPOINT_URL_EBS", "https://ebs.example.com//", 1);
  check_get(aws_resolve_endpoint(NULL, "us-east-1", err, sizeof err), "https://ebs.example.com");
  check_get(aws_resolve_endpoint("HTTP://[::1]:8080", "us-east-1", err, sizeof err),
            "HTTP://[::1]:8080");
  /* A region is only needed for the default endpoint. */
  check_get(aws_resolve_endpoint(NULL, NULL, err, sizeof err), "https://ebs.example.com");

  err[0] = '\0';
  check_get(aws_resolve_endpoint("ftp://x", "us-east-1", err, sizeof err), NULL);
  CHECK(strstr(err, "http://") != NULL);
  check_get(aws_resolve_endpoint("http://", "us-east-1", err, sizeof err), NULL);
  check_get(aws_resolve_endpoint("http://a b", "us-east-1", err, sizeof err), NULL);
  check_get(aws_resolve_endpoint("http://h/?q=1", "us-east-1", err, sizeof err), NULL);
  setenv("AWS_ENDPOINT_URL_EBS", "localhost:80", 1);
  err[0] = '\0';
  check_get(aws_resolve_endpoint(NULL, "us-east-1", err, sizeof err), NULL);
  CHECK(strstr(err, "AWS_ENDPOINT_URL_EBS") != NULL);
  env_clear();
  check_get(aws_resolve_endpoint(NULL, NULL, err, sizeof err), NULL);
}

int
main(void)
{
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_profile_name();
  test_files();
  test_region();
  test_endpoint();
  remove_file("config");
  remove_file("credentials");
  rmdir(dir);
  TEST_EXIT();
}
