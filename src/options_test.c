/* options_test.c - the command line: our options, fstab words, what libfuse
 * gets, positional arguments, sizes and usage errors. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "log.h"
#include "testing.h"

/* Parse a NULL-terminated argument list (argv[0] is added). */
static int
parse(struct ebsfs_options *o, const char *const *args)
{
  char *argv[64];
  int argc = 0;

  argv[argc++] = (char *) "ebsfs";
  while (*args && argc < 63)
    argv[argc++] = (char *) *args++;
  argv[argc] = NULL;
  return options_parse(argc, argv, o);
}

/* Is this exact argument among what libfuse will see? */
static int
fuse_has(const struct ebsfs_options *o, const char *arg)
{
  for (int i = 0; i < o->fuse_args.argc; i++)
    if (strcmp(o->fuse_args.argv[i], arg) == 0)
      return 1;
  return 0;
}

/* Does any argument libfuse gets contain this text? */
static int
fuse_mentions(const struct ebsfs_options *o, const char *text)
{
  for (int i = 0; i < o->fuse_args.argc; i++)
    if (strstr(o->fuse_args.argv[i], text))
      return 1;
  return 0;
}

static void
test_sizes(void)
{
  uint64_t v = 7;

  CHECK_INTEQ(options_parse_size("4096", &v), 0); CHECK_INTEQ(v, 4096);
  CHECK_INTEQ(options_parse_size("512K", &v), 0); CHECK_INTEQ(v, 524288);
  CHECK_INTEQ(options_parse_size("64m", &v), 0); CHECK_INTEQ(v, 64ull << 20);
  CHECK_INTEQ(options_parse_size("2G", &v), 0); CHECK_INTEQ(v, 2ull << 30);
  CHECK_INTEQ(options_parse_size("1T", &v), 0); CHECK_INTEQ(v, 1ull << 40);
  CHECK_INTEQ(options_parse_size("3MiB", &v), 0); CHECK_INTEQ(v, 3ull << 20);
  CHECK_INTEQ(options_parse_size("3MB", &v), 0); CHECK_INTEQ(v, 3ull << 20);
  v = 7;
  CHECK_INTEQ(options_parse_size("", &v), -1);
  CHECK_INTEQ(options_parse_size("-1G", &v), -1);
  CHECK_INTEQ(options_parse_size("G", &v), -1);
  CHECK_INTEQ(options_parse_size("12X", &v), -1);
  CHECK_INTEQ(options_parse_size("12KK", &v), -1);
  CHECK_INTEQ(options_parse_size("99999999999999999999", &v), -1);
  CHECK_INTEQ(options_parse_size("99999999999T", &v), -1);   /* overflows 64 bits */
  CHECK_INTEQ(v, 7);                                         /* untouched on error */
}

static void
test_defaults(void)
{
  struct ebsfs_options o;
  static const char *const args[] = { "snap-0123abcd", "/mnt", NULL };

  CHECK_INTEQ(parse(&o, args), 0);
  CHECK_INTEQ(o.nsnapshots, 1);
  CHECK_STREQ(o.snapshots[0], "snap-0123abcd");
  CHECK_STREQ(o.mountpoint, "/mnt");
  CHECK_INTEQ(o.foreground, 0);
  CHECK_INTEQ(o.debug, 0);
  CHECK_INTEQ(o.single_thread, 0);
  CHECK_INTEQ(o.cache_size, OPT_DEFAULT_CACHE_SIZE);
  CHECK_INTEQ(o.readahead, OPT_DEFAULT_READAHEAD);
  CHECK_INTEQ(o.max_requests, OPT_DEFAULT_MAX_REQUESTS);
  CHECK(o.rate_limit == OPT_DEFAULT_RATE_LIMIT);
  CHECK_INTEQ(o.fs_prefetch, 1);
  CHECK_INTEQ(o.kernel_cache, 0);
  CHECK(o.region == NULL && o.profile == NULL && o.endpoint == NULL);
  /* libfuse sees only the program name: positionals are ours */
  CHECK_INTEQ(o.fuse_args.argc, 1);
  options_free(&o);
}

