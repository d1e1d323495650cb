/* options_rw_test.c - the write-mode command line: -o rw and its options,
 * new_volume_size, encrypted refused with a source, one snapshot only,
 * --commit and --resume. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "testing.h"

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

static void
test_rw(void)
{
  struct ebsfs_options o;
  static const char *const args[] = {
    "-o", "rw,staging_dir=/var/tmp/st,description=fixed fstab,tags=a=b;c=d",
    "-o", "snapshot_id_file=/tmp/id,commit_timeout=30,keep_staging", "snap-1", "/mnt", NULL };

  CHECK_INTEQ(parse(&o, args), 0);
  CHECK_INTEQ(o.rw, 1);
  CHECK_STREQ(o.staging_dir, "/var/tmp/st");
  CHECK_STREQ(o.description, "fixed fstab");
  CHECK_STREQ(o.tags, "a=b;c=d");
  CHECK_STREQ(o.snapshot_id_file, "/tmp/id");
  CHECK_INTEQ(o.commit_timeout, 30);
  CHECK_INTEQ(o.keep_staging, 1);
  CHECK_INTEQ(o.nsnapshots, 1);
  CHECK_INTEQ(o.new_volume_size, 0);
  for (int i = 0; i < o.fuse_args.argc; i++)
    CHECK(strstr(o.fuse_args.argv[i], "staging") == NULL);
  options_free(&o);
}

static void
test_new_volume(void)
{
  struct ebsfs_options o;
  static const char *const args[] = {
    "-o", "new_volume_size=1G,encrypted,kms_key_arn=arn:aws:kms:us-east-1:1:key/x", "/mnt", NULL };
  static const char *const half[] = { "-o", "rw,new_volume_size=512K", "/mnt", NULL };

  CHECK_INTEQ(parse(&o, args), 0);
  CHECK_INTEQ(o.rw, 1);                   /* implied */
  CHECK_INTEQ(o.new_volume_size, 1ull << 30);
  CHECK_INTEQ(o.encrypted, 1);
  CHECK_STREQ(o.kms_key_arn, "arn:aws:kms:us-east-1:1:key/x");
  CHECK_INTEQ(o.nsnapshots, 0);
  CHECK_STREQ(o.mountpoint, "/mnt");
  CHECK_INTEQ(o.commit_timeout, OPT_DEFAULT_COMMIT_TIMEOUT);
  options_free(&o);
  CHECK_INTEQ(parse(&o, half), 0);
  CHECK_INTEQ(o.new_volume_size, 524288);
  options_free(&o);
}

static void
test_modes(void)
{
  struct ebsfs_options o;
  static const char *const commit[] = { "--commit", "/mnt/snap-1", NULL };
  static const char *const commit2[] = { "--commit=/mnt/snap-1", NULL };
  static const char *const resume[] = { "--resume", "/var/tmp/st", "-o", "endpoint=http://x:1", NULL };

  CHECK_INTEQ(parse(&o, commit), 0);
  CHECK_STREQ(o.commit_path, "/mnt/snap-1");
  options_free(&o);
  CHECK_INTEQ(parse(&o, commit2), 0);
  CHECK_STREQ(o.commit_path, "/mnt/snap-1");
  options_free(&o);
  CHECK_INTEQ(parse(&o, resume), 0);
  CHECK_STREQ(o.resume_dir, "/var/tmp/st");
  CHECK_STREQ(o.endpoint, "http://x:1");
  options_free(&o);
}

static void
test_errors(void)
{
  struct ebsfs_options o;
  static const char *const enc_src[] = { "-o", "rw,encrypted", "snap-1", "/mnt", NULL };
  static const char *const kms_src[] = { "-o", "rw,kms_key_arn=k", "snap-1", "/mnt", NULL };
  static const char *const two[] = { "-o", "rw", "snap-1", "snap-2", "/mnt", NULL };
  static const char *const odd[] = { "-o", "new_volume_size=1000", "/mnt", NULL };
  static const char *const zero[] = { "-o", "new_volume_size=0", "/mnt", NULL };
  static const char *const huge[] = { "-o", "new_volume_size=65T", "/mnt", NULL };
  static const char *const nv_snap[] = { "-o", "new_volume_size=1G", "snap-1", "/mnt", NULL };
  static const char *const nv_ro[] = { "-o", "ro,new_volume_size=1G", "/mnt", NULL };
  static const char *const ro_opts[] = { "-o", "description=x", "snap-1", "/mnt", NULL };
  static const char *const timeout[] = { "-o", "rw,commit_timeout=5", "snap-1", "/mnt", NULL };
  static const char *const commit_more[] = { "--commit", "/mnt/a", "/mnt", NULL };

  fprintf(stderr, "(usage errors expected below)\n");
  CHECK_INTEQ(parse(&o, enc_src), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, kms_src), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, two), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, odd), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, zero), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, huge), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, nv_snap), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, nv_ro), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, ro_opts), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, timeout), -1); options_free(&o);
  CHECK_INTEQ(parse(&o, commit_more), -1); options_free(&o);
}

int
main(void)
{
  test_rw();
  test_new_volume();
  test_modes();
  test_errors();
  TEST_EXIT();
}