static void
test_everything(void)
{
  struct ebsfs_options o;
  static const char *const args[] = {
    "-f", "-s",
    "-o", "region=eu-west-1,profile=backup,endpoint=http://127.0.0.1:9",
    "-o", "ca_bundle=/etc/ca.pem,cache_size=256M,max_requests=64",
    "-oreadahead=8M,rate_limit=250.5,debug=http:cache",
    "-o", "debug=index,fs_prefetch=off,kernel_cache",
    "snap-1", "snap-2", "snap-3", "/mnt/x",
    NULL
  };

  CHECK_INTEQ(parse(&o, args), 0);
  CHECK_INTEQ(o.foreground, 1);
  CHECK_INTEQ(o.single_thread, 1);
  CHECK_STREQ(o.region, "eu-west-1");
  CHECK_STREQ(o.profile, "backup");
  CHECK_STREQ(o.endpoint, "http://127.0.0.1:9");
  CHECK_STREQ(o.ca_bundle, "/etc/ca.pem");
  CHECK_INTEQ(o.cache_size, 256ull << 20);
  CHECK_INTEQ(o.max_requests, 64);
  CHECK_INTEQ(o.readahead, 8ull << 20);
  CHECK(o.rate_limit == 250.5);
  CHECK_INTEQ(o.fs_prefetch, 0);
  CHECK(!fuse_mentions(&o, "fs_prefetch"));
  CHECK_INTEQ(o.kernel_cache, 1);
  CHECK(!fuse_mentions(&o, "kernel_cache"));      /* ours, not libfuse's */
  CHECK_INTEQ(o.debug_mask, LOG_SUB_HTTP | LOG_SUB_CACHE | LOG_SUB_INDEX);
  CHECK_INTEQ(o.nsnapshots, 3);
  CHECK_STREQ(o.snapshots[0], "snap-1");
  CHECK_STREQ(o.snapshots[2], "snap-3");
  CHECK_STREQ(o.mountpoint, "/mnt/x");
  CHECK(!fuse_mentions(&o, "region"));
  CHECK(!fuse_mentions(&o, "cache_size"));
  CHECK(!fuse_mentions(&o, "snap-1"));
  CHECK(!fuse_has(&o, "-f"));
  options_free(&o);
}

static void
test_fstab_and_passthrough(void)
{
  struct ebsfs_options o;
  static const char *const args[] = {
    "-o", "defaults,noauto,user,users,auto,nofail,_netdev,x-systemd.automount,"
          "x-systemd.requires=network-online.target,comment=hi",
    "-o", "allow_other,default_permissions,ro",
    "snap-1", "/mnt", NULL
  };

  CHECK_INTEQ(parse(&o, args), 0);
  CHECK_INTEQ(o.ro, 1);
  CHECK(fuse_mentions(&o, "allow_other"));
  CHECK(fuse_mentions(&o, "default_permissions"));
  CHECK(!fuse_mentions(&o, "noauto"));
  CHECK(!fuse_mentions(&o, "_netdev"));
  CHECK(!fuse_mentions(&o, "nofail"));
  CHECK(!fuse_mentions(&o, "x-systemd"));
  CHECK(!fuse_mentions(&o, "defaults"));
  CHECK(!fuse_mentions(&o, "users"));
  CHECK(!fuse_mentions(&o, "comment"));
  options_free(&o);
}

static void
test_debug(void)
{
  struct ebsfs_options o;
  static const char *const args[] = { "-d", "snap-1", "/mnt", NULL };
  static const char *const args2[] = { "-o", "debug=all", "snap-1", "/mnt", NULL };

  CHECK_INTEQ(parse(&o, args), 0);
  CHECK_INTEQ(o.debug, 1);
  CHECK_INTEQ(o.foreground, 1);           /* -d implies -f, as in libfuse */
  CHECK(fuse_has(&o, "-d"));              /* libfuse traces requests */
  options_free(&o);

  CHECK_INTEQ(parse(&o, args2), 0);
  CHECK_INTEQ(o.debug, 0);
  CHECK_INTEQ(o.debug_mask, LOG_SUB_ALL);
  CHECK(!fuse_mentions(&o, "debug"));
  options_free(&o);
}

static void
test_help_version(void)
{
  struct ebsfs_options o;
  static const char *const h[] = { "-h", NULL };
  static const char *const h2[] = { "--help", NULL };
  static const char *const v[] = { "-V", NULL };

  CHECK_INTEQ(parse(&o, h), 0);  CHECK_INTEQ(o.show_help, 1);  options_free(&o);
  CHECK_INTEQ(parse(&o, h2), 0); CHECK_INTEQ(o.show_help, 1);  options_free(&o);
  CHECK_INTEQ(parse(&o, v), 0);  CHECK_INTEQ(o.show_version, 1); options_free(&o);
}

static void
test_errors(void)
{
  struct ebsfs_options o;
  static const char *const none[] = { NULL };
  static const char *const one[] = { "snap-1", NULL };
  static const char *const badsize[] = { "-o", "cache_size=lots", "snap-1", "/mnt", NULL };
  static const char *const badra[] = { "-o", "readahead=8Q", "snap-1", "/mnt", NULL };
  static const char *const badrate[] = { "-o", "rate_limit=0", "snap-1", "/mnt", NULL };
  static const char *const badrate2[] = { "-o", "rate_limit=fast", "snap-1", "/mnt", NULL };
  static const char *const badmax[] = { "-o", "max_requests=many", "snap-1", "/mnt", NULL };
  static const char *const baddebug[] = { "-o", "debug=everything", "snap-1", "/mnt", NULL };
  static const char *const badfsp[] = { "-o", "fs_prefetch=yes", "snap-1", "/mnt", NULL };

  fprintf(stderr, "(usage errors expected below)\n");
  CHECK_INTEQ(parse(&o, none), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, one), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, badsize), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, badra), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, badrate), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, badrate2), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, badmax), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, baddebug), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, badfsp), -1); options_free(&o);
}

int
main(void)
{
  test_sizes();
  test_defaults();
  test_everything();
  test_fstab_and_passthrough();
  test_debug();
  test_help_version();
  test_errors();
  TEST_EXIT();
}
